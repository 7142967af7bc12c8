"""``actionrec pretrain``: CFSEM self-supervised pretraining of the skeleton encoder.

Writes into the experiment's output folder: ``checkpoint.pt`` after every epoch (``--resume``
continues from it under the same settings; another experiment's ``initial`` starts from it),
``encoder.pt`` at the end (what fine-tuning and probes load), ``history.json`` and ``curves.png``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from export.augment import random_linear_views
from export.cfsem import CFSEMModel, cross_correlation_loss
from export.config import (
    DataSource,
    Optimisation,
    PretrainConfig,
    config_differences,
    config_from_text,
    dump_config,
    load_config,
    toml_value,
)
from export.data import Clip, WindowDataset, clips_from_dataset
from export.encoder import ENCODER_ARCHITECTURE, SkeletonEncoder
from export.masking import CoarseToFineMasker, masking_state
from export.plots import plot_curves
from export.runtime import (
    Runtime,
    check_loss,
    distribute,
    encoder_checkpoint,
    load_checkpoint_file,
    loader_workers,
    prepare_output_folder,
    save_atomic,
    start,
    stop,
)
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from skeleton.layouts import get_layout
from skeleton.windows import WindowSpec


def split_indices(dataset: SkeletonDataset, split: str, origin: str) -> np.ndarray:
    if not split:
        return np.arange(len(dataset))
    if split not in dataset.splits:
        raise InputError(f"{origin}: no split {split!r} (it has: {', '.join(sorted(dataset.splits)) or 'none'})")
    return dataset.splits[split]


def load_corpus(sources: tuple[DataSource, ...], window: WindowSpec) -> list[Clip]:
    """Every source's clips; labels are dropped (pretraining never sees them)."""
    clips: list[Clip] = []
    for source in sources:
        dataset = SkeletonDataset.load(Path(source.path))
        indices = split_indices(dataset, source.split, source.path)
        clips += [
            Clip(c.frames, c.coordinate_space, -1, c.name, c.subject)
            # Tracks of a few frames are tracker noise, not motion worth learning from.
            for c in clips_from_dataset(dataset, window, indices, all_persons=source.all_persons, min_frames=8)
        ]
    return clips


def warmup_cosine(optim: Optimisation, steps_per_epoch: int):
    total, warmup = optim.epochs * steps_per_epoch, optim.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return factor


