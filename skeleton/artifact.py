"""The model artifact contract: what an exported model says about itself.

An ONNX model of this project carries its own description in its metadata: the label names,
the window it takes (layout, 2-D or 3-D, length, frame rate, normalisation), the embedding
size, and where it came from (data, protocol, accuracy, source commit). The exporter writes it
with ``ModelCard.to_metadata``; ``open_model``, the one way the service, ``evaluate`` and the
model listing open an ONNX file, reads it with ``ModelCard.from_metadata`` and refuses a model
whose description is missing or inconsistent, or whose graph does not take and give what the
description says, so a model can never be fed data unlike its training data. Neither side
needs torch for this (onnxruntime is imported only to open a file).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from skeleton.dataset import COORDINATE_SPACES, checked_labels
from skeleton.errors import InputError
from skeleton.windows import WindowSpec

METADATA_PREFIX = "actionrec."
CARD_VERSION = 1
INPUT_NAME = "skeleton"  # (batch, length, joints, dims) float32, prepared by skeleton.windows
SCORES_NAME = "scores"  # (batch, classes) logits
EMBEDDING_NAME = "embedding"  # (batch, embedding_size)
# What names a model file rather than a model in the models folder (evaluate also takes checkpoints).
MODEL_FILE_SUFFIXES = (".onnx", ".pt")
# NAME.fp16.onnx and NAME.int8.onnx are lower-precision copies of NAME.onnx; any other dotted
# name (tiny.v2.onnx) is a model of its own.
VARIANTS = ("fp16", "int8")

_LESS_VALIDATION = " less a validation part"
_TRAINING_DATA = re.compile(rf"(?P<file>[^,]+), split (?P<split>\S+)(?:{_LESS_VALIDATION})?")


def variant_of(path: Path) -> str:
    """The variant a model file is (``fp16``, ``int8``), or "" for a model of its own."""
    return next((v for v in VARIANTS if Path(path).name.endswith(f".{v}.onnx")), "")


def base_model_file(path: Path) -> Path:
    """The FP32 model a variant file is a copy of (``daily3d.int8.onnx`` -> ``daily3d.onnx``)."""
    variant = variant_of(path)
    return Path(path).with_name(Path(path).name.removesuffix(f".{variant}.onnx") + ".onnx") if variant else Path(path)


def training_data_text(file: str, split: str, less_validation: bool = False) -> str:
    """A card's ``training_data``: the dataset file and split a model was trained on."""
    return f"{file}, split {split}" + (_LESS_VALIDATION if less_validation else "")


def training_data_split(text: str) -> tuple[str, str] | None:
    """(file, split) of a ``training_data`` that ``training_data_text`` wrote; None for any other
    text (a card written by hand, or none)."""
    match = _TRAINING_DATA.fullmatch(text)
    return (match["file"], match["split"]) if match else None


def checked_accuracy(accuracy: object, what: str) -> dict[str, float]:
    """``accuracy`` (the part scored -> the share of it classified right) with float values;
    InputError, naming ``what``, unless each value is a finite number from 0 to 1 (the listing
    prints them as percentages, and ``models --json`` could not print a NaN as JSON)."""
    if not isinstance(accuracy, dict):
        raise InputError(f"{what}: accuracy must map each scored part to a number, not a {type(accuracy).__name__}")
    for part, value in accuracy.items():
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not isinstance(part, str) or not is_number or not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise InputError(f"{what}: accuracy {part!r} must be a number from 0 to 1, not {value!r}")
    return {part: float(value) for part, value in accuracy.items()}


