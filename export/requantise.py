"""Rebuild an exported model's INT8 variant from its FP32 file, without its training run.

    python -m export.requantise models/daily3d.onnx --config configs/train/daily3d-ship.toml

For when the INT8 recipe (``export.onnx_export.quantised``) changes after a model shipped: the
FP32 file stays as it is, NAME.int8.onnx is quantised again from it, calibrated on the windows an
export takes (``export.data.calibration_windows``: the training config names the data and the
window), scored on the part the card's table of variants states (the config's test or validation
part, or its train part when both are held back), and its row of the card (NAME.md) is rewritten
with a remark saying so. Its difference is measured against the FP32 file, which matches the
PyTorch model to the card's first row.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from skeleton.errors import InputError


def requantise(model: Path, config_path: Path) -> tuple[Path, float, float]:
    """Writes the INT8 variant of the FP32 model file ``model`` and rewrites its card's row:
    (the file, its largest difference from the FP32 file, its accuracy on the card's part)."""
    import os
    import tempfile

    import onnx

    from export.config import TrainConfig, load_config
    from export.data import calibration_windows
    from export.evaluate import head_accuracy, load_model
    from export.model_card import Variant, replace_variant_row, variant_row_at, variants_compared_on
    from export.onnx_export import INT8_RECIPE, largest_difference, onnx_outputs, quantised, variant_path, write_atomic
    from export.supervised import choose_parts
    from skeleton.artifact import open_model, training_data_text
    from skeleton.dataset import SkeletonDataset

    # Every check before any work: the file and its card are replaced together or not at all.
    card, _ = open_model(model)  # refuses a file that does not describe itself
    if model.name != f"{card.name}.onnx":
        raise InputError(f"{model}: not an FP32 model file (its card names it {card.name}.onnx)")
    card_path, target = model.with_suffix(".md"), variant_path(model, "int8")
    if not card_path.is_file():
        raise InputError(f"{card_path}: no card beside the model")
    variant_row_at(card_path, target.name)
    config = load_config(config_path, TrainConfig)
    if config.window != card.window:
        raise InputError(f"{config_path}: its window {config.window} is not the model's, {card.window}")
    data = Path(config.benchmark.path)
    trained_on = training_data_text(data.name, config.benchmark.train_split, less_validation=config.validation)
    if trained_on != card.training_data:
        raise InputError(f"{config_path}: trains on {trained_on!r}, the model on {card.training_data!r}")
    dataset = SkeletonDataset.load(data)
    parts = choose_parts(dataset, config)
    scored, part_name = parts.variants_part()
    if variants_compared_on(part_name) not in card_path.read_text():
        raise InputError(f"{card_path}: its variants are not compared on the {part_name} that {config_path} gives")
    windows = calibration_windows(dataset, parts.fit, config.window)

    with tempfile.TemporaryDirectory(dir=model.parent) as scratch:
        written = Path(scratch) / target.name
        write_atomic(quantised(onnx.load(str(model)), card, windows), written)
        reference = onnx_outputs(model.read_bytes(), windows)
        difference = largest_difference(onnx_outputs(written.read_bytes(), windows), reference)
        accuracy = head_accuracy(load_model(str(written)), dataset, scored)
        size_mb = written.stat().st_size / 1e6
        os.replace(written, target)
    today = datetime.now(UTC).date().isoformat()
    replace_variant_row(
        card_path,
        Variant(target.name, size_mb, difference, accuracy),
        f"was quantised again from `{model.name}` on {today} (`python -m export.requantise`: {INT8_RECIPE}); "
        "its difference is from that FP32 file.",
    )
    return target, difference, accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the FP32 model file, NAME.onnx (its card NAME.md beside it)")
    parser.add_argument("--config", type=Path, required=True, help="the training config the model was trained with")
    args = parser.parse_args(argv)
    try:
        target, difference, accuracy = requantise(args.model, args.config)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {target}: max |INT8 - FP32| {difference:.2e}, accuracy {accuracy:.2%}; its card's row rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
