"""The CFSEM results table: every pretraining and protocol run, then one Markdown table.

    python -m export.results_table [--jobs N] [--stage pretrain|protocols|all] [--data-dir data]
                                   [--recipe table|shipped]

Runs are derived from the base configs in ``configs/`` (one pretraining per ablation, one
protocol run per benchmark, label budget, mode and seed); each run's effective config is
written beside its results as ``config.toml``, so any single number can be reproduced with
``actionrec pretrain|train --config runs/.../config.toml``. A run whose results exist is not
run again, so the command resumes where it stopped, unless its base config has changed since
(its ``config.toml`` differs from what it would run now): then it is run again. ``report``
(always last) writes ``results/cfsem.md`` and ``results/cfsem.json`` from whatever results exist.

Settings are fixed in the base configs before any test figure is seen; the Penn Action
figures are on a validation part of its train folder (its test split is held back).

``--recipe shipped`` derives the fine-tuning and from-scratch runs from each shipped model's
config (``configs/train/BENCHMARK-ship.toml``) instead, fine-tuning the encoder that config
names: the recipe a shipped model was trained with, over seeds and against the same recipe
without pretraining (runs under ``runs/table-shipped``, report in ``results/shipped-recipes``).
It has no pretraining stage, probes or ablations: those belong to the table's own encoders.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.config import LabelBudget, PretrainConfig, TrainConfig, config_differences, dump_config, load_config
from skeleton.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
RUNS = Path(os.environ.get("ACTIONREC_TABLE_RUNS", "runs/table"))
# Which base configs the protocol runs come from (module docstring).
RECIPE_CONFIGS = {"table": "configs/train/{benchmark}.toml", "shipped": "configs/train/{benchmark}-ship.toml"}
SEEDS = (0, 1, 2)
BUDGETS = {"100%": LabelBudget(1.0, 0), "10%": LabelBudget(0.1, 0), "1 per class": LabelBudget(1.0, 1)}
MOCAP = ("bandai1.npz", "bandai2.npz", "cmu.npz")
NO_RESULT = "—"  # a cell none of whose runs has finished
# Ablations of the 3-D pretraining: what each removes from CFSEM.
ABLATIONS = {
    "cfsem": {},
    "no masking (plain cross-correlation)": {"masking": dict(body=False, part=False, hand=False, shuffle=False)},
    "without hand masking": {"masking": dict(hand=False)},
    "without part masking": {"masking": dict(part=False)},
    "without temporal shuffling": {"masking": dict(shuffle=False)},
    "without the mocap corpus": {"no_mocap": True},
}
BENCHMARKS = {
    "msr3d": "MSR Action3D, cross-subject",
    "daily3d": "NW-UCLA, cross-view",
    "sports2d": "Penn Action, validation part",
}


@dataclass(frozen=True)
class Run:
    kind: str  # "pretrain" or "train"
    name: str
    config: object

    @property
    def folder(self) -> Path:
        return Path(self.config.experiment.output)

    @property
    def encoder_ready(self) -> bool:
        """Whether the encoder this run loads exists (a run that loads none is always ready)."""
        pretrained = getattr(self.config, "pretrained", "")
        return not pretrained or (ROOT / pretrained).is_file()

    @property
    def done(self) -> bool:
        if self.kind == "pretrain":
            return (self.folder / "encoder.pt").is_file()
        return self.result() is not None

    def result(self) -> dict | None:
        """A training run's results, or None while it is not done."""
        path = self.folder / "results.json"
        if self.kind == "pretrain" or not path.is_file():
            return None
        if self.config_changed_since_run():
            return None
        result = json.loads(path.read_text())
        # A validation run scored on another held-out part than its config now asks for is not
        # done either: its results say so even where no config.toml came with them.
        if self.config.validation and held_out_by(result) != (
            self.config.validation_holds_out,
            self.config.validation_fold,
        ):
            return None
        return result

    def config_changed_since_run(self) -> bool:
        """Whether the config the run was made with (its ``config.toml``) differs from the one it
        would run with now, such as after a shipped model's config gained a setting: its results
        then describe another recipe, so it is run again rather than reported. Folders without
        that file (results copied from elsewhere) are taken as they are."""
        written = self.folder / "config.toml"
        if not written.is_file():
            return False
        try:
            return bool(config_differences(load_config(written, TrainConfig), self.config))
        except InputError:  # a key this version no longer has
            return True


