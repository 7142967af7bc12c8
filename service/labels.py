"""A window's answer as labels: the model's top classes and the closest enrolled actions."""

from __future__ import annotations

import numpy as np

from service.actions import Prototypes
from service.generated.actionrec.v1 import actionrec_pb2 as pb


def top_labels(names: tuple[str, ...], probabilities: np.ndarray, top_k: int) -> list[pb.LabelScore]:
    best = np.argsort(-probabilities, kind="stable")[:top_k]
    return [pb.LabelScore(label=names[i], score=float(probabilities[i])) for i in best]


def custom_labels(prototypes: Prototypes | None, embedding: np.ndarray, top_k: int) -> list[pb.LabelScore]:
    if prototypes is None:
        return []
    return [pb.LabelScore(label=name, score=score) for name, score in prototypes.match(embedding, top_k)]
