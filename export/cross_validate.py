"""Cross-validation of training configs: each one trained and scored once per validation fold.

    python -m export.cross_validate CONFIG [CONFIG ...] [--seeds N [N ...]] [--jobs N] [--runs DIR]
                                    [--out FILE] [--report-only]

One validation part can be too small to tell two settings apart (MSR Action3D's holds one of its
five train subjects out: 57 clips, 1.75 points a clip, while the score of one setting moves by a
few clips from seed to seed). Here every config is trained once per validation part its train
split gives (``export.data.validation_parts``: each train subject of MSR Action3D in turn; each
train view of NW-UCLA where the config holds out views), on the rest of the train split, and scored
on that part: never on a test split. The configs must train on one benchmark and hold out the same
kind of part, so the folds pair up. The report gives each fold's accuracy, the mean over folds, the
accuracy of all folds' clips pooled, and each config's paired difference from the first one, fold by
fold. Runs go under ``runs/cross-validation/STEM-seedN/foldK`` (STEM: the config file's name), each
with its effective ``config.toml``; a finished run is not run again unless its config has changed.

With several seeds, each config is trained once per seed and fold, and the report adds, per
config, the mean of its seeds and the ensemble of its seeds (the mean of their scores, as
``actionrec export RUN RUN ...`` ships it) on each fold, the ensemble paired with the seeds' mean:
whether an ensemble is worth its cost is then answered on every fold, not on one validation part.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from export.config import MAX_SEED, TRAINED_MODES, TrainConfig, load_config
from export.data import VALIDATION_HOLDOUTS, validation_parts
from export.onnx_export import network_predictions
from export.results_table import Run, mean_and_spread, run_all
from export.supervised import choose_parts, labelled_train
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError

RUNS = Path("runs/cross-validation")


@dataclasses.dataclass(frozen=True)
class CrossValidation:
    """The runs of each config at each seed, one a fold, by the config file's name and the seed;
    and what each fold holds out."""

    runs: dict[tuple[str, int], list[Run]]
    fold_names: list[str]

    @property
    def stems(self) -> list[str]:
        return list(dict.fromkeys(stem for stem, _ in self.runs))

    @property
    def seeds(self) -> list[int]:
        return list(dict.fromkeys(seed for _, seed in self.runs))

    def row_name(self, stem: str, seed: int) -> str:
        return stem if len(self.seeds) == 1 else f"{stem} seed {seed}"


def fold_names(config: TrainConfig) -> list[str]:
    """What each validation part the config's train split gives (as ``export.supervised`` carves
    them) holds out, such as ``subject 5``: one name a fold."""
    dataset = SkeletonDataset.load(Path(config.benchmark.path))
    train, _ = labelled_train(dataset, config)
    parts = validation_parts(dataset, train, by=config.validation_holds_out)
    if config.validation_holds_out == "views":
        return [f"view {dataset.views[part[0]]}" for part in parts]
    if len(parts) == 1 and (dataset.subjects[train] < 0).any():
        return ["a random fifth"]
    return ["subject " + ", ".join(str(s) for s in np.unique(dataset.subjects[part])) for part in parts]


def plan(paths: list[Path], seeds: Sequence[int] = (0,), runs_root: Path = RUNS) -> CrossValidation:
    """Each config's runs at each seed, one a fold."""
    if not paths:
        raise InputError("give one config or more to cross-validate")
    if not seeds:
        raise InputError("give one seed or more")
    if len(set(seeds)) < len(seeds):
        raise InputError(f"give each seed once, not {list(seeds)}: a seed twice trains the same models twice")
    if not all(0 <= seed <= MAX_SEED for seed in seeds):
        raise InputError(f"seeds go from 0 to {MAX_SEED}, not {list(seeds)}")
    configs = {path.stem: load_config(path, TrainConfig) for path in paths}
    if len(configs) < len(paths):
        raise InputError("two configs have the same file name; their runs would share a folder")
    first = next(iter(configs.values()))
    for stem, config in configs.items():
        compared = (config.benchmark.path, config.benchmark.train_split, config.validation_holds_out)
        if compared != (first.benchmark.path, first.benchmark.train_split, first.validation_holds_out):
            raise InputError(
                f"{stem} trains on {config.benchmark.path} {config.benchmark.train_split!r} holding out "
                f"{config.validation_holds_out}, not as {paths[0].stem} does: their folds would not pair up"
            )
    names = fold_names(first)
    planned = {}
    for stem, config in configs.items():
        for seed in seeds:
            runs = []
            for fold in range(len(names)):
                name = f"{stem}-seed{seed}-fold{fold}"
                output = runs_root / f"{stem}-seed{seed}" / f"fold{fold}"
                experiment = dataclasses.replace(config.experiment, name=name, seed=seed, output=str(output))
                changed = dataclasses.replace(config, experiment=experiment, validation=True, validation_fold=fold)
                runs.append(Run("train", name, changed))
            planned[stem, seed] = runs
    return CrossValidation(planned, names)


def ensemble_result(members: list[Run], dataset: Callable[[], SkeletonDataset]) -> dict | None:
    """The accuracy on their fold of the mean of the members' scores (one fold's finished runs of
    one config at several seeds), measured as ``actionrec export`` measures an ensemble; None where
    a member's model file is gone. ``dataset`` loads the benchmark (once, when first needed)."""
    if not all((run.folder / "model.pt").is_file() for run in members):
        return None
    parts = choose_parts(dataset(), members[0].config)
    truth, predicted = network_predictions([run.folder / "model.pt" for run in members], dataset(), parts.scored)
    return {"accuracy": float(np.mean(predicted == truth)), "n_test": len(truth)}