def held_out_by(result: dict) -> tuple[str, int]:
    """What a validation result's part held out, and which fold of it (results from before these
    were recorded held out subjects, the only choice then, and the first fold)."""
    return result.get("validation_holds_out") or "subjects", result.get("validation_fold") or 0


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")


def relocate(path: str, data_dir: str) -> str:
    return str(Path(data_dir) / Path(path).name) if path.startswith("data/") else path


def _with_epochs(config, epochs: int | None):
    return config if epochs is None else config.with_epochs(epochs)


def pretrain_runs(data_dir: str, epochs: int | None = None) -> dict[str, Run]:
    runs = {}
    base3 = _with_epochs(load_config(ROOT / "configs/pretrain/cfsem-3d.toml", PretrainConfig), epochs)
    for label, change in ABLATIONS.items():
        config = base3
        if "masking" in change:
            config = dataclasses.replace(config, masking=dataclasses.replace(config.masking, **change["masking"]))
        if change.get("no_mocap"):
            config = dataclasses.replace(config, data=tuple(d for d in config.data if Path(d.path).name not in MOCAP))
        runs[label] = _pretrain_run(config, f"3d-{slug(label)}", data_dir)
    base2 = _with_epochs(load_config(ROOT / "configs/pretrain/cfsem-2d.toml", PretrainConfig), epochs)
    runs["cfsem-2d"] = _pretrain_run(base2, "2d-cfsem", data_dir)
    return runs


def _pretrain_run(config: PretrainConfig, name: str, data_dir: str) -> Run:
    data = tuple(dataclasses.replace(d, path=relocate(d.path, data_dir)) for d in config.data)
    experiment = dataclasses.replace(config.experiment, name=name, output=str(RUNS / "pretrain" / name))
    return Run("pretrain", name, dataclasses.replace(config, data=data, experiment=experiment))


def runs_root(recipe: str) -> Path:
    """Where a recipe's runs go: the table's under RUNS, the shipped recipes' beside it."""
    return RUNS if recipe == "table" else RUNS.with_name(f"{RUNS.name}-shipped")


def recipe_base(benchmark: str, recipe: str, data_dir: str = "data", epochs: int | None = None) -> TrainConfig:
    """The config a benchmark's protocol runs are derived from under ``recipe``, scored on the part
    the table's own rows are scored on (Penn Action's validation part: its test split is held
    back), so that the two reports compare."""

    def read(name: str) -> TrainConfig:
        return load_config(ROOT / RECIPE_CONFIGS[name].format(benchmark=benchmark), TrainConfig)

    base, table = _with_epochs(read(recipe), epochs), read("table")
    return dataclasses.replace(
        base,
        benchmark=dataclasses.replace(base.benchmark, path=relocate(base.benchmark.path, data_dir)),
        validation=table.validation,
        validation_holds_out=table.validation_holds_out,
    )


def main_encoder(base: TrainConfig, pretrained: dict[str, Run], recipe: str) -> tuple[str, str]:
    """(name, path) of the encoder a benchmark's CFSEM rows fine-tune: the table's own pretraining
    run, or the one the shipped model's config names (``RUN/encoder.pt`` is named by its RUN)."""
    if recipe == "table":
        run = pretrained["cfsem-2d" if base.window.dims == 2 else "cfsem"]
        return run.name, str(run.folder / "encoder.pt")
    path = Path(base.pretrained)
    return (path.parent.name if path.stem == "encoder" else path.stem), base.pretrained


