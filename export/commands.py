"""Offline-stage subcommands: ``pretrain``, ``train``, ``evaluate``, ``export`` and ``models``.

Torch is imported inside the handlers, so that the rest of the CLI starts without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from export.config import TrainConfig


def register(subcommands: argparse._SubParsersAction) -> None:
    pretrain = subcommands.add_parser(
        "pretrain", help="CFSEM self-supervised pretraining of a skeleton encoder (runs under torchrun too)"
    )
    pretrain.add_argument("--config", type=Path, required=True, help="experiment TOML (see configs/pretrain/)")
    pretrain.add_argument("--resume", action="store_true", help="continue from the output folder's checkpoint")
    pretrain.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    pretrain.set_defaults(handler=_pretrain)

    train = subcommands.add_parser(
        "train", help="fine-tune, train from scratch or linear-probe on a benchmark (runs under torchrun too)"
    )
    train.add_argument("--config", type=Path, required=True, help="experiment TOML (see configs/train/)")
    train.add_argument("--seed", type=int, default=None, help="override the config's seed (output gets -seedN)")
    train.add_argument(
        "--validation",
        action="store_true",
        help="train on the train split less a validation part and score that part, not the test split"
        " (the config's validation = true; output gets -validation unless the config already validates)",
    )
    train.set_defaults(handler=_train)

    evaluate = subcommands.add_parser("evaluate", help="score a model on a dataset by a standard protocol")
    evaluate.add_argument("--data", type=Path, required=True, help="dataset file (.npz)")
    evaluate.add_argument(
        "--split",
        required=True,
        choices=("cross-subject", "cross-view", "all"),
        help="cross-subject | cross-view | all (every labelled sequence, no train part)",
    )
    evaluate.add_argument(
        "--probe",
        choices=("linear", "knn"),
        default=None,
        help="fit a probe on the frozen embeddings of the split's train part",
    )
    evaluate.add_argument(
        "--model",
        default=None,
        help="shipped model name, .onnx file or .pt checkpoint (default: the default model, sports2d)",
    )
    evaluate.add_argument("--json", action="store_true", help="end with one line of JSON")
    evaluate.set_defaults(handler=_evaluate)

    export = subcommands.add_parser("export", help="export a trained classifier to a self-describing ONNX model")
    export.add_argument(
        "runs",
        type=Path,
        nargs="+",
        metavar="RUN",
        help="training run folder (model.pt and config.toml); several runs of one config with other seeds"
        " are exported as one model answering the mean of their scores (an ensemble)",
    )
    export.add_argument(
        "--name",
        default=None,
        help="model name: the service asks for a model by its file's stem, so NAME.onnx is its file"
        " (no '/', no leading '.', not ending in .fp16 or .int8, its variants' names); default: the stem of -o",
    )
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="the model file, NAME.onnx: with --name too, its stem must be NAME (a mismatch is refused);"
        " default: the project's models/NAME.onnx (where models are read)",
    )
    export.add_argument("--fp16", action="store_true", help="also write NAME.fp16.onnx (GPUs)")
    export.add_argument("--int8", action="store_true", help="also write NAME.int8.onnx (CPU edge boxes)")
    export.add_argument(
        "--accuracy-from",
        type=Path,
        default=None,
        help="for a run whose test part is held back: a run with the same settings scored on validation",
    )
    export.set_defaults(handler=_export)


def _pretrain(args: argparse.Namespace) -> int:
    import dataclasses

    from export.config import PretrainConfig, load_config
    from export.pretrain import run_pretrain
    from skeleton.errors import InputError

    config = load_config(args.config, PretrainConfig)
    if args.epochs is not None:
        if args.epochs < 1:  # zero epochs would write an untrained encoder.pt
            raise InputError(f"--epochs must be at least 1, not {args.epochs}")
        config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=args.epochs))
    run_pretrain(config, resume=args.resume)
    return 0


def _train(args: argparse.Namespace) -> int:
    import dataclasses

    from export.config import MAX_SEED, TrainConfig, load_config
    from export.supervised import run_train
    from skeleton.errors import InputError

    config = load_config(args.config, TrainConfig)
    experiment = config.experiment
    # Each override gets its own output folder, so that it never writes over the config's run.
    if args.seed is not None:
        if not 0 <= args.seed <= MAX_SEED:
            raise InputError(f"--seed must be from 0 to {MAX_SEED}, not {args.seed}")
        experiment = dataclasses.replace(experiment, seed=args.seed, output=f"{experiment.output}-seed{args.seed}")
    if args.validation and not config.validation:
        experiment = dataclasses.replace(experiment, output=f"{experiment.output}-validation")
    run_train(dataclasses.replace(config, experiment=experiment, validation=config.validation or args.validation))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from export.evaluate import evaluate, print_result

    print_result(evaluate(args.data, args.split, args.probe, args.model), args.json)
    return 0


def _export(args: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:  # an ensemble's confusion image, before the card copies it
        return _export_runs(args, Path(scratch))


def _export_runs(args: argparse.Namespace, scratch: Path) -> int:
    import sys

    import numpy as np

    from export.data import calibration_windows
    from export.evaluate import head_accuracy, load_model
    from export.model_card import Variant, write_card
    from export.onnx_export import export_model, network_predictions, remove_stale_variants
    from export.plots import confusion_matrix, plot_confusion
    from export.runtime import read_checkpoint
    from export.supervised import choose_parts
    from skeleton.artifact import training_data_text
    from skeleton.dataset import SkeletonDataset
    from skeleton.errors import InputError

    # Every check before any work: scoring and the parity checks take a while, and a refusal
    # after them would leave a model written without its card.
    name, output = _model_name_and_file(args.name, args.output)
    runs = args.runs
    configs = _export_configs(runs)
    config = configs[0]
    if len(runs) > 1 and args.accuracy_from is not None:
        raise InputError("--accuracy-from is one run's accuracy, not an ensemble's: an ensemble is scored as a whole")
    dataset = SkeletonDataset.load(Path(config.benchmark.path))
    for run in runs:
        _check_same_run(run, read_checkpoint(run / "model.pt", ("classifier",)), config, dataset.label_names)
    parts = choose_parts(dataset, config)
    if len(runs) > 1 and not len(parts.scored):
        raise InputError(
            "these runs scored nothing (their test part is held back): an ensemble is scored as a whole, on its"
            " runs' own test or validation part, so it needs runs that scored one"
        )
    windows = calibration_windows(dataset, parts.fit, config.window)
    budget = config.labels
    labels = f"{budget.per_class} per class" if budget.per_class else f"{budget.fraction:.0%} of the labels"
    augmentation = f", mirrored windows {config.mirror:.0%}" if config.mirror else ""
    augmentation += f", joints hidden in {config.occlusion:.0%} of the windows" if config.occlusion else ""
    augmentation += f", windows mixed in pairs (mixup, Beta({config.mixup}, {config.mixup}))" if config.mixup else ""
    augmentation += ", answers the mean of a window and its mirror image" if config.mirror_average else ""
    if config.weight_average_decay:
        augmentation += f", weights averaged over steps (decay {config.weight_average_decay})"
    seeds = ", ".join(str(c.experiment.seed) for c in configs)
    if len(runs) > 1:
        augmentation += f", the mean of the scores of {len(runs)} models trained alike"
    check_on, check_name = parts.variants_part()
    if len(parts.scored):
        # Measured now, by the protocol's own code, on the part the runs were scored on.
        truth, predicted = network_predictions([run / "model.pt" for run in runs], dataset, parts.scored)
        measured = float(np.mean(predicted == truth))
        accuracy = {parts.scored_name: round(measured, 4)}
        confusion, confusion_of = runs[0] / "confusion.png", check_name
        if len(runs) > 1:  # the ensemble's own errors, not its first member's
            confusion = scratch / "confusion.png"
            matrix = confusion_matrix(truth, predicted, len(dataset.label_names))
            plot_confusion(matrix, list(dataset.label_names), confusion, f"{name}: {parts.scored_name} {measured:.1%}")
    else:
        accuracy = _reference_accuracy(args.accuracy_from, config)
        # Nothing unseen is left to score: the variants are compared on the training data, and
        # the card shows the errors of the run its accuracy comes from.
        reference = args.accuracy_from if args.accuracy_from.is_dir() else args.accuracy_from.parent
        confusion = reference / "confusion.png"
        confusion_of = "validation part, by the run with the same settings that the accuracy comes from"
    card, reports = export_model(
        [run / "model.pt" for run in runs],
        output,
        name,
        parity_windows=windows,
        training_data=training_data_text(
            Path(config.benchmark.path).name, config.benchmark.train_split, less_validation=config.validation
        ),
        protocol=f"{_protocol_name(config.mode)} ({labels}, seed{'s' if len(runs) > 1 else ''} {seeds}, "
        f"{config.optim.epochs} epochs{augmentation})",
        accuracy=accuracy,
        fp16=args.fp16,
        int8=args.int8,
    )
    for path in remove_stale_variants(output, [report.path for report in reports]):
        print(f"removed {path}: a variant of an earlier model named {name!r}, not written this time", file=sys.stderr)
    variants = []
    for report in reports:
        accuracy = head_accuracy(load_model(str(report.path)), dataset, check_on)
        variants.append(Variant(report.path.name, report.size_bytes / 1e6, report.max_abs_difference, accuracy))
        print(
            f"wrote {report.path} ({report.size_bytes / 1e6:.2f} MB): max |ONNX - PyTorch| "
            f"{report.max_abs_difference:.2e}, accuracy {accuracy:.2%} on the {check_name}"
        )
    write_card(output.with_suffix(".md"), card, variants, check_name, confusion, confusion_of)
    print(f"wrote {output.with_suffix('.md')}")
    return 0


def _protocol_name(mode: str) -> str:
    """How a card names the protocol of an exportable run (probe runs have no classifier)."""
    if mode == "scratch":
        return "trained from scratch, no pretraining"
    # The shipped cards' wording, kept so that they stay accurate without a re-export.
    return f"{mode} of the CFSEM encoder"


def _model_name_and_file(name: str | None, output: Path | None) -> tuple[str, Path]:
    """The model's name and the file it is written to, checked before anything is done: the
    service calls a model by its file's stem and `actionrec models` by the name in its card, so
    the two must be one (either one gives the other)."""
    from export.evaluate import MODELS_DIR
    from export.onnx_export import check_model_name, check_output
    from skeleton.errors import InputError

    if output is not None:
        check_output(output)
    if name is None:
        if output is None:
            raise InputError("name the model with --name, or its file with -o")
        check_model_name(output.stem, f"{output}: its stem")
        return output.stem, output
    check_model_name(name)
    if output is None:
        # Where `models`, `evaluate --model NAME` and `serve` look names up, wherever it runs from.
        output = MODELS_DIR / f"{name}.onnx"
        check_output(output)
    elif output.stem != name:
        raise InputError(
            f"{output}: a model named {name!r} is written as {name}.onnx (the service names a model by its"
            " file's stem); give -o a file of that name, or leave out --name"
        )
    return name, output


def _exportable_config(run: Path) -> TrainConfig:
    """The config of a run folder that holds a classifier; InputError when the folder is
    missing, or its run fitted a probe (nothing to export)."""
    from export.config import TrainConfig, load_config
    from skeleton.errors import InputError

    if not run.exists():
        raise InputError(f"{run}: no such run folder")
    if not run.is_dir():
        raise InputError(f"{run}: not a run folder (a training run's output folder, with config.toml and model.pt)")
    config = load_config(run / "config.toml", TrainConfig)
    if config.mode in ("linear", "knn"):
        raise InputError(
            f"{run}: a {config.mode} probe run has no classifier to export (its probe is fitted on the"
            " spot; export a finetune or scratch run)"
        )
    return config


# What the runs of an ensemble may set otherwise than each other: they are one recipe's draws.
_DRAW_SETTINGS = ("experiment.name", "experiment.output", "experiment.seed")


def _export_configs(runs: list[Path]) -> list[TrainConfig]:
    """The exportable configs of ``runs``; InputError unless each run read the dataset file that is
    there now (by its bytes, where its results record them: the card's accuracy is measured on the
    dataset as it is now), and several runs are one recipe, seeds apart (the same seed twice is
    the same model twice; another recipe is another model; the same files, by path and by the
    bytes each recorded) with every label (each seed draws its own labelled clips, so an ensemble
    of a label budget would have seen more than its card could say)."""
    from skeleton.errors import InputError

    configs = [_exportable_config(run) for run in runs]
    reads = [_recorded_reads(run) for run in runs]
    dataset, first = Path(configs[0].benchmark.path), runs[0]
    # A missing file is left to the loading, which names it.
    dataset_now = _digest(dataset) if dataset.is_file() and any("benchmark.path" in r for r in reads) else None
    seen: dict[int, Path] = {}
    for run, config, read in zip(runs, configs, reads):
        if (seed := config.experiment.seed) in seen:
            raise InputError(f"{run}: seed {seed} again ({seen[seed]} has it): an ensemble's runs differ by their seed")
        seen[seed] = run
        if differences := _settings_apart(config, configs[0], _DRAW_SETTINGS):
            shown = _shown(differences, f"in {run}", f"in {first}")
            raise InputError(f"{run}: not trained as {first} was, so not a draw of one model ({shown})")
        for key, digest in read.items():
            if key in reads[0] and digest != reads[0][key]:
                named = config.benchmark.path if key == "benchmark.path" else config.pretrained
                raise InputError(f"{run}: read other bytes than {first} did as {key} ({named}): not the same files")
        if dataset_now is not None and read.get("benchmark.path", dataset_now) != dataset_now:
            raise InputError(
                f"{run}: read another dataset than {dataset} holds now (converted again since?): its accuracy would"
                " be measured on other clips than it was trained and scored on"
            )
    budget = configs[0].labels
    if len(runs) > 1 and (budget.per_class or budget.fraction < 1.0 or configs[0].pseudo_label_share):
        raise InputError(
            f"{first}: trained with a label budget or pseudo-labels; each seed draws its own clips, so an"
            " ensemble of them would have learnt from more labels than its card could say (ensembles take every label)"
        )
    return configs


def _recorded_reads(run: Path) -> dict[str, str]:
    """The SHA-256 of each file a run read, by config key, as its results.json records them ({} for
    a run from before that record, or without readable results)."""
    import json

    try:
        read = json.loads((run / "results.json").read_text()).get("read_sha256")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return {}
    return {k: v for k, v in read.items() if isinstance(v, str)} if isinstance(read, dict) else {}


def _check_same_run(run: Path, saved: dict, config: TrainConfig, label_names: tuple[str, ...]) -> None:
    """InputError unless the run folder's model.pt is the model its config.toml trained: the
    card's protocol and the parity windows come from the config, the network from model.pt."""
    import dataclasses

    from export.encoder import EncoderConfig
    from skeleton.errors import InputError
    from skeleton.windows import WindowSpec

    pairs = {
        "window": (WindowSpec(**saved["window"]), config.window),
        "encoder": (EncoderConfig.from_dict(saved["encoder_config"]), config.encoder),
    }
    differences = [
        f"{part} {field.name} {getattr(held, field.name)!r} in model.pt, {getattr(configured, field.name)!r}"
        " in config.toml"
        for part, (held, configured) in pairs.items()
        for field in dataclasses.fields(held)
        if getattr(held, field.name) != getattr(configured, field.name)
    ]
    if tuple(saved["labels"]) != tuple(label_names):
        differences.append(f"model.pt's classes are not those of {config.benchmark.path}")
    if differences:
        raise InputError(
            f"{run}: model.pt and config.toml disagree, so they are not from one run ({'; '.join(differences)})"
        )


