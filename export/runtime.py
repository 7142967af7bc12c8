"""Where training runs: device, processes (DDP), seeds, checkpoints, progress.

The same entry point runs on one CPU, one GPU, or under ``torchrun`` with several processes
(gloo on CPUs, NCCL on GPUs): ``start`` reads torchrun's environment, and the training loops
only ask whether they are the main process and wrap the model with ``distribute``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.encoder import ENCODER_ARCHITECTURE, Classifier, EncoderConfig, SkeletonEncoder
from skeleton.artifact import checked_labels
from skeleton.atomic import atomic_path
from skeleton.errors import InputError
from skeleton.windows import WindowSpec


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _environment_count(name: str, default: int, least: int) -> int:
    """A whole number from the environment (torchrun's, or the user's), at least ``least``."""
    text = os.environ.get(name, "").strip() or str(default)
    if not text.isdigit() or int(text) < least:
        raise InputError(f"environment variable {name} must be a whole number, {least} or more, not {text!r}")
    return int(text)


def start(seed: int) -> Runtime:
    """Join the process group when launched by torchrun; pick the device; seed everything."""
    world_size = _environment_count("WORLD_SIZE", 1, least=1)
    rank = _environment_count("RANK", 0, least=0)
    if rank >= world_size:  # the group would wait for ranks that never come
        raise InputError(f"RANK {rank} is not below WORLD_SIZE {world_size} (ranks count from 0)")
    if world_size > 1 and not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        raise InputError("WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT: launch with torchrun, which sets them")
    if torch.cuda.is_available():
        device = torch.device("cuda", _environment_count("LOCAL_RANK", 0, least=0))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    seed_process(seed, rank)
    return Runtime(device, rank, world_size)


def seed_process(seed: int, rank: int) -> None:
    """Seed Python's, numpy's and torch's generators for process ``rank`` of a run."""
    # Seeds are checked to fit numpy's 32 bits (Experiment); adding the rank must not overflow them.
    process_seed = (seed + rank) % 2**32
    random.seed(process_seed)
    np.random.seed(process_seed)
    torch.manual_seed(process_seed)


def prepare_output_folder(path: Path) -> Path:
    """The experiment's output folder, created with its parents when missing; InputError naming
    it when it is a file, lies under a file, or cannot be created or written to."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"experiment.output {path}: is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file among its parents (ENOTDIR, EEXIST), no permission, a read-only disk
        raise InputError(f"experiment.output {path}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InputError(f"experiment.output {path}: the folder is not writable")
    return path


def loader_workers() -> int:
    """Processes preparing windows beside the training process (``ACTIONREC_LOADER_WORKERS``;
    0 on small machines, where the model already uses every core)."""
    return _environment_count("ACTIONREC_LOADER_WORKERS", 0, least=0)


def check_loss(value: float, runtime: Runtime, where: str, lost: str) -> None:
    """InputError when a training step's loss is not finite, in any process of the run: every
    weight would be NaN after it, and such a model answers one class for everything (scored, it
    looks like a result). The processes agree first, so that all of them stop at this step (one
    stopping alone would leave the others waiting in the gradients' all-reduce). ``where`` names
    the step, ``lost`` what is not saved."""
    finite = math.isfinite(value)
    if runtime.distributed:
        flag = torch.tensor([1.0 if finite else 0.0], device=runtime.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        finite = bool(flag.item())
    if not finite:
        raise InputError(
            f"{where}: the loss became {value if not math.isfinite(value) else 'not finite in another process'}:"
            f" the training diverged (a lower optim.lr may help); {lost}"
        )


def stop(runtime: Runtime) -> None:
    if runtime.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def from_main(value: object, runtime: Runtime) -> object:
    """The main process's ``value`` in every process (other processes pass anything, e.g. None)."""
    if not runtime.distributed:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def distribute(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    model = model.to(runtime.device)
    if not runtime.distributed:
        return model
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if runtime.device.type == "cuda" else model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None
    )


def source_commit() -> str:
    """The project's git commit (with '+dirty' for uncommitted changes), or '' outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return ""
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if commit.returncode == 0 else ""


def save_atomic(payload: object, path: Path) -> None:
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)


def encoder_checkpoint(encoder: SkeletonEncoder, window: WindowSpec, **extra: object) -> dict:
    return {
        "kind": "encoder",
        "encoder_config": dataclasses.asdict(encoder.config),
        "window": dataclasses.asdict(window),
        "state_dict": encoder.state_dict(),
        "source_commit": source_commit(),
        **extra,
    }


def classifier_checkpoint(model: Classifier, window: WindowSpec, labels: tuple[str, ...]) -> dict:
    return {
        "kind": "classifier",
        "encoder_config": dataclasses.asdict(model.encoder.config),
        "window": dataclasses.asdict(window),
        "labels": list(labels),
        "mirror_average": model.mirror_average,
        "state_dict": model.state_dict(),
        "source_commit": source_commit(),
    }


def load_checkpoint_file(path: Path) -> object:
    """What a checkpoint file holds (tensors and plain values only); InputError naming the file
    when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a foreign or damaged file
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None


def read_checkpoint(path: Path, kinds: tuple[str, ...] = ("encoder", "classifier")) -> dict:
    """A checkpoint of one of ``kinds`` whose config, window, labels and weights agree; InputError
    naming the file for anything else, so that a file edited by hand is refused here rather
    than met as a traceback when its network is built."""
    checkpoint = load_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") not in kinds:
        raise InputError(f"{path}: not a checkpoint of {' or '.join(kinds)} (train one with `actionrec`)")
    required = ("encoder_config", "window", "state_dict") + (("labels",) if checkpoint["kind"] == "classifier" else ())
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}")
    _network(checkpoint, str(path))
    return checkpoint