def protocol_runs(
    data_dir: str, pretrained: dict[str, Run], epochs: int | None = None, recipe: str = "table"
) -> list[Run]:
    runs = []
    for benchmark in BENCHMARKS:
        base = recipe_base(benchmark, recipe, data_dir, epochs)
        main = main_encoder(base, pretrained, recipe)
        plan = [(mode, budget, main, SEEDS) for mode in ("finetune", "scratch") for budget in BUDGETS]
        if recipe == "table":
            plan += [("linear", "100%", main, (0,)), ("knn", "100%", main, (0,))]
            if base.window.dims == 3:
                for label, run in pretrained.items():
                    if label not in ("cfsem", "cfsem-2d"):
                        encoder = (run.name, str(run.folder / "encoder.pt"))
                        plan += [("finetune", "10%", encoder, SEEDS), ("linear", "100%", encoder, (0,))]
        for mode, budget, (encoder_name, encoder_path), seeds in plan:
            for seed in seeds:
                encoder_part = encoder_name if mode != "scratch" else "none"
                run_name = f"{benchmark}-{mode}-{slug(budget)}-{encoder_part}-seed{seed}"
                output = runs_root(recipe) / "train" / run_name
                config = dataclasses.replace(
                    base.under_protocol(mode, encoder_path if mode != "scratch" else ""),
                    labels=BUDGETS[budget],
                    experiment=dataclasses.replace(base.experiment, name=run_name, seed=seed, output=str(output)),
                )
                runs.append(Run("train", run_name, config))
    return runs


def execute(run: Run, log_dir: Path) -> tuple[str, int, float]:
    """One run in its own process (its own torch threads), logged to a file."""
    run.folder.mkdir(parents=True, exist_ok=True)
    config_path = run.folder / "config.toml"
    config_path.write_text(dump_config(run.config))
    command = [sys.executable, "-m", "actionrec.cli", run.kind, "--config", str(config_path)]
    if run.kind == "pretrain" and (run.folder / "checkpoint.pt").is_file():  # it stopped part-way: go on
        command.append("--resume")
    began = time.perf_counter()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{run.name}.log", "w") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    return run.name, code, time.perf_counter() - began


def run_all(runs: list[Run], jobs: int, log_dir: Path | None = None) -> None:
    pending = [r for r in runs if not r.done]
    print(f"{len(runs) - len(pending)} of {len(runs)} runs already done; running {len(pending)} with {jobs} at a time")
    logs = log_dir or RUNS / "logs"
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, code, seconds in pool.map(lambda r: execute(r, logs), pending):
            print(f"{'ok  ' if code == 0 else 'FAIL'} {name} ({seconds:.0f} s)", flush=True)


def results_found(runs: list[Run]) -> dict[str, dict]:
    """Each finished run's results, by run name."""
    return {run.name: result for run in runs if (result := run.result()) is not None}


def results_a_report_would_drop(runs: list[Run], out: Path) -> list[str]:
    """The runs whose results ``out/cfsem.json`` holds but whose folders are not here (a machine
    that did not run them, or deleted runs): a report written now would lose them."""
    committed = out / "cfsem.json"
    if not committed.is_file():
        return []
    return sorted(set(json.loads(committed.read_text())) - set(results_found(runs)))