# What a run scored on validation may set otherwise than the run whose card takes its accuracy.
_VALIDATION_SETTINGS = ("experiment.name", "experiment.output", "validation", "validation_holds_out", "validation_fold")


def _same_settings(reference: Path, results: dict, config: TrainConfig) -> None:
    """InputError unless the run folder ``reference`` (its ``results``) trained with ``config``'s
    settings, but for its validation part: another run's accuracy (another dataset, encoder or
    recipe) would go on the card as this model's. The dataset and the encoder are compared by the
    bytes the reference run read (recorded in its results), so another path to the same file is
    the same, and a file replaced since under the same path is not; a run from before that record
    is compared by path (and file name, for the dataset), with a warning."""
    import sys

    from export.config import TrainConfig, load_config
    from skeleton.errors import InputError

    if not (reference / "config.toml").is_file():
        raise InputError(f"{reference}: has no config.toml, so its settings cannot be compared with this run's")
    differences = _settings_apart(load_config(reference / "config.toml", TrainConfig), config, _VALIDATION_SETTINGS)
    read = results.get("read_sha256")
    files = {"benchmark.path": config.benchmark.path, "pretrained": config.pretrained}
    for key, path in files.items():
        if not path:
            continue
        if isinstance(read, dict) and key in read:
            differences.pop(key, None)
            if read[key] != (now := _digest(Path(path))):
                differences[key] = (f"bytes {str(read[key])[:12]}", f"{path} ({_shown_digest(now)})")
        elif key in differences:  # an older run: the same file name (dataset), the same bytes now (encoder)
            theirs = Path(differences[key][0])
            same = theirs.name == Path(path).name if key == "benchmark.path" else _same_bytes(theirs, Path(path))
            if same:
                del differences[key]
    if not isinstance(read, dict):
        print(
            f"warning: {reference} does not record the bytes it read; its dataset and encoder are compared"
            " by path only",
            file=sys.stderr,
        )
    if differences:
        raise InputError(f"{reference}: not a run with this run's settings ({_shown(differences)})")


