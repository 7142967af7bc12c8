"""Experiment configuration: one TOML file per experiment, read strictly.

A config is read into dataclasses; a key the dataclass does not have, a value of the wrong
type or a missing required value is an error naming the file and the key, before any data
is loaded or any training starts.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from export.data import VALIDATION_HOLDOUTS
from export.encoder import EncoderConfig
from export.masking import MaskingConfig
from skeleton.errors import InputError, read_input_file
from skeleton.windows import WindowSpec

# numpy's global generator takes seeds of 32 bits only.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class DataSource:
    path: str
    split: str = ""  # a named split of the file; empty: every sequence
    all_persons: bool = False


@dataclass(frozen=True)
class Optimisation:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    min_samples_per_epoch: int = 0  # small label budgets: repeat clips so an epoch has this many windows

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InputError(f"optim.epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            raise InputError(f"optim.batch_size must be at least 1, not {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise InputError(f"optim.lr must be positive and finite, not {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise InputError(f"optim.weight_decay must be 0 or more, not {self.weight_decay}")
        if self.warmup_epochs < 0:
            raise InputError(f"optim.warmup_epochs must be 0 or more, not {self.warmup_epochs}")
        if self.min_samples_per_epoch < 0:
            raise InputError(f"optim.min_samples_per_epoch must be 0 or more, not {self.min_samples_per_epoch}")


@dataclass(frozen=True)
class Experiment:
    name: str
    output: str
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.output.strip():  # the run's files would land in the working folder, replacing its own
            raise InputError("experiment.output must name the run's folder, not be empty")
        if self.seed < 0:  # numpy's and torch's generators take no negative seed
            raise InputError(f"experiment.seed must be 0 or more, not {self.seed}")
        if self.seed > MAX_SEED:
            raise InputError(f"experiment.seed must be at most {MAX_SEED} (2**32 - 1), not {self.seed}")


def _same_input(window: WindowSpec, encoder: EncoderConfig) -> None:
    """The encoder is built for its own layout and dims, the data is prepared for the window's:
    the two must agree, or the first batch fails on a tensor shape."""
    if (encoder.layout, encoder.dims) != (window.layout, window.dims):
        raise InputError(
            f"[encoder] takes {encoder.dims}-D {encoder.layout} joints, but [window] makes "
            f"{window.dims}-D {window.layout} windows: give both the same layout and dims"
        )


@dataclass(frozen=True)
class PretrainConfig:
    experiment: Experiment
    window: WindowSpec
    encoder: EncoderConfig
    data: tuple[DataSource, ...]
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: Optimisation = field(default_factory=Optimisation)
    off_diagonal_weight: float = 0.005
    projector_width: int = 1024
    # Another pretraining's checkpoint.pt to start from (encoder and projector): a second stage
    # on another corpus, e.g. a benchmark's unlabelled train part. Empty: random weights.
    initial: str = ""

    def __post_init__(self) -> None:
        _same_input(self.window, self.encoder)
        if self.projector_width < 1:
            raise InputError(f"projector_width must be at least 1, not {self.projector_width}")
        # Zero or less rewards correlated features (the loss falls without bound); NaN or infinity
        # turns every weight into NaN.
        if not (self.off_diagonal_weight > 0 and math.isfinite(self.off_diagonal_weight)):
            raise InputError(f"off_diagonal_weight must be positive and finite, not {self.off_diagonal_weight}")
        # MaskingConfig checks its shares; an infinite ramp would never mask, a NaN one masks at once.
        if not math.isfinite(self.masking.ramp_fraction):
            raise InputError(f"masking.ramp_fraction must be finite, not {self.masking.ramp_fraction}")

    def with_epochs(self, epochs: int) -> PretrainConfig:
        return dataclasses.replace(self, optim=dataclasses.replace(self.optim, epochs=epochs))


@dataclass(frozen=True)
class LabelBudget:
    fraction: float = 1.0  # of each class's train sequences (at least one each)
    per_class: int = 0  # when > 0, this many per class instead of a fraction

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise InputError(f"labels.fraction is a share, above 0 and at most 1, not {self.fraction}")
        if self.per_class < 0:
            raise InputError(f"labels.per_class must be 0 (off) or more, not {self.per_class}")


@dataclass(frozen=True)
class Benchmark:
    path: str
    train_split: str
    test_split: str

    def __post_init__(self) -> None:
        if self.train_split == self.test_split:  # a model scored on its own training data
            raise InputError(f"benchmark.test_split must be another split than train_split ({self.train_split!r})")


# The modes that train a model (the others probe a frozen encoder), and the settings of a
# TrainConfig that only they can use.
TRAINED_MODES = ("finetune", "scratch")
MODEL_TRAINING_SETTINGS = ("pseudo_label_share", "occlusion", "weight_average_decay", "mixup")


@dataclass(frozen=True)
class TrainConfig:
    experiment: Experiment
    window: WindowSpec
    encoder: EncoderConfig
    benchmark: Benchmark
    mode: str = "finetune"  # finetune | scratch | linear | knn
    pretrained: str = ""  # encoder checkpoint for finetune / linear
    labels: LabelBudget = field(default_factory=LabelBudget)
    validation: bool = False  # hold out part of the train split and report on it (choosing settings)
    validation_holds_out: str = "subjects"  # or "views": a new camera angle, for cross-view benchmarks
    # Which of the validation parts the train split gives is held out (export.data.validation_parts:
    # one a fold, for cross-validation); 0 is the part every single validation run holds out.
    validation_fold: int = 0
    optim: Optimisation = field(default_factory=Optimisation)
    encoder_lr_scale: float = 1.0  # fine-tuning: the encoder's learning rate relative to the head's
    head_warmup_epochs: int = 0  # fine-tuning: epochs that train the head alone on the frozen encoder first
    mirror: float = 0.0  # probability of mirroring a training window (left and right swapped)
    mirror_average: bool = False  # the trained model answers with the mean of a window and its mirror image
    # Few labels: when > 0, a second model trains on the labelled clips plus this share (per
    # answered class, the most confident) of the train part's unlabelled clips, labelled by the
    # first model's answers (export.self_training).
    pseudo_label_share: float = 0.0
    # When > 0, the model kept (and validated) is an exponential moving average of the weights
    # over the training steps with this decay a step (export.weight_average); 0: the last step's.
    weight_average_decay: float = 0.0
    # Chance that a training window has joints hidden over a stretch of its frames (a random share
    # of them, a body part, or the hands, as CFSEM's pretraining masks, drawn coarse to fine over
    # the epochs), set to what a joint the sensor lost becomes (zero): 0 is off.
    occlusion: float = 0.0
    # When > 0, each training window is blended with another of its batch and the loss weighs
    # their labels alike (mixup), the weight drawn from Beta(mixup, mixup): 0 is off.
    mixup: float = 0.0

    def __post_init__(self) -> None:
        _same_input(self.window, self.encoder)
        if self.mode not in ("finetune", "scratch", "linear", "knn"):
            raise InputError(f"mode {self.mode!r} is not finetune, scratch, linear or knn")
        if self.mode != "scratch" and not self.pretrained:
            raise InputError(f"mode {self.mode} needs a pretrained encoder checkpoint")
        if self.validation_holds_out not in VALIDATION_HOLDOUTS:
            raise InputError(
                f"validation_holds_out is {' or '.join(VALIDATION_HOLDOUTS)}, not {self.validation_holds_out!r}"
            )
        if self.validation_fold < 0:
            raise InputError(f"validation_fold is a fold's number, 0 or more, not {self.validation_fold}")
        if self.validation_fold and not self.validation:
            raise InputError("validation_fold chooses a validation part: it needs validation = true")
        if self.head_warmup_epochs and self.mode != "finetune":
            raise InputError(f"head_warmup_epochs is for mode finetune, not {self.mode}")
        if not 0 <= self.head_warmup_epochs < self.optim.epochs:
            raise InputError(
                f"head_warmup_epochs must be from 0 to fewer than the {self.optim.epochs} epochs, "
                f"not {self.head_warmup_epochs}"
            )
        if not (self.encoder_lr_scale >= 0 and math.isfinite(self.encoder_lr_scale)):
            raise InputError(f"encoder_lr_scale must be 0 or more and finite, not {self.encoder_lr_scale}")
        if not 0.0 <= self.mirror <= 1.0:
            raise InputError(f"mirror is a probability, from 0 to 1, not {self.mirror}")
        if not 0.0 <= self.pseudo_label_share <= 1.0:
            raise InputError(f"pseudo_label_share is a share, from 0 to 1, not {self.pseudo_label_share}")
        if not 0.0 <= self.occlusion <= 1.0:
            raise InputError(f"occlusion is a probability, from 0 to 1, not {self.occlusion}")
        if not (self.mixup >= 0.0 and math.isfinite(self.mixup)):
            raise InputError(f"mixup is a Beta distribution's parameter, 0 (off) or more, not {self.mixup}")
        if not 0.0 <= self.weight_average_decay < 1.0:
            raise InputError(f"weight_average_decay is from 0 (off) to below 1, not {self.weight_average_decay}")
        if self.mode not in TRAINED_MODES:
            for setting in MODEL_TRAINING_SETTINGS:
                if getattr(self, setting):
                    raise InputError(f"{setting} is for modes finetune and scratch, not {self.mode}")

    def with_epochs(self, epochs: int) -> TrainConfig:
        """The same run over ``epochs`` (a short smoke run): the head warm-up stays below them."""
        warmup = min(self.head_warmup_epochs, epochs - 1)
        return dataclasses.replace(
            self, optim=dataclasses.replace(self.optim, epochs=epochs), head_warmup_epochs=warmup
        )

    def under_protocol(self, mode: str, pretrained: str) -> TrainConfig:
        """This config run by another protocol (the results table, the sweep): settings that only
        fine-tuning has (the head warm-up) or only trained models have (weight averaging) are
        dropped for the protocols that would refuse them, and self-training for all of them, since
        the table and the sweep measure the protocols themselves (and their 100 % rows leave
        nothing unlabelled)."""
        warmup = self.head_warmup_epochs if mode == "finetune" else 0
        dropped = {} if mode in TRAINED_MODES else dict.fromkeys(MODEL_TRAINING_SETTINGS, 0.0)
        return dataclasses.replace(
            self,
            mode=mode,
            pretrained=pretrained,
            head_warmup_epochs=warmup,
            **{**dropped, "pseudo_label_share": 0.0},
        )


def _build(cls: type, values: object, where: str, origin: str):
    """``values`` (parsed TOML) as an instance of ``cls``, checked key by key."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        if not isinstance(values, dict):
            raise InputError(f"{origin}: [{where}] must be a table")
        known = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(
                f"{origin}: unknown key {where + '.' if where else ''}{unknown[0]} (known: {', '.join(known)})"
            )
        kwargs = {k: _build(hints[k], v, f"{where}.{k}" if where else k, origin) for k, v in values.items()}
        missing = [
            k
            for k, f in known.items()
            if k not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise InputError(f"{origin}: missing key {where + '.' if where else ''}{missing[0]}")
        return cls(**kwargs)
    origin_type, args = typing.get_origin(cls), typing.get_args(cls)
    if origin_type is tuple:
        if not isinstance(values, list):
            raise InputError(f"{origin}: {where} must be a list")
        item = args[0]
        return tuple(_build(item, v, f"{where}[{i}]", origin) for i, v in enumerate(values))
    if origin_type in (typing.Union, types.UnionType):
        return values
    expected = {float: (int, float), int: (int,), str: (str,), bool: (bool,)}.get(cls, (cls,))
    if not isinstance(values, expected) or (cls is int and isinstance(values, bool)):
        kind = _KINDS.get(cls, f"a {cls.__name__}")
        raise InputError(f"{origin}: {where} must be {kind}, not {values!r}")
    return float(values) if cls is float else values


# How a refusal names the type a key must have.
_KINDS = {int: "a whole number", float: "a number", str: "a text (in quotes)", bool: "true or false"}


def load_config(path: Path, cls: type):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    data = read_input_file(path, "config file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:  # TOML files are UTF-8 by definition
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    return config_from_text(text, cls, str(path))


def config_from_text(text: str, cls: type, origin: str):
    """TOML ``text`` (a config file's, or one a checkpoint stored) as a ``cls``; InputError
    naming ``origin`` and the key for anything that is not one."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{origin}: not valid TOML ({e})") from None
    try:
        return _build(cls, values, "", origin)
    except InputError as e:
        message = str(e)
        raise InputError(message if message.startswith(origin) else f"{origin}: {message}") from None


def config_differences(saved: object, current: object) -> dict[str, tuple[object, object]]:
    """The keys whose values differ between two configs of one kind, as they are written in a
    config file (``optim.lr``; a list of tables such as ``data`` as one key): (saved, current)."""
    differences: dict[str, tuple[object, object]] = {}
    for f in dataclasses.fields(current):
        old, new = getattr(saved, f.name), getattr(current, f.name)
        if dataclasses.is_dataclass(new):
            differences.update({f"{f.name}.{k}": v for k, v in config_differences(old, new).items()})
        elif old != new:
            differences[f.name] = (old, new)
    return differences


def toml_value(value: object) -> str:
    """``value`` as it is written in a config file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def dump_config(config: object) -> str:
    """The config as TOML that ``load_config`` reads back to an equal config."""
    scalars, tables, arrays = [], [], []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            body = "\n".join(f"{k} = {toml_value(v)}" for k, v in dataclasses.asdict(value).items())
            tables.append(f"[{f.name}]\n{body}\n")
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for item in value:
                body = "\n".join(f"{k} = {toml_value(v)}" for k, v in dataclasses.asdict(item).items())
                arrays.append(f"[[{f.name}]]\n{body}\n")
        else:
            scalars.append(f"{f.name} = {toml_value(value)}")
    return "\n".join(scalars) + "\n\n" + "\n".join(tables + arrays)
