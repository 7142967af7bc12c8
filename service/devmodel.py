"""A small deterministic classifier in the exported-model format, for tests and benchmarks.

Until the offline stage ships ``models/sports2d.onnx``, the service is developed and tested
against this stand-in: the same input and outputs (``skeleton`` (batch, length, joints, dims)
float32 in; ``scores`` (batch, classes) and ``embedding`` (batch, E) out) and a real
``ModelCard`` in its metadata, built with ``onnx.helper`` (no torch). The embedding is a fixed
random projection of the whole window, so different motions get different embeddings and the
same motion the same one, which is all the service's tests need of it.

Needs the ``onnx`` package (the train extra); the service itself never imports this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skeleton.artifact import EMBEDDING_NAME, INPUT_NAME, SCORES_NAME, ModelCard
from skeleton.readers.penn_action import LABEL_NAMES
from skeleton.windows import WindowSpec


def sports2d_card(length: int = 32, fps: float = 15.0) -> ModelCard:
    """A card like the shipped 2-D video model's (Penn Action labels, penn13, image space)."""
    return ModelCard(
        name="sports2d-dev",
        labels=LABEL_NAMES,  # the stand-in answers in the shipped sports2d classes
        window=WindowSpec(layout="penn13", dims=2, length=length, fps=fps, normalization="centre-torso"),
        embedding_size=32,
        input_space="image",
        training_data="none: a fixed random projection (service development model)",
        protocol="untrained",
        accuracy={"penn-action-val": 0.0},
        source_commit="dev",
        created="2000-01-01T00:00:00Z",
    )


def daily3d_card(length: int = 32, fps: float = 15.0) -> ModelCard:
    """A 3-D card for tests (ntu25 layout, camera space, aligned; the shipped daily3d is kinect20 at 7.5 fps)."""
    return ModelCard(
        name="daily3d-dev",
        labels=tuple(f"action_{i:02d}" for i in range(10)),
        window=WindowSpec(layout="ntu25", dims=3, length=length, fps=fps, normalization="centre-torso-align"),
        embedding_size=24,
        input_space="camera",
        training_data="none: a fixed random projection (service development model)",
        protocol="untrained",
        source_commit="dev",
        created="2000-01-01T00:00:00Z",
    )


def build_model(path: Path, card: ModelCard, seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """Write the stand-in model for ``card`` to ``path``; ``metadata`` replaces the card's (to
    make deliberately broken models)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = card.window
    size = spec.length * spec.num_joints * spec.dims
    rng = np.random.default_rng(seed)

    initializers = [
        numpy_helper.from_array(np.array([-1, size], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(
            (rng.normal(size=(size, card.embedding_size)) / np.sqrt(size)).astype(np.float32), "project"
        ),
        numpy_helper.from_array(
            rng.normal(size=(card.embedding_size, len(card.labels))).astype(np.float32), "classify"
        ),
    ]
    nodes = [
        helper.make_node("Reshape", [INPUT_NAME, "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "project"], ["projected"]),
        helper.make_node("Tanh", ["projected"], [EMBEDDING_NAME]),
        helper.make_node("MatMul", [EMBEDDING_NAME, "classify"], [SCORES_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        card.name,
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.FLOAT, ["batch", spec.length, spec.num_joints, spec.dims]
            )
        ],
        [
            helper.make_tensor_value_info(SCORES_NAME, TensorProto.FLOAT, ["batch", len(card.labels)]),
            helper.make_tensor_value_info(EMBEDDING_NAME, TensorProto.FLOAT, ["batch", card.embedding_size]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="actionrec-dev")
    model.ir_version = 9  # readable by every onnxruntime of the last years
    helper.set_model_props(model, card.to_metadata() if metadata is None else metadata)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