def mean_result(members: list[dict | None]) -> dict | None:
    """The mean accuracy of one fold's runs at several seeds; None until every one is done."""
    if not all(members):
        return None
    return {"accuracy": float(np.mean([r["accuracy"] for r in members])), "n_test": members[0]["n_test"]}


Rows = dict[str, list[dict | None]]  # a report row's name -> its result on each fold (None: not done)


def _rows_and_pairs(planned: CrossValidation) -> tuple[Rows, list[tuple[str, str]]]:
    """Every row of the report, and the pairs of rows compared fold by fold: each config with the
    first one, seed by seed; with several seeds also each config's mean of seeds and (for the
    protocols that train a classifier) the ensemble of its seeds, the ensemble paired with its
    seeds' mean and with the first config's ensemble, and each mean of seeds with the first's."""
    stems, seeds = planned.stems, planned.seeds
    rows = {planned.row_name(stem, seed): [run.result() for run in runs] for (stem, seed), runs in planned.runs.items()}
    pairs = [(planned.row_name(stem, seed), planned.row_name(stems[0], seed)) for stem in stems[1:] for seed in seeds]
    if len(seeds) == 1:
        return rows, pairs
    dataset = functools.cache(
        lambda: SkeletonDataset.load(Path(planned.runs[stems[0], seeds[0]][0].config.benchmark.path))
    )
    listed = ", ".join(str(seed) for seed in seeds)
    for stem in stems:
        by_fold = list(zip(*(planned.runs[stem, seed] for seed in seeds)))
        of_seeds = zip(*(rows[planned.row_name(stem, seed)] for seed in seeds))
        rows[f"{stem} mean of seeds {listed}"] = means = [mean_result(list(results)) for results in of_seeds]
        if stem != stems[0]:
            pairs.append((f"{stem} mean of seeds {listed}", f"{stems[0]} mean of seeds {listed}"))
        if by_fold[0][0].config.mode in TRAINED_MODES:  # the probes keep no classifier to average
            rows[f"{stem} ensemble of seeds {listed}"] = [
                ensemble_result(list(runs), dataset) if mean else None for runs, mean in zip(by_fold, means)
            ]
            pairs.append((f"{stem} ensemble of seeds {listed}", f"{stem} mean of seeds {listed}"))
            if stem != stems[0] and f"{stems[0]} ensemble of seeds {listed}" in rows:
                pairs.append((f"{stem} ensemble of seeds {listed}", f"{stems[0]} ensemble of seeds {listed}"))
    return rows, pairs


def report(planned: CrossValidation) -> str:
    """The Markdown table of whatever results exist; a row's summary needs every fold."""
    rows, pairs = _rows_and_pairs(planned)
    seeds = planned.seeds
    config = next(iter(planned.runs.values()))[0].config
    folds = len(planned.fold_names)
    sizes = [next((r["n_test"] for r in column if r), None) for column in zip(*rows.values())]
    lines = [
        f"# Cross-validation on {config.benchmark.path} {config.benchmark.train_split!r}",
        "",
        f"Validation accuracy (%), seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, never a test "
        f"split; a fold a validation part ({VALIDATION_HOLDOUTS[config.validation_holds_out]}), its clips: "
        f"{', '.join('?' if n is None else str(n) for n in sizes)}. "
        "Made by `python -m export.cross_validate`.",
        "",
        "| config | "
        + " | ".join(f"fold {k}: {name}" for k, name in enumerate(planned.fold_names))
        + " | mean ± std | pooled |",
        "|---|" + "---|" * (folds + 2),
    ]
    for name, results in rows.items():
        cells = [f"{100 * r['accuracy']:.1f}" if r else "—" for r in results]
        complete = all(results)
        summary = mean_and_spread([100 * r["accuracy"] for r in results]) if complete else "—"
        pooled = "—"
        if complete:
            right = sum(r["accuracy"] * r["n_test"] for r in results)
            pooled = f"{100 * right / sum(r['n_test'] for r in results):.1f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {summary} | {pooled} |")
    for name, baseline in pairs:
        both = [(a, b) for a, b in zip(rows[baseline], rows[name]) if a and b]
        if not both:
            continue
        differences = [100 * (b["accuracy"] - a["accuracy"]) for a, b in both]
        better = sum(d > 0 for d in differences)
        worse = sum(d < 0 for d in differences)
        lines += [
            "",
            f"{name} against {baseline}, paired over {len(both)} of {folds} folds: "
            + ", ".join(f"{d:+.1f}" for d in differences)
            + f" (mean {mean_and_spread(differences)} points; better on {better}, worse on {worse})",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="training configs; the first is the baseline")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="the seed of every run; several: each, and their ensemble"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where the runs go")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    parser.add_argument("--report-only", action="store_true", help="write the report from existing results")
    args = parser.parse_args()
    try:
        planned = plan(args.configs, args.seeds, args.runs)
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
    if not args.report_only:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // max(args.jobs, 1))))
        # Fold by fold, every config and seed: a run cut short leaves whole pairs to compare.
        interleaved = [run for fold in zip(*planned.runs.values()) for run in fold]
        run_all(interleaved, args.jobs, log_dir=args.runs / "logs")
    try:
        text = report(planned)
    except InputError as error:  # a run's model file gone or unreadable
        raise SystemExit(f"error: {error}") from None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
