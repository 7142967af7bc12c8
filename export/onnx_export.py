"""``actionrec export``: a trained classifier as a self-describing single-file ONNX model.

The model takes prepared windows (``skeleton.windows``) under the input name ``skeleton``,
(batch, length, joints, dims) with a dynamic batch axis, and returns ``scores`` (logits) and
``embedding``. Its metadata is the ``ModelCard`` (labels, window, normalisation, embedding
size, data, protocol, accuracy, source commit): the service reads it and needs nothing else.

Besides FP32, ``--fp16`` writes a half-precision variant for GPUs (inputs and outputs stay
float32) and ``--int8`` a quantised one for CPU edge boxes. Every export is checked against
PyTorch on real windows before it is written.

INT8 is static (QDQ, per-channel weights, activations calibrated on real training windows),
not dynamic: dynamic quantisation turns this encoder's convolutions into ConvInteger with a
quantisation of every activation at run time, which measured 2-7x slower than FP32 on the CPU
(``results/onnx-vs-torch.md``); static INT8 runs the convolutions as integer kernels with fixed
scales and is faster than FP32.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from export.data import clips_from_dataset
from export.encoder import Classifier, Ensemble
from export.runtime import classifier_from_checkpoint, read_checkpoint, source_commit
from export.supervised import predict_clips
from skeleton.artifact import (
    EMBEDDING_NAME,
    INPUT_NAME,
    MODEL_FILE_SUFFIXES,
    SCORES_NAME,
    VARIANTS,
    ModelCard,
    variant_of,
)
from skeleton.atomic import atomic_path
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from skeleton.windows import WindowSpec

OPSET = 18
FP32_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_difference: float  # vs PyTorch on the parity windows
    size_bytes: int


def variant_path(output: Path, variant: str) -> Path:
    """Where the ``variant`` (fp16, int8) of the model at ``output`` (NAME.onnx) is written: NAME.VARIANT.onnx."""
    return output.with_suffix(f".{variant}.onnx")


def check_model_name(name: str, origin: str = "--name") -> None:
    """InputError unless ``name`` can name a model: the service and `evaluate --model` call a
    model by its file's stem (NAME.onnx), and the listing by the name in its card, so the name
    must be both a card's name and a stem that finds its file again."""
    if not name.strip() or name != name.strip() or not name.isprintable():
        problem = "a model's name is a non-empty name on one line, without blanks around it"
    elif "/" in name or name.startswith("."):
        problem = "a model's name is a file name's stem: no '/', no leading '.'"
    elif name.endswith(MODEL_FILE_SUFFIXES):
        problem = "it ends as a file name, so asking for it would look for that file"
    elif variant_of(Path(f"{name}.onnx")):
        problem = f"{name}.onnx would be a variant of another model"
    else:
        return
    raise InputError(f"{origin} {name!r}: not a model name ({problem})")


def check_output(output: Path) -> None:
    """InputError unless an export can be written at ``output``: a .onnx file name that is no
    folder, in a folder that exists or can be made, and that this user may write in (the
    variants, the model card and its figure go beside it, so none of them may be a folder)."""
    if output.suffix != ".onnx":
        raise InputError(f"{output}: not an ONNX file name (end it in .onnx)")
    beside = [output, output.with_suffix(".md"), output.with_suffix(".confusion.png")]
    for path in beside + [variant_path(output, variant) for variant in VARIANTS]:
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a file the export can write")
    # The nearest folder that exists: the export makes the ones below it.
    existing = next(folder for folder in output.parents if folder.exists())
    if not existing.is_dir():
        raise InputError(f"{output}: cannot be written, {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{output}: cannot be written, no permission to write in {existing}")


def remove_stale_variants(output: Path, written: Sequence[Path]) -> list[Path]:
    """Removes the variants beside ``output`` that this export did not write, and returns them:
    they belong to an earlier model of the same name, and would be listed and served as
    variants of the new one."""
    stale = [variant_path(output, variant) for variant in VARIANTS]
    removed = [path for path in stale if path not in written and path.is_file()]
    for path in removed:
        path.unlink()
    return removed


