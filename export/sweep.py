"""A validation-only sweep of window and training settings, for choosing the next base configs.

    python -m export.sweep [--jobs N] [--data-dir data] [--only SUBSTR] [--epochs N] [--report-only]

Every run has ``validation = true``: it trains on part of the benchmark's train split and is
scored on a validation part carved from the same split (what the base config's
``validation_holds_out`` says: a camera view for the cross-view ``daily3d``, otherwise whole
subjects where known; always the same part), so no test split is read. Seed 0 throughout. Runs are derived from
``configs/train/*.toml`` and go under ``runs/sweep/`` (``--runs``), each with its effective
``config.toml``; they are run, and resumed, by the results table's machinery
(``export.results_table.run_all``). Planned:

* from scratch, all labels: fps (the base config's and twice it) x window length x normalisation
  (align only for 3-D) x epochs;
* fine-tuning the CFSEM encoders of ``runs/table/pretrain/`` on the base config's window: label
  budget x encoder learning-rate scale x epochs.

The report (always written last, from whatever results exist) is ``results/validation-sweep.md``
(``--results``): each benchmark's settings sorted by validation accuracy, and the best setting
per benchmark, mode and label budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
from pathlib import Path

from export import results_table as table
from export.config import TrainConfig, load_config
from export.data import VALIDATION_HOLDOUTS
from export.results_table import BENCHMARKS, BUDGETS, ROOT, Run, run_all

RUNS = Path("runs/sweep")
PRETRAINED = Path("runs/table/pretrain")
ENCODERS = {2: "2d-cfsem", 3: "3d-cfsem"}  # pretraining run per window dims
FPS_FACTORS = (1.0, 2.0)  # of the base config's frame rate
LENGTHS = (32, 48)
NORMALIZATIONS = {2: ("centre-torso",), 3: ("centre-torso", "centre-torso-align")}
EPOCHS = (60, 120)
FINETUNE_BUDGETS = ("100%", "10%")
ENCODER_LR_SCALES = (1.0, 0.3)


@dataclasses.dataclass(frozen=True)
class Setting:
    """What one sweep run varies; ``current`` marks the base config's own choice."""

    benchmark: str
    mode: str
    budget: str
    fps: float
    length: int
    normalization: str
    epochs: int
    encoder_lr_scale: float
    current: bool


def _base(benchmark: str, data_dir: str) -> TrainConfig:
    config = load_config(ROOT / f"configs/train/{benchmark}.toml", TrainConfig)
    path = table.relocate(config.benchmark.path, data_dir)
    return dataclasses.replace(config, benchmark=dataclasses.replace(config.benchmark, path=path), validation=True)


def _name(s: Setting) -> str:
    if s.mode == "scratch":
        what = f"fps{s.fps:g}-len{s.length}-{s.normalization}"
    else:
        what = f"{table.slug(s.budget)}-lr{s.encoder_lr_scale:g}"
    return f"{s.benchmark}-{s.mode}-{what}-ep{s.epochs}"


def plan(data_dir: str, runs_root: Path = RUNS, epochs: int | None = None) -> dict[Run, Setting]:
    """Every sweep run and its setting; ``epochs`` overrides the planned epochs (smoke tests)."""
    planned: dict[Run, Setting] = {}
    for benchmark in BENCHMARKS:
        base = _base(benchmark, data_dir)
        window, dims = base.window, base.window.dims
        settings = [
            Setting(benchmark, "scratch", "100%", fps, length, norm, ep, 1.0, False)
            for fps, length, norm, ep in itertools.product(
                [window.fps * f for f in FPS_FACTORS], LENGTHS, NORMALIZATIONS[dims], EPOCHS
            )
        ]
        settings += [
            Setting(benchmark, "finetune", budget, window.fps, window.length, window.normalization, ep, scale, False)
            for budget, scale, ep in itertools.product(FINETUNE_BUDGETS, ENCODER_LR_SCALES, EPOCHS)
        ]
        for s in settings:
            current = (s.fps, s.length, s.normalization, s.epochs, s.encoder_lr_scale) == (
                window.fps,
                window.length,
                window.normalization,
                base.optim.epochs,
                base.encoder_lr_scale,
            )
            s = dataclasses.replace(s, current=current)
            name = _name(s)
            spec = dataclasses.replace(window, fps=s.fps, length=s.length, normalization=s.normalization)
            encoder = ENCODERS[dims]
            pretrained = str(PRETRAINED / encoder / "encoder.pt") if s.mode == "finetune" else ""
            config = dataclasses.replace(
                base.under_protocol(s.mode, pretrained).with_epochs(s.epochs if epochs is None else epochs),
                window=spec,
                # The encoder reads the window's joints and coordinates: keep the two in step.
                encoder=dataclasses.replace(base.encoder, layout=spec.layout, dims=spec.dims),
                labels=BUDGETS[s.budget],
                encoder_lr_scale=s.encoder_lr_scale,
                experiment=dataclasses.replace(base.experiment, name=name, seed=0, output=str(runs_root / name)),
            )
            planned[Run("train", name, config)] = s
    return planned


