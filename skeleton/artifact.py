"""The model artifact contract: what an exported model says about itself.

An ONNX model of this project carries its own description in its metadata: the label names,
the window it takes (layout, 2-D or 3-D, length, frame rate, normalisation), the embedding
size, and where it came from (data, protocol, accuracy, source commit). The exporter writes it
with ``ModelCard.to_metadata``; the service reads it with ``ModelCard.from_metadata`` and
refuses a model whose description is missing or inconsistent, so a model can never be fed
data unlike its training data. Neither side needs torch for this.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from skeleton.dataset import COORDINATE_SPACES
from skeleton.errors import InputError
from skeleton.windows import WindowSpec

METADATA_PREFIX = "actionrec."
CARD_VERSION = 1
INPUT_NAME = "skeleton"  # (batch, length, joints, dims) float32, prepared by skeleton.windows
SCORES_NAME = "scores"  # (batch, classes) logits
EMBEDDING_NAME = "embedding"  # (batch, embedding_size)

_LESS_VALIDATION = " less a validation part"
_TRAINING_DATA = re.compile(rf"(?P<file>[^,]+), split (?P<split>\S+)(?:{_LESS_VALIDATION})?")


def training_data_text(file: str, split: str, less_validation: bool = False) -> str:
    """A card's ``training_data``: the dataset file and split a model was trained on."""
    return f"{file}, split {split}" + (_LESS_VALIDATION if less_validation else "")


def training_data_split(text: str) -> tuple[str, str] | None:
    """(file, split) of a ``training_data`` that ``training_data_text`` wrote; None for any other
    text (a card written by hand, or none)."""
    match = _TRAINING_DATA.fullmatch(text)
    return (match["file"], match["split"]) if match else None


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
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise InputError(f"model {self.name!r}: labels must be non-empty and distinct")
        if not all(isinstance(label, str) and label.strip() for label in self.labels):
            raise InputError(f"model {self.name!r}: every label must be a non-empty name")
        # 2-D models take image points; 3-D ones positions in space (a sensor's or mocap's).
        spaces = ("image",) if self.window.dims == 2 else tuple(s for s in COORDINATE_SPACES if s != "image")
        if self.input_space not in spaces:
            raise InputError(
                f"model {self.name!r}: input space {self.input_space!r} does not fit {self.window.dims}-D"
                f" windows (expected {' or '.join(spaces)})"
            )
        if self.embedding_size < 1:
            raise InputError(f"model {self.name!r}: embedding size {self.embedding_size}")

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
        required = ("card_version", "name", "labels", "window", "embedding_size", "input_space")
        missing = [k for k in required if k not in props]
        if missing:
            raise InputError(f"{origin}: model metadata lacks {', '.join(METADATA_PREFIX + k for k in missing)}")
        try:
            version = json.loads(props["card_version"])
            if version != CARD_VERSION:
                raise InputError(f"{origin}: model card version {version} is not supported (expected {CARD_VERSION})")
            return cls(
                name=props["name"],
                labels=tuple(json.loads(props["labels"])),
                window=WindowSpec(**json.loads(props["window"])),
                embedding_size=int(json.loads(props["embedding_size"])),
                input_space=props["input_space"],
                training_data=props.get("training_data", ""),
                protocol=props.get("protocol", ""),
                accuracy={k: float(v) for k, v in json.loads(props.get("accuracy", "{}")).items()},
                source_commit=props.get("source_commit", ""),
                created=props.get("created", ""),
            )
        except InputError as e:
            message = str(e)
            raise InputError(message if message.startswith(origin) else f"{origin}: {message}") from None
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"{origin}: malformed model metadata ({type(e).__name__}: {e})") from None