def _network(checkpoint: dict, origin: str) -> tuple[torch.nn.Module, WindowSpec, tuple[str, ...]]:
    """The network a checkpoint holds (eval mode, its weights loaded), its window and its labels
    (none for an encoder); InputError naming ``origin`` when they do not fit together."""
    try:
        config = EncoderConfig.from_dict(checkpoint["encoder_config"])
        window = WindowSpec(**checkpoint["window"])
        network = SkeletonEncoder(config)
    except InputError as e:
        raise InputError(f"{origin}: {e}") from None
    except (TypeError, ValueError, AttributeError, RuntimeError) as e:  # a config or window edited by hand
        raise InputError(f"{origin}: malformed checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    if (window.layout, window.dims) != (config.layout, config.dims):
        raise InputError(f"{origin}: its window ({window.layout}, {window.dims}-D) does not fit its encoder's input")
    labels = ()
    if checkpoint["kind"] == "classifier":
        labels = checked_labels(checkpoint["labels"], origin)
        mirror_average = checkpoint.get("mirror_average", False)  # older checkpoints: plain
        network = Classifier(network, len(labels), mirror_average=mirror_average)
    try:
        network.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as e:
        # torch's first line only names the module; the next one says which weight is wrong.
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise InputError(f"{origin}: weights do not fit the architecture ({' '.join(lines[:2])})") from None
    return network.eval(), window, labels


def classifier_from_checkpoint(checkpoint: dict) -> tuple[Classifier, WindowSpec, tuple[str, ...]]:
    """The classifier (eval mode), its window and its labels, from a classifier checkpoint that
    ``read_checkpoint`` checked."""
    return _network(checkpoint, "checkpoint")


def load_encoder(path: Path, expected_config: EncoderConfig, expected_window: WindowSpec) -> SkeletonEncoder:
    """An encoder from a checkpoint, refused (before training) when its architecture or its
    input (joint layout, 2-D or 3-D) differs from the experiment's.

    Window length, frame rate and normalisation may differ: the encoder is convolutional in time
    and pools over it, so its weights take any length, and fine-tuning adapts them to another
    rate or normalisation. So may the dropout rate, which has no weights. Each difference is
    printed, since it is a choice, not an accident."""
    checkpoint = read_checkpoint(path, ("encoder",))
    saved = EncoderConfig.from_dict(checkpoint["encoder_config"])
    if any(getattr(saved, name) != getattr(expected_config, name) for name in ENCODER_ARCHITECTURE):
        raise InputError(
            f"{path}: checkpoint is another architecture ({saved}) than the experiment's ({expected_config})"
        )
    if saved.dropout != expected_config.dropout:
        print(f"{path}: pretrained with dropout {saved.dropout}, fine-tuned with {expected_config.dropout}")
    saved_window = WindowSpec(**checkpoint["window"])
    if (saved_window.layout, saved_window.dims) != (expected_window.layout, expected_window.dims):
        raise InputError(f"{path}: checkpoint was trained on other input ({checkpoint['window']})")
    changed = {
        name: (getattr(saved_window, name), getattr(expected_window, name))
        for name in ("length", "fps", "normalization")
        if getattr(saved_window, name) != getattr(expected_window, name)
    }
    if changed:
        print(
            f"{path}: pretrained on other windows, adapted by fine-tuning: "
            + ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changed.items())
        )
    encoder = SkeletonEncoder(expected_config)
    encoder.load_state_dict(checkpoint["state_dict"])  # read_checkpoint found that the weights fit
    return encoder