def _cost(run: Run) -> float:
    """A rough relative cost (from the results table's run times), to start the longest runs
    first: the sweep ends sooner, and what a time limit cuts off is the short runs."""
    benchmark, window, optim = run.config.benchmark.path, run.config.window, run.config.optim
    per_epoch = {"msr": 1.0, "nw-ucla": 2.3, "penn": 2.3}.get(Path(benchmark).stem, 1.0)
    if run.config.labels.fraction < 1.0:
        per_epoch = 0.8  # min_samples_per_epoch windows an epoch
    return per_epoch * optim.epochs * window.length * (1.1 if window.fps > 15 else 1.0)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def report(planned: dict[Run, Setting], out: Path) -> str:
    rows, held_out = [], {}
    for run, s in planned.items():
        held_out[s.benchmark] = VALIDATION_HOLDOUTS[run.config.validation_holds_out]
        result = run.result()  # None unless scored on the validation part its config asks for
        if result is not None:
            if result["scored"] != "validation":
                raise SystemExit(f"{run.folder}: scored on {result['scored']}, not validation; not reported")
            rows.append((s, result))
    lines = [
        "# Validation sweep: window and training settings",
        "",
        "Accuracy (%) on a validation part carved from each benchmark's train split ("
        + "; ".join(f"{benchmark}: {words}" for benchmark, words in held_out.items())
        + "; the same part for every setting), never on a test split. One run per setting, "
        "seed 0, so differences of a clip or two are noise: each table gives what one validation "
        "clip is worth. ★ = the base config's current choice. Made by `python -m export.sweep`.",
        "",
    ]
    done = {b for b in BENCHMARKS if any(s.benchmark == b for s, _ in rows)}
    lines += [f"{len(rows)} of {len(planned)} planned runs have results.", ""]
    best_lines = ["## Best setting per benchmark, mode and label budget", ""]
    best_lines += [
        "| benchmark | mode | labels | fps | length | normalisation | epochs | encoder lr × | validation | current |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for benchmark, title in BENCHMARKS.items():
        if benchmark not in done:
            continue
        mine = sorted(
            ((s, r) for s, r in rows if s.benchmark == benchmark), key=lambda sr: (-sr[1]["accuracy"], _name(sr[0]))
        )
        n_val = mine[0][1]["n_test"]
        lines += [
            f"## {benchmark}: {title}",
            "",
            f"{n_val} validation clips (one clip = {100 / n_val:.2f} points).",
            "",
            "| mode | labels | fps | length | normalisation | epochs | encoder lr × | train clips | validation |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s, r in mine:
            lr = f"{s.encoder_lr_scale:g}" if s.mode == "finetune" else "—"
            star = " ★" if s.current else ""
            lines.append(
                f"| {s.mode}{star} | {s.budget} | {s.fps:g} | {s.length} | {s.normalization} | {s.epochs} | {lr} | "
                f"{r['n_train']} | {_pct(r['accuracy'])} |"
            )
        lines.append("")
        groups: dict[tuple[str, str], list] = {}
        for s, r in mine:
            groups.setdefault((s.mode, s.budget), []).append((s, r))
        for (mode, budget), members in sorted(groups.items(), key=lambda g: (g[0][0] != "scratch", g[0][1] != "100%")):
            s, r = members[0]  # sorted best first; ties go to the name order
            current = next((f"{_pct(cr['accuracy'])}" for cs, cr in members if cs.current), "—")
            lr = f"{s.encoder_lr_scale:g}" if mode == "finetune" else "—"
            best_lines.append(
                f"| {benchmark} | {mode} | {budget} | {s.fps:g} | {s.length} | {s.normalization} | {s.epochs} | "
                f"{lr} | {_pct(r['accuracy'])} | {current} |"
            )
    text = "\n".join(lines + best_lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation-sweep.md").write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--data-dir", default="data", help="where the dataset files are")
    parser.add_argument(
        "--only", action="append", default=[], help="run only runs whose name contains this (repeatable: any of them)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="override every run's epochs (smoke tests)")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where the runs go")
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="where the report goes")
    parser.add_argument("--report-only", action="store_true", help="write the report from existing results")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // max(args.jobs, 1))))
    planned = plan(args.data_dir, args.runs, args.epochs)
    if not args.report_only:
        missing = sorted({r.config.pretrained for r in planned if not r.encoder_ready})
        if missing:
            print(f"no encoder {', '.join(missing)}: the fine-tuning runs that load it are skipped")
        chosen = [r for r in planned if table.chosen_by_name(r, args.only) and r.encoder_ready]
        run_all(sorted(chosen, key=_cost, reverse=True), args.jobs, log_dir=args.runs / "logs")
    print(report(planned, args.results))


if __name__ == "__main__":
    main()
