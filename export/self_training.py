"""Self-training with few labels: a model's confident answers on the unlabelled clips of the
train part become labels for a second model.

The first model trains on the labelled clips alone. It then answers every unlabelled clip of
the same train part; per answered class, the most confident ``share`` of them keep that answer
as their label. A second model, started afresh the way the first was (the pretrained encoder,
or new random weights from scratch; a new head either way), trains on the labelled and the
pseudo-labelled clips together. Keeping a share per class rather than everything above a
threshold stops the classes the first model favours from crowding out the others, and needs no
calibrated scores.

The unlabelled clips' own labels are never read for training; they only measure how right the
pseudo-labels were (a diagnostic in the results).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from export.data import Clip
from export.probe import model_clip_probabilities
from skeleton.windows import WindowSpec


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
    clips: list[Clip]  # the kept clips, each with its pseudo-label
    correct: int  # how many of them carry their true label (diagnostic only)


def pseudo_label(model: torch.nn.Module, unlabelled: list[Clip], spec: WindowSpec, share: float) -> PseudoLabels:
    """The most confident ``share`` of each predicted class among ``unlabelled``, relabelled
    with the model's answer."""
    if not unlabelled or share <= 0.0:
        return PseudoLabels([], 0)
    probabilities = model_clip_probabilities(model, unlabelled, spec)
    confidence, answer = (t.numpy() for t in probabilities.max(1))
    kept: list[Clip] = []
    correct = 0
    for label in np.unique(answer):
        members = np.flatnonzero(answer == label)
        count = max(1, int(round(share * len(members))))
        for i in members[np.argsort(-confidence[members], kind="stable")[:count]]:
            kept.append(dataclasses.replace(unlabelled[i], label=int(label)))
            correct += int(unlabelled[i].label == label)
    return PseudoLabels(kept, correct)