def write_atomic(model_proto, path: Path) -> None:
    import onnx

    with atomic_path(path) as temporary:
        onnx.save_model(model_proto, str(temporary))


def _with_card(model_proto, card: ModelCard):
    del model_proto.metadata_props[:]
    for key, value in card.to_metadata().items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value
    return model_proto


def _to_onnx(model: Classifier | Ensemble, window: WindowSpec):
    """The dynamo exporter's single-file model with a dynamic batch axis."""
    import onnx

    example = torch.zeros(2, window.length, window.num_joints, window.dims)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "model.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(target),
            input_names=[INPUT_NAME],
            output_names=[SCORES_NAME, EMBEDDING_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
        return onnx.load(str(target))


def onnx_outputs(model_bytes: bytes, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores, embedding) of a model file's bytes on ``windows``, onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    scores, embedding = session.run([SCORES_NAME, EMBEDDING_NAME], {INPUT_NAME: windows})
    return scores, embedding


def largest_difference(outputs: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray]) -> float:
    """Largest absolute difference of scores and embeddings between two models' outputs."""
    return float(max(np.abs(got - expected).max() for got, expected in zip(outputs, reference)))


def parity(model_bytes: bytes, model: Classifier | Ensemble, windows: np.ndarray) -> float:
    """Largest absolute difference of scores and embeddings, onnxruntime (CPU) vs PyTorch."""
    with torch.no_grad():
        scores, embedding = model(torch.from_numpy(windows))
    return largest_difference(onnx_outputs(model_bytes, windows), (scores.numpy(), embedding.numpy()))


def exported_network(checkpoints: Sequence[Path]) -> tuple[Classifier | Ensemble, WindowSpec, tuple[str, ...], str]:
    """The network to export from one classifier checkpoint, or the ensemble of several (the same
    window and classes, checked), with its window, labels and the source commit(s) it was trained at."""
    saved = [read_checkpoint(path, ("classifier",)) for path in checkpoints]
    networks = [classifier_from_checkpoint(checkpoint) for checkpoint in saved]
    model, window, labels = networks[0]
    for path, (_, their_window, their_labels) in zip(checkpoints[1:], networks[1:]):
        if (their_window, their_labels) != (window, labels):
            raise InputError(f"{path}: another window or other classes than {checkpoints[0]} (an ensemble's are one)")
    commits = [checkpoint.get("source_commit") or "" for checkpoint in saved]
    if len(commits) == 1:  # a checkpoint that does not say: the checkout exporting it, if any
        commit = commits[0] or source_commit() or "unknown (exported outside a git checkout)"
    else:  # each member's own (one for all trained at one commit), never the exporting checkout's
        commit = ", ".join(dict.fromkeys(c or "unknown" for c in commits))
    if len(networks) > 1:
        model = Ensemble([network for network, _, _ in networks]).eval()
    return model, window, labels, commit