def mean_and_spread(values: list[float]) -> str:
    """The mean ± std of several figures (population std, one decimal); one figure alone as it is."""
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def report(pretrained: dict[str, Run], runs: list[Run], out: Path, recipe: str = "table") -> None:
    results = results_found(runs)

    def cell(benchmark: str, mode: str, budget: str, encoder: str) -> str:
        values = [
            results[n]["accuracy"] * 100
            for n in results
            if n.startswith(f"{benchmark}-{mode}-{slug(budget)}-{encoder}-seed")
        ]
        if not values:
            return NO_RESULT
        return mean_and_spread(values) + (f" (n={len(values)})" if len(values) > 1 else "")

    lines = [
        "# CFSEM results" + ("" if recipe == "table" else ": the shipped models' recipes"),
        "",
        "Accuracy (%) on each benchmark's standard split (Penn Action: a validation part of its train folder,"
        " the official test split being held back); mean ± std over seeds (population std; n = number of seeds"
        + (
            "; linear and kNN probes are deterministic given the encoder)."
            if recipe == "table"
            else "). Each row trains with a shipped model's config (`configs/train/BENCHMARK-ship.toml`): "
            "fine-tuning the encoder it names, or the same settings from scratch."
        ),
        "",
    ]
    for benchmark, title in BENCHMARKS.items():
        main, _ = main_encoder(recipe_base(benchmark, recipe), pretrained, recipe)  # named the same in any data dir
        # Rows (and whole tables) with no result yet are left out: a partial run, such as the
        # 10 % rows alone, reports what it has.
        rows = [
            ("CFSEM + fine-tuning", [cell(benchmark, "finetune", b, main) for b in BUDGETS]),
            ("from scratch", [cell(benchmark, "scratch", b, "none") for b in BUDGETS]),
            ("CFSEM linear probe (frozen)", [cell(benchmark, "linear", "100%", main), "", ""]),
            ("CFSEM kNN (k=1, frozen)", [cell(benchmark, "knn", "100%", main), "", ""]),
        ]
        rows = [(name, cells) for name, cells in rows if any(c not in (NO_RESULT, "") for c in cells)]
        if not rows:
            continue
        lines += [
            f"## {benchmark}: {title}",
            "",
            "| protocol | " + " | ".join(BUDGETS) + " |",
            "|---|" + "---|" * len(BUDGETS),
        ]
        lines += ["|" + "|".join(f" {c} " if c else " " for c in (name, *cells)) + "|" for name, cells in rows]
        lines.append("")
        ablations = [
            (label, cell(benchmark, "finetune", "10%", run.name), cell(benchmark, "linear", "100%", run.name))
            for label, run in pretrained.items()
            if label != "cfsem-2d"
        ]
        variants_reported = any(c != NO_RESULT for label, *cells in ablations if label != "cfsem" for c in cells)
        if recipe == "table" and benchmark != "sports2d" and variants_reported:
            lines += [
                "Ablations (pretraining variant → fine-tuning with 10% labels; linear probe with all labels):",
                "",
                "| pretraining | fine-tune 10% | linear probe |",
                "|---|---|---|",
            ]
            lines += [f"| {label} | {tuned} | {linear} |" for label, tuned, linear in ablations]
            lines.append("")
    if recipe == "table":
        lines += ["## Pretraining runs", "", "| run | epochs | final loss | minutes |", "|---|---|---|---|"]
        for run in pretrained.values():
            history_path = run.folder / "history.json"
            if history_path.is_file():
                history = json.loads(history_path.read_text())
                minutes = sum(h["seconds"] for h in history) / 60
                lines.append(f"| {run.name} | {len(history)} | {history[-1]['loss']:.1f} | {minutes:.1f} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "cfsem.md").write_text("\n".join(lines) + "\n")
    (out / "cfsem.json").write_text(json.dumps(results, indent=1))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--stage", choices=("pretrain", "protocols", "all", "report"), default="all")
    parser.add_argument("--data-dir", default="data", help="where the dataset files are")
    parser.add_argument(
        "--only", action="append", default=[], help="run only runs whose name contains this (repeatable: any of them)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override every run's epochs (smoke tests)")
    parser.add_argument(
        "--recipe", choices=tuple(RECIPE_CONFIGS), default="table", help="which base configs the protocol runs use"
    )
    parser.add_argument(
        "--drop-missing",
        action="store_true",
        help="write the report even if results already in it have no run folder here (they are dropped)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // max(args.jobs, 1))))
    pretrained = pretrain_runs(args.data_dir, args.epochs)
    protocols = protocol_runs(args.data_dir, pretrained, args.epochs, args.recipe)
    default_out = "results" if args.recipe == "table" else "results/shipped-recipes"
    out = ROOT / os.environ.get("ACTIONREC_TABLE_RESULTS", default_out)
    # Checked before any run: runs are only ever added, so a report that keeps everything now will then too.
    dropped = results_a_report_would_drop(protocols, out)
    if dropped and not args.drop_missing:
        parser.error(
            f"{len(dropped)} results in {out / 'cfsem.json'} have no run folder under {runs_root(args.recipe)}"
            f" (first: {dropped[0]}), so the report would drop them: run them here first, or pass --drop-missing"
        )
    if args.stage in ("pretrain", "all") and args.recipe == "table":  # the shipped configs name their encoders
        run_all([r for r in pretrained.values() if chosen_by_name(r, args.only)], args.jobs)
    if args.stage in ("protocols", "all"):
        chosen = [r for r in protocols if chosen_by_name(r, args.only)]
        for run in chosen:
            if not run.encoder_ready:
                print(f"skipped {run.name}: its encoder {run.config.pretrained} does not exist yet", flush=True)
        run_all([r for r in chosen if r.encoder_ready], args.jobs, log_dir=runs_root(args.recipe) / "logs")
    report(pretrained, protocols, out, args.recipe)


def chosen_by_name(run: Run, only: list[str]) -> bool:
    """Whether ``--only`` picks this run: its name contains any of them (all runs when none)."""
    return not only or any(part in run.name for part in only)


if __name__ == "__main__":
    main()
