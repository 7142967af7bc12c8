"""The human-readable model card written beside every exported model (models/NAME.md)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from skeleton.artifact import ModelCard
from skeleton.errors import InputError
from skeleton.windows import WindowSpec

LIMITS_2D = """\
- Input: 2-D image landmarks (pixels, any resolution), mapped to the Penn Action joints. Trained on
  human annotations of YouTube sports video; MediaPipe landmarks are noisier and place the head and
  hips slightly differently, so expect some loss on camera streams (the domain check:
  `python -m benchmarks.domain_check`, reported in results/README.md).
- One person per window; people are classified independently. Needs the whole body in view: a
  close-up of hands or face (no hips, no legs) gives windows of mostly missing joints.
- Only the classes listed above are known; anything else is forced into one of them (use the service's
  enrolled actions and score thresholds for open-set use)."""

LIMITS_3D = """\
- Input: 3-D joints in metres, y up (Kinect camera space, mocap, or MediaPipe world landmarks turned
  into Kinect axes by the shared core). Trained on Kinect v1 skeletons; MediaPipe world landmarks are
  rougher in depth and hip-centred per frame, so expect some loss on them (the domain check:
  `python -m benchmarks.domain_check`, reported in results/README.md).
- One person per window; the sensor's left/right conventions are handled by the joint layouts.
- Only the classes listed above are known; anything else is forced into one of them."""

# What a 3-D model's normalisation makes of a sensor mounted higher than its training data's.
CAMERA_PITCH_UPRIGHT = """\
- Camera height: windows are stood upright before the model sees them (normalisation `{normalization}`),
  so a sensor mounted high and looking down is seen as a level one, up to 45 degrees (`python -m
  benchmarks.camera_pitch`). A window spent lying down or bent double is leaned back by 45 degrees only."""
CAMERA_PITCH_KEPT = """\
- Camera height: windows keep the sensor's pitch (normalisation `{normalization}`), so a sensor pitched
  otherwise than its training data's, level or looking further down, costs accuracy (`python -m
  benchmarks.camera_pitch` measures it)."""


def limits(window: WindowSpec) -> str:
    """The card's limits for a model taking ``window``."""
    if window.dims == 2:
        return LIMITS_2D
    pitch = CAMERA_PITCH_UPRIGHT if "-upright" in window.normalization else CAMERA_PITCH_KEPT
    return f"{LIMITS_3D}\n{pitch.format(normalization=window.normalization)}"


@dataclass(frozen=True)
class Variant:
    file: str
    size_mb: float
    max_difference: float
    accuracy: float


def variants_compared_on(part: str) -> str:
    """How a card says which part its variants' accuracy is measured on."""
    return f"Accuracy on the {part}"


def variant_row(variant: Variant) -> str:
    """The variant's row in its card's table of variants."""
    v = variant
    return f"| `{v.file}` | {v.size_mb:.2f} MB | {v.max_difference:.1e} | {v.accuracy:.1%} |"


def variant_row_at(path: Path, file: str) -> int:
    """The line of the card at ``path`` that is ``file``'s row in its table of variants."""
    rows = [i for i, line in enumerate(path.read_text().splitlines()) if line.startswith(f"| `{file}` |")]
    if len(rows) != 1:
        raise InputError(f"{path}: {len(rows)} rows of {file} in its table of variants, not one")
    return rows[0]


def replace_variant_row(path: Path, variant: Variant, remark: str) -> None:
    """Rewrites the row of ``variant`` in the card at ``path`` (the rest of the card as it was) and
    says ``remark`` (one line, replacing an earlier remark about the same file) below the table."""
    at = variant_row_at(path, variant.file)
    lines = path.read_text().splitlines()
    lines[at] = variant_row(variant)
    end = next((i for i in range(at, len(lines)) if not lines[i].startswith("|")), len(lines))
    paragraph = f"`{variant.file}` {remark}"
    if end + 1 < len(lines) and lines[end + 1].startswith(f"`{variant.file}` "):
        lines[end + 1] = paragraph
    else:
        lines[end:end] = ["", paragraph]
    path.write_text("\n".join(lines) + "\n")


def write_card(
    path: Path, card: ModelCard, variants: list[Variant], scored: str, confusion: Path | None, confusion_of: str
) -> None:
    """The card at ``path``: the variants' accuracy on the ``scored`` part, and the confusion matrix
    image ``confusion`` (the errors on the ``confusion_of``; left out where there is none)."""
    figure = ""
    target = path.with_name(f"{card.name}.confusion.png")
    if confusion is not None and confusion.is_file():
        shutil.copyfile(confusion, target)
        figure = f"\n![confusion matrix on the {confusion_of}]({target.name})\n"
    else:
        # An earlier model of this name's figure: it would sit beside a card that does not show it.
        target.unlink(missing_ok=True)
    window = card.window
    rows = "\n".join(variant_row(v) for v in variants)
    text = f"""# Model card: {card.name}

| | |
|---|---|
| classes | {len(card.labels)}: {", ".join(card.labels)} |
| input | {window.dims}-D joints, layout `{window.layout}`, windows of {window.length} frames at {window.fps:g} fps \
({window.duration_ms / 1000:.1f} s), normalisation `{window.normalization}` |
| embedding | {card.embedding_size} values (used for enrolled custom actions) |
| training data | {card.training_data} |
| protocol | {card.protocol} |
| accuracy | {", ".join(f"{k}: {v:.1%}" for k, v in card.accuracy.items())} |
| source commit | {card.source_commit} |
| exported | {card.created} |

Everything in this table is also in the ONNX file's metadata, where the service reads it.

## Variants

{variants_compared_on(scored)}, each file run with onnxruntime (CPU); difference = largest
absolute difference of scores and embeddings from the PyTorch model on real windows.

| file | size | max \\|ONNX - PyTorch\\| | accuracy |
|---|---|---|---|
{rows}
{figure}
## Limits

{limits(window)}
"""
    path.write_text(text)