def network_predictions(
    checkpoints: Sequence[Path], dataset: SkeletonDataset, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The labels of the dataset's sequences ``indices`` and the classes that the network of
    ``checkpoints`` (one classifier, or the ensemble of several) answers for them, clip by clip,
    each clip windowed as the protocols window it."""
    model, window, _, _ = exported_network(checkpoints)
    clips = clips_from_dataset(dataset, window, indices)
    return np.array([clip.label for clip in clips]), predict_clips(model, clips, window)


def export_model(
    checkpoints: Sequence[Path],
    output: Path,
    name: str,
    parity_windows: np.ndarray,
    training_data: str,
    protocol: str,
    accuracy: dict[str, float],
    fp16: bool = False,
    int8: bool = False,
) -> tuple[ModelCard, list[ExportReport]]:
    """Export the classifier of ``checkpoints`` (several: their ``Ensemble``) in FP32 and the
    requested variants beside each other: NAME.onnx, NAME.fp16.onnx, NAME.int8.onnx.
    ``parity_windows`` are real windows of the training data: the variants are compared with
    PyTorch on them, and INT8 is calibrated on them. Raises InputError when FP32 parity with
    PyTorch is not within 1e-4."""
    model, window, labels, commit = exported_network(checkpoints)
    if parity_windows.shape[1:] != (window.length, window.num_joints, window.dims):
        raise InputError(f"parity windows of shape {parity_windows.shape[1:]} do not fit the model's window")
    card = ModelCard(
        name=name,
        labels=labels,
        window=window,
        embedding_size=model.embedding_size,
        input_space="image" if window.dims == 2 else "camera",
        training_data=training_data,
        protocol=protocol,
        accuracy=accuracy,
        source_commit=commit,
        created=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    fp32 = _with_card(_to_onnx(model, window), card)
    difference = parity(fp32.SerializeToString(), model, parity_windows)
    if not difference < FP32_TOLERANCE:  # NaN included: a model with NaN weights
        raise InputError(f"ONNX and PyTorch differ by {difference:.2e} (limit {FP32_TOLERANCE:.0e}); not written")
    reports = [_save(fp32, output, model, parity_windows)]
    if fp16:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = _with_card(convert_float_to_float16(fp32, keep_io_types=True), card)
        reports.append(_save(half, variant_path(output, "fp16"), model, parity_windows))
    if int8:
        int8_model = quantised(fp32, card, parity_windows)
        reports.append(_save(int8_model, variant_path(output, "int8"), model, parity_windows))
    return card, reports


class _Calibration:
    """onnxruntime's calibration reader over real windows, a few at a time."""

    def __init__(self, windows: np.ndarray, batch: int = 16) -> None:
        self._batches = iter([{INPUT_NAME: windows[i : i + batch]} for i in range(0, len(windows), batch)])

    def get_next(self) -> dict | None:
        return next(self._batches, None)


def _per_tensor_fallback(record: logging.LogRecord) -> bool:
    """Drops the quantiser's warning for each 1-D weight (the batch norms' scales): it has no
    channel axis, so it is quantised per tensor, as intended; a line for each of them buried the
    warnings that matter."""
    return not record.getMessage().startswith("Axis 1 is out-of-range for weight")


# How `quantised` makes an INT8 variant, as cards say it.
INT8_RECIPE = "static INT8 (QDQ) with 7-bit weights"


def quantised(fp32, card: ModelCard, calibration_windows: np.ndarray):
    """The INT8 variant of an FP32 model (static, QDQ), its activations calibrated on real windows."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder:
        source, prepared, target = (Path(folder) / f"{n}.onnx" for n in ("fp32", "prepared", "int8"))
        plain = onnx.ModelProto()
        plain.CopyFrom(fp32)
        # The exporter's recorded intermediate shapes trip the quantiser's own shape inference;
        # without them it infers every shape afresh.
        del plain.graph.value_info[:]
        onnx.save_model(plain, str(source))
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        root = logging.getLogger()
        root.addFilter(_per_tensor_fallback)
        try:
            quantize_static(
                str(prepared),
                str(target),
                _Calibration(calibration_windows),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                # 7-bit weights: x86 CPUs without VNNI (AVX2 only, as on many edge boxes) multiply
                # uint8 activations by int8 weights in int16 pairs that saturate, and a model then
                # answers otherwise there than where it was calibrated: daily3d's INT8 file with
                # 8-bit weights scored 430 of NW-UCLA's 464 test clips on an AVX2-only CPU against
                # 441 on the machine that exported it. With 7-bit weights a pair cannot saturate
                # (441 on the AVX2-only CPU, quantised again so).
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            root.removeFilter(_per_tensor_fallback)
        return _with_card(onnx.load(str(target)), card)


def _save(model_proto, path: Path, model: Classifier | Ensemble, windows: np.ndarray) -> ExportReport:
    write_atomic(model_proto, path)
    return ExportReport(path, parity(path.read_bytes(), model, windows), path.stat().st_size)