def _loader(dataset: torch.utils.data.Dataset, batch_size: int, runtime: Runtime, seed: int) -> DataLoader:
    if runtime.distributed:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    per_process = max(2, batch_size // runtime.world_size)
    return DataLoader(dataset, batch_size=per_process, sampler=sampler, drop_last=True, num_workers=loader_workers())


# Settings a resumed run may change. More epochs extend a stopped or finished run (the learning-rate
# and masking schedules stretch over the new total from where they are), and the output folder
# is where the checkpoint was found, so a run folder that was moved is still the same run. Any
# other change would continue the weights, optimiser and history under other conditions, and the
# rewritten config.toml would describe neither part of the run.
RESUMABLE_CHANGES = ("optim.epochs", "experiment.output")

# What the weights are the weights of: with another value of any of these a checkpoint's weights
# mean nothing to this encoder and projector. Data, window length and normalisation, dropout and
# schedules may differ (a second stage exists to change them).
ARCHITECTURE_KEYS = (*(f"encoder.{name}" for name in ENCODER_ARCHITECTURE), "projector_width")

# Buffers that training fills from the data; every other buffer is fixed by the architecture.
BATCH_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")

MISMATCHES_SHOWN = 3


def _pretraining_state(path: Path) -> dict:
    """What a pretraining's ``checkpoint.pt`` holds; InputError naming the file for another kind of file."""
    state = load_checkpoint_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise InputError(f"{path}: not a pretraining checkpoint (the checkpoint.pt of an `actionrec pretrain` run)")
    return state


def _stored_config(state: dict, path: Path) -> PretrainConfig | None:
    """The config a checkpoint was written under; None for a checkpoint that does not record it."""
    text = state.get("config")
    if text is None:
        return None
    if not isinstance(text, str):
        raise InputError(f"{path}: its stored config is not TOML text")
    return config_from_text(text, PretrainConfig, f"{path} (its stored config)")


def _listed(names: list[str], shown: int = MISMATCHES_SHOWN) -> str:
    more = f"; {len(names) - shown} more" if len(names) > shown else ""
    return "; ".join(names[:shown]) + more


def _shape(value: torch.Tensor) -> str:
    return "x".join(str(size) for size in value.shape) or "a scalar"


def _weight_mismatches(expected: dict[str, torch.Tensor], given: dict) -> list[str]:
    """The weights that ``given`` holds in another shape, lacks, or has besides ``expected``'s, in words."""
    problems = []
    for name, tensor in expected.items():
        value = given.get(name)
        if value is None:
            problems.append(f"no {name} there")
        elif not isinstance(value, torch.Tensor):
            problems.append(f"{name} not a tensor there")
        elif value.shape != tensor.shape:
            problems.append(f"{name} {_shape(value)} there, {_shape(tensor)} here")
    return problems + [f"{name} there, not here" for name in given if name not in expected]


def _same_architecture(saved: PretrainConfig, config: PretrainConfig, path: Path) -> None:
    """InputError naming the file when it was trained with another layout, dims or architecture."""
    changed = [
        f"{key} {toml_value(old)} there, {toml_value(new)} here"
        for key, (old, new) in config_differences(saved, config).items()
        if key in ARCHITECTURE_KEYS
    ]
    if changed:
        raise InputError(f"{path}: weights do not fit this experiment's encoder and projector ({_listed(changed)})")


def _load_weights(model: CFSEMModel, state: dict, path: Path) -> None:
    """``state``'s encoder and projector into ``model``; InputError naming the file and the first
    weights that differ when they are of another shape or were learnt on another joint graph
    (a layout with as many joints but other bones: shapes alone would not tell)."""
    own, weights = model.state_dict(), state["model"]
    mismatches = _weight_mismatches(own, weights)
    if mismatches:
        raise InputError(f"{path}: weights do not fit this experiment's encoder and projector ({_listed(mismatches)})")
    fixed = [name for name, _ in model.named_buffers() if name in own and not name.endswith(BATCH_STATISTICS)]
    graph = [name for name in fixed if not torch.equal(own[name], weights[name])]
    if graph:
        raise InputError(
            f"{path}: weights do not fit this experiment's encoder and projector (learnt on another joint graph "
            f"than {model.encoder.config.layout}'s: {_listed(graph)})"
        )
    model.load_state_dict(weights)


def start_from(model: CFSEMModel, config: PretrainConfig) -> None:
    """Load another pretraining's encoder and projector (its ``checkpoint.pt``, ``initial``) into ``model``.

    The second stage then starts where the first ended, with its own learning-rate and masking
    schedules. The projector comes too, so that the loss starts where the first stage left it
    rather than from a random projection. Only what makes the weights meaningless is refused:
    other data, windows and schedules are what a second stage is for."""
    path = Path(config.initial)
    state = _pretraining_state(path)
    saved = _stored_config(state, path)
    if saved is not None:  # checkpoints that do not record their config are checked by their weights
        _same_architecture(saved, config, path)
    _load_weights(model, state, path)


def _run_config(state: dict, path: Path) -> PretrainConfig:
    """The config the run being resumed was started under: the one its checkpoint records, else the
    ``config.toml`` it wrote beside it."""
    saved = _stored_config(state, path)
    if saved is not None:
        return saved
    written = path.parent / "config.toml"
    if not written.is_file():
        raise InputError(f"{path}: records no config and {written} is missing: nothing says which run it continues")
    return load_config(written, PretrainConfig)


def resumable_state(model: CFSEMModel, config: PretrainConfig, path: Path) -> dict:
    """This experiment's own ``checkpoint.pt``, its weights loaded into ``model``; InputError naming
    the file when it is missing, partial, or was run with other settings than ``config``."""
    if not path.is_file():
        raise InputError(
            f"{path.parent}: no checkpoint.pt to resume from (experiment.output); run without --resume to start"
        )
    state = _pretraining_state(path)
    missing = [key for key in ("optimizer", "scheduler", "history", "epoch") if key not in state]
    if missing:
        raise InputError(f"{path}: not a whole pretraining checkpoint to resume from (it lacks {', '.join(missing)})")
    if isinstance(state["epoch"], bool) or not isinstance(state["epoch"], int) or state["epoch"] < 0:
        raise InputError(f"{path}: not a whole pretraining checkpoint to resume from (epoch {state['epoch']!r})")
    saved = _run_config(state, path)
    _same_architecture(saved, config, path)
    changed = [key for key in config_differences(saved, config) if key not in RESUMABLE_CHANGES]
    if changed:
        raise InputError(
            f"{path}: was run with other settings ({', '.join(changed)}); --resume continues a run as it was "
            f"(only {' and '.join(RESUMABLE_CHANGES)} may change): give new settings a new experiment.output"
        )
    finished = state["epoch"] + 1
    if config.optim.epochs < finished:
        raise InputError(
            f"{path}: has run {finished} epochs already, more than optim.epochs {config.optim.epochs}: "
            f"resume with at least {finished}"
        )
    _load_weights(model, state, path)
    return state


def resume_from(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict,
    path: Path,
) -> tuple[list[dict[str, float]], int]:
    """Continue from ``resumable_state``'s checkpoint (``path``): its optimiser and schedule loaded,
    (the history so far, the first epoch left to run)."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return list(state["history"]), int(state["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{path}: not a whole pretraining checkpoint to resume from ({type(e).__name__})") from None


def run_pretrain(config: PretrainConfig, resume: bool = False) -> Path:
    runtime = start(config.experiment.seed)
    out = Path(config.experiment.output)
    checkpoint_path = out / "checkpoint.pt"
    try:
        model = CFSEMModel(SkeletonEncoder(config.encoder), config.projector_width)
        # The checkpoints are checked before the corpus is read. A resumed run's weights replace
        # any initial ones, so ``initial`` is not read again (it may be gone by now).
        resumed = resumable_state(model, config, checkpoint_path) if resume else None
        if config.initial and resumed is None:
            start_from(model, config)
        clips = load_corpus(config.data, config.window)
        if len(clips) < config.optim.batch_size:
            raise InputError(f"only {len(clips)} clips for batches of {config.optim.batch_size}")
        dataset = WindowDataset(clips, config.window, views=2, scale_range=(0.7, 1.3), seed=config.experiment.seed)
        loader = _loader(dataset, config.optim.batch_size, runtime, config.experiment.seed)
        network = distribute(model, runtime)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.optim, len(loader)))
        masker = CoarseToFineMasker(config.masking, get_layout(config.window.layout))
        history: list[dict[str, float]] = []
        first_epoch = 0
        if resumed is not None:
            history, first_epoch = resume_from(optimizer, scheduler, resumed, checkpoint_path)
        if runtime.is_main:
            # The run folder says how to reproduce it: written once every check has passed.
            prepare_output_folder(out)
            (out / "config.toml").write_text(dump_config(config))
            print(
                f"{config.experiment.name}: {len(clips)} clips, {len(loader)} steps an epoch, "
                f"{sum(p.numel() for p in model.encoder.parameters()) / 1e6:.2f} M encoder parameters"
            )
        for epoch in range(first_epoch, config.optim.epochs):
            history.append(_epoch(config, runtime, network, loader, optimizer, scheduler, masker, epoch))
            if runtime.is_main:
                save_atomic(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "history": history,
                        "epoch": epoch,
                        # What --resume compares the next run's config with.
                        "config": dump_config(config),
                    },
                    checkpoint_path,
                )
                (out / "history.json").write_text(json.dumps(history, indent=1))
                plot_curves(history, out / "curves.png", f"CFSEM pretraining: {config.experiment.name}")
        if runtime.is_main:
            save_atomic(
                encoder_checkpoint(model.encoder, config.window, experiment=config.experiment.name), out / "encoder.pt"
            )
        return out / "encoder.pt"
    finally:
        stop(runtime)


def _epoch(config, runtime, network, loader, optimizer, scheduler, masker, epoch: int) -> dict[str, float]:
    network.train()
    loader.dataset.set_epoch(epoch)
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    progress = epoch / max(config.optim.epochs - 1, 1)
    rng = np.random.default_rng((config.experiment.seed, runtime.rank, epoch))
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    losses, began = [], time.perf_counter()
    bar = tqdm(
        loader,
        desc=f"epoch {epoch + 1}/{config.optim.epochs}",
        disable=not runtime.is_main,
        leave=False,
        dynamic_ncols=True,
    )
    for step, (views, _) in enumerate(bar):
        n, length = views.shape[0], views.shape[2]
        v1 = masker.shuffle(random_linear_views(views[:, 0], generator), rng)
        v2 = masker.shuffle(random_linear_views(views[:, 1], generator), rng)
        m1, m2 = masker.masks(n, length, progress, rng), masker.masks(n, length, progress, rng)
        device = runtime.device
        z1, z2 = network(v1.to(device), v2.to(device), m1.to(device), m2.to(device))
        loss = cross_correlation_loss(z1, z2, config.off_diagonal_weight)
        value = loss.item()
        where = f"{config.experiment.name}: epoch {epoch + 1}, step {step + 1} of {len(loader)}"
        check_loss(value, runtime, where, "this epoch was not saved (the last checkpoint stands)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(value)
        bar.set_postfix(loss=f"{np.mean(losses):.1f}")
    probability, _ = masking_state(config.masking, progress)
    record = {
        "epoch": epoch + 1,
        "loss": float(np.mean(losses)),
        "mask_probability": probability,
        "lr": scheduler.get_last_lr()[0],
        "seconds": time.perf_counter() - began,
    }
    if runtime.is_main:
        print(
            f"epoch {epoch + 1}/{config.optim.epochs}: loss {record['loss']:.1f}, "
            f"mask p {probability:.2f}, {record['seconds']:.0f} s",
            flush=True,
        )
    return record
