"""``actionrec pretrain``: CFSEM self-supervised pretraining of the skeleton encoder.

Writes into the experiment's output folder: ``checkpoint.pt`` after every epoch (``--resume``
continues from it; another experiment's ``initial`` starts from it), ``encoder.pt`` at the end
(what fine-tuning and probes load), ``history.json`` and ``curves.png``.
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
from export.config import DataSource, Optimisation, PretrainConfig, dump_config
from export.data import Clip, WindowDataset, clips_from_dataset
from export.encoder import SkeletonEncoder
from export.masking import CoarseToFineMasker, masking_state
from export.plots import plot_curves
from export.runtime import (
    Runtime,
    distribute,
    encoder_checkpoint,
    load_checkpoint_file,
    loader_workers,
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


def _pretraining_checkpoint(model: CFSEMModel, path: Path) -> dict:
    """A pretraining's ``checkpoint.pt``, its encoder and projector loaded into ``model``;
    InputError naming the file for another kind of file or another architecture."""
    state = load_checkpoint_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise InputError(f"{path}: not a pretraining checkpoint (the checkpoint.pt of an `actionrec pretrain` run)")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise InputError(f"{path}: weights do not fit this experiment's encoder and projector ({first})") from None
    return state


def start_from(model: CFSEMModel, path: Path) -> None:
    """Load another pretraining's encoder and projector (its ``checkpoint.pt``) into ``model``.

    The second stage then starts where the first ended, with its own learning-rate and masking
    schedules. The projector comes too, so that the loss starts where the first stage left it
    rather than from a random projection."""
    _pretraining_checkpoint(model, path)


def resume_from(
    model: CFSEMModel,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    path: Path,
) -> tuple[list[dict[str, float]], int]:
    """Load this experiment's own ``checkpoint.pt`` (model, optimiser and schedule) to continue
    it: (the history so far, the first epoch left to run)."""
    state = _pretraining_checkpoint(model, path)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return list(state["history"]), int(state["epoch"]) + 1
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise InputError(f"{path}: not a whole pretraining checkpoint to resume from ({type(e).__name__})") from None


def run_pretrain(config: PretrainConfig, resume: bool = False) -> Path:
    runtime = start(config.experiment.seed)
    out = Path(config.experiment.output)
    try:
        clips = load_corpus(config.data, config.window)
        if len(clips) < config.optim.batch_size:
            raise InputError(f"only {len(clips)} clips for batches of {config.optim.batch_size}")
        dataset = WindowDataset(clips, config.window, views=2, scale_range=(0.7, 1.3), seed=config.experiment.seed)
        loader = _loader(dataset, config.optim.batch_size, runtime, config.experiment.seed)
        model = CFSEMModel(SkeletonEncoder(config.encoder), config.projector_width)
        if config.initial:
            start_from(model, Path(config.initial))
        network = distribute(model, runtime)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(config.optim, len(loader)))
        masker = CoarseToFineMasker(config.masking, get_layout(config.window.layout))
        history: list[dict[str, float]] = []
        first_epoch = 0
        checkpoint_path = out / "checkpoint.pt"
        if resume and checkpoint_path.is_file():
            history, first_epoch = resume_from(model, optimizer, scheduler, checkpoint_path)
        if runtime.is_main:
            # The run folder says how to reproduce it: written once every check has passed.
            out.mkdir(parents=True, exist_ok=True)
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
    for views, _ in bar:
        n, length = views.shape[0], views.shape[2]
        v1 = masker.shuffle(random_linear_views(views[:, 0], generator), rng)
        v2 = masker.shuffle(random_linear_views(views[:, 1], generator), rng)
        m1, m2 = masker.masks(n, length, progress, rng), masker.masks(n, length, progress, rng)
        device = runtime.device
        z1, z2 = network(v1.to(device), v2.to(device), m1.to(device), m2.to(device))
        loss = cross_correlation_loss(z1, z2, config.off_diagonal_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
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