@dataclass(frozen=True)
class ModelCard:
    name: str
    labels: tuple[str, ...]
    window: WindowSpec
    embedding_size: int
    input_space: str  # the coordinate space the model was trained on: "image" or "camera"/"world"
    training_data: str = ""
    protocol: str = ""
    accuracy: dict[str, float] = field(default_factory=dict)
    source_commit: str = ""
    created: str = ""

    def __post_init__(self) -> None:
        # The name heads every line the listing and the service print about the model.
        if not isinstance(self.name, str) or not self.name.strip() or not self.name.isprintable():
            raise InputError(f"model name must be a non-empty name on one line, not {self.name!r}")
        # Frozen, so set through object: labels read from JSON arrive as a list and are kept as a tuple.
        object.__setattr__(self, "labels", checked_labels(self.labels, f"model {self.name!r}"))
        object.__setattr__(self, "accuracy", checked_accuracy(self.accuracy, f"model {self.name!r}"))
        # 2-D models take image points; 3-D ones positions in space (a sensor's or mocap's).
        spaces = ("image",) if self.window.dims == 2 else tuple(s for s in COORDINATE_SPACES if s != "image")
        if self.input_space not in spaces:
            raise InputError(
                f"model {self.name!r}: input space {self.input_space!r} does not fit {self.window.dims}-D"
                f" windows (expected {' or '.join(spaces)})"
            )
        if not isinstance(self.embedding_size, int) or isinstance(self.embedding_size, bool) or self.embedding_size < 1:
            raise InputError(
                f"model {self.name!r}: embedding size must be a positive integer, not {self.embedding_size!r}"
            )

    def to_metadata(self) -> dict[str, str]:
        """ONNX ``metadata_props``: strings only, structured values as JSON."""
        values = asdict(self)
        values["window"] = asdict(self.window)
        values["labels"] = list(self.labels)
        values["card_version"] = CARD_VERSION
        return {
            METADATA_PREFIX + key: value if isinstance(value, str) else json.dumps(value)
            for key, value in values.items()
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], origin: str) -> ModelCard:
        """Read and check a model's description; ``origin`` (its path) names it in errors."""
        props = {k[len(METADATA_PREFIX) :]: v for k, v in metadata.items() if k.startswith(METADATA_PREFIX)}
        if not props:
            raise InputError(f"{origin}: not an actionrec model (no {METADATA_PREFIX}* metadata)")
        # Where the model came from is part of its description: a file without it cannot say
        # what it was trained on or how well it does (the listing and the cards print these).
        required = (
            "card_version",
            "name",
            "labels",
            "window",
            "embedding_size",
            "input_space",
            "training_data",
            "protocol",
            "accuracy",
            "source_commit",
        )
        missing = [k for k in required if k not in props]
        if missing:
            raise InputError(f"{origin}: model metadata lacks {', '.join(METADATA_PREFIX + k for k in missing)}")
        # Where it came from, present but blank, says no more than absent (the listing would print
        # an empty column); the other fields have checks of their own (an accuracy of {}: not scored).
        blank = [k for k in ("training_data", "protocol", "source_commit") if not props[k].strip()]
        if blank:
            raise InputError(f"{origin}: model metadata {', '.join(METADATA_PREFIX + k for k in blank)} is empty")
        try:
            version = json.loads(props["card_version"])
            if type(version) is not int or version != CARD_VERSION:
                raise InputError(
                    f"{origin}: model card version {version!r} is not supported: it must be the number {CARD_VERSION}"
                )
            return cls(
                name=props["name"],
                labels=json.loads(props["labels"]),
                window=WindowSpec(**json.loads(props["window"])),
                embedding_size=json.loads(props["embedding_size"]),
                input_space=props["input_space"],
                training_data=props["training_data"],
                protocol=props["protocol"],
                accuracy=json.loads(props["accuracy"]),
                source_commit=props["source_commit"],
                created=props.get("created", ""),
            )
        except InputError as e:
            message = str(e)
            raise InputError(message if message.startswith(origin) else f"{origin}: {message}") from None
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"{origin}: malformed model metadata ({type(e).__name__}: {e})") from None


def resolve_model_path(name_or_path: str, models_dir: Path) -> Path:
    """``NAME`` -> ``models_dir/NAME.onnx`` (dots included: ``daily3d.fp16``); a path when it
    has a slash, or ends in a model file's suffix and is not the name of a file there."""
    named = Path(models_dir) / f"{name_or_path}.onnx"
    if "/" in name_or_path or (name_or_path.endswith(MODEL_FILE_SUFFIXES) and not named.is_file()):
        return Path(name_or_path)
    return named


def model_names(models_dir: Path) -> list[str]:
    """The names of the models in ``models_dir``: each one ``resolve_model_path`` takes back to its file."""
    return sorted(path.stem for path in Path(models_dir).glob("*.onnx"))