def _settings_apart(
    theirs: TrainConfig, ours: TrainConfig, allowed: tuple[str, ...]
) -> dict[str, tuple[object, object]]:
    """The settings two configs differ in, (theirs, ours) by key, but for the ``allowed`` ones."""
    from export.config import config_differences

    differences = config_differences(theirs, ours)
    for key in allowed:
        differences.pop(key, None)
    return differences


def _shown(differences: dict[str, tuple[object, object]], there: str = "there", here: str = "here") -> str:
    """Config differences, (there, here) by key, as a refusal names them."""
    return "; ".join(f"{key} {a!r} {there}, {b!r} {here}" for key, (a, b) in differences.items())


_GONE = "no such file"


def _digest(path: Path) -> str:
    """A file's digest, or what stands for it when the file is gone (never equal to a digest)."""
    from skeleton.provenance import file_digest

    return file_digest(path) if path.is_file() else _GONE


def _shown_digest(digest: str) -> str:
    return digest if digest == _GONE else f"bytes {digest[:12]}"


def _same_bytes(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and _digest(a) == _digest(b)


def _reference_accuracy(reference: Path | None, config: TrainConfig) -> dict[str, float]:
    """The accuracy of a run with the same settings scored on validation, for a model whose own
    test part is held back (Penn Action)."""
    import json

    from skeleton.errors import InputError

    if reference is None:
        raise InputError(
            "this run scored nothing (its test part is held back): name a run with the same settings,"
            " scored on a validation part, with --accuracy-from"
        )
    path = reference if reference.is_file() else reference / "results.json"
    if not path.is_file():
        raise InputError(f"{path}: no such file (--accuracy-from names a training run's folder)")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(results, dict):
        raise InputError(f"{path}: not a training run's results (a JSON object)")
    if results.get("scored") != "validation":
        raise InputError(f"{path}: was scored on {results.get('scored')!r}, not on a validation part")
    accuracy, n_train = results.get("accuracy"), results.get("n_train")
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool) or not 0.0 <= accuracy <= 1.0:
        raise InputError(f"{path}: accuracy must be a number from 0 to 1, not {accuracy!r}")
    if not isinstance(n_train, int) or isinstance(n_train, bool) or n_train < 1:
        raise InputError(f"{path}: n_train must be a number of training clips, not {n_train!r}")
    _same_settings(path.parent, results, config)
    return {f"validation (same settings, {n_train} training clips)": round(float(accuracy), 4)}