def check_graph(session, card: ModelCard, origin: str) -> None:
    """The graph takes and gives what the card says (static sizes only; symbolic ones pass)."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if INPUT_NAME not in inputs:
        raise InputError(f"{origin}: the model has no input named {INPUT_NAME!r} (it has {', '.join(inputs)})")
    if len(inputs) > 1:  # the service feeds it windows and nothing else
        raise InputError(f"{origin}: the model takes inputs other than {INPUT_NAME!r}: {', '.join(sorted(inputs))}")
    missing = [name for name in (SCORES_NAME, EMBEDDING_NAME) if name not in outputs]
    if missing:
        raise InputError(f"{origin}: the model lacks the output(s) {', '.join(missing)}")
    spec = card.window
    expected = {
        INPUT_NAME: (inputs[INPUT_NAME].shape, (None, spec.length, spec.num_joints, spec.dims)),
        SCORES_NAME: (outputs[SCORES_NAME].shape, (None, len(card.labels))),
        EMBEDDING_NAME: (outputs[EMBEDDING_NAME].shape, (None, card.embedding_size)),
    }
    for name, (shape, want) in expected.items():
        if len(shape) != len(want) or any(isinstance(s, int) and w is not None and s != w for s, w in zip(shape, want)):
            raise InputError(f"{origin}: {name} has shape {shape}, but its card says {want} (None: the batch)")
        if isinstance(shape[0], int):  # the service batches windows from many streams
            raise InputError(f"{origin}: {name} has a fixed batch size of {shape[0]}; exported models take any")
    for name, port in (
        (INPUT_NAME, inputs[INPUT_NAME]),
        (SCORES_NAME, outputs[SCORES_NAME]),
        (EMBEDDING_NAME, outputs[EMBEDDING_NAME]),
    ):
        if port.type != "tensor(float)":
            raise InputError(f"{origin}: {name} is {port.type}, not float32")


def variant_differences(variant: ModelCard, base: ModelCard) -> list[str]:
    """What a variant's card says unlike its FP32 model's (a copy at lower precision says the same,
    its creation time aside): a file under a variant's name holding another model would answer
    with its labels under the base model's name."""
    return [key for key in asdict(base) if key != "created" and getattr(variant, key) != getattr(base, key)]


def open_model(
    path: Path, options: object = None, providers: Sequence[str] = ("CPUExecutionProvider",)
) -> tuple[ModelCard, object]:
    """(card, onnxruntime session) of an ONNX model file whose card and graph agree; InputError
    naming the file when it is missing, unreadable, not described, or unlike its description."""
    import onnxruntime

    origin = str(path)
    if not Path(path).is_file():
        raise InputError(f"{origin}: no such model file")
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=list(providers))
    except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise InputError(f"{origin}: not a loadable ONNX model ({type(e).__name__}: {first_line})") from None
    card = ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, origin)
    check_graph(session, card, origin)
    return card, session


def read_models(models_dir: Path) -> tuple[list[tuple[Path, ModelCard]], list[str]]:
    """Every ``models_dir/*.onnx`` opened by ``open_model``: (file, card) of each usable one, and
    one line for each other file saying why (one bad file does not hide the others)."""
    opened, problems = {}, []
    for path in sorted(Path(models_dir).glob("*.onnx")):
        try:
            opened[path] = open_model(path)[0]
        except InputError as e:
            problems.append(str(e))
    usable = []
    for path, card in opened.items():
        if problem := variant_problem(path, card, opened):
            problems.append(problem)
        else:
            usable.append((path, card))
    return usable, problems


def variant_problem(path: Path, card: ModelCard, beside: dict[Path, ModelCard]) -> str | None:
    """Why the variant file ``path`` (its ``card``) may not be served beside its model, when that
    model is among ``beside`` (file -> card) and states another card; None otherwise. A variant
    without its model (an edge box given only NAME.int8.onnx) is served as it is."""
    base = base_model_file(path)
    if base == path or base not in beside or not (differences := variant_differences(card, beside[base])):
        return None
    return f"{path}: its card differs from {base.name}'s in {', '.join(differences)}"


def model_listing(models_dir: Path, relative_to: Path | None = None) -> tuple[list[dict], list[str]]:
    """The description (card) of every usable FP32 model in ``models_dir``, with its usable
    variants, the name the service serves it as and its file (relative to ``relative_to`` when
    inside it), and one line for each file there that is not a usable model (``read_models``)."""
    usable, problems = read_models(models_dir)
    files = {path.name for path, _ in usable}

    def shown(path: Path) -> str:
        inside = relative_to is not None and path.resolve().is_relative_to(Path(relative_to).resolve())
        return str(path.resolve().relative_to(Path(relative_to).resolve())) if inside else str(path)

    cards = [
        {
            **asdict(card),
            # What streams ask for: the service names a model by its file's stem, which is the
            # card's name unless the file was renamed after export.
            "served_as": path.stem,
            "file": shown(path),
            "variants": [f"{path.stem}.{v}.onnx" for v in VARIANTS if f"{path.stem}.{v}.onnx" in files],
        }
        for path, card in usable
        if not variant_of(path) or base_model_file(path).name not in files  # a variant alone is listed alone
    ]
    return cards, problems
