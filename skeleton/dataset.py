"""The project's skeleton dataset: one ``.npz`` file per dataset.

Kinect recordings, mocap, annotated video and MediaPipe output all travel in this one shape, so
that every later step (pretraining, fine-tuning, evaluation, the service's tests) reads one
format. The on-disk format is documented in ``docs/dataset-format.md``; in short:

* sequences are ragged in time and may hold several people: ``coords`` is (frames of all
  sequences, persons, joints, channels), NaN where a person or joint is absent; sequence ``i``
  owns the frames ``offsets[i]:offsets[i] + lengths[i]``;
* every frame has a timestamp (ms from the sequence start), so variable-rate video survives;
* per sequence: name, label (-1: none), subject and view (-1: unknown), image size;
* named splits (``cross-subject/train`` ...) are index arrays into the sequences.

Files are written atomically (a temporary file renamed into place), so a failed conversion
never leaves half a dataset behind, and read without pickle.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
import unicodedata
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skeleton.atomic import atomic_path
from skeleton.errors import InputError
from skeleton.layouts import get_layout
from skeleton.provenance import outdated_conversion
from skeleton.resample import MAX_SEQUENCE_SPAN_MS

FORMAT_NAME = "actionrec-skeleton-dataset"
FORMAT_VERSION = 1

# How to read the coordinates: image pixels (y down), a sensor's camera frame in metres
# (y up, z away from the sensor), or a mocap world frame (y up).
COORDINATE_SPACES = ("image", "camera", "world")

# What each header field must hold (JSON types, and in words), and the optional fields' defaults:
# a file edited by hand can hold anything there, and Python would take a string for a list of
# its letters or truncate a dims of 3.7 to 3.
_HEADER_FIELDS = {
    "layout": ((str,), "a layout name"),
    "dims": ((int,), "2 or 3"),
    "coordinate_space": ((str,), f"one of {', '.join(COORDINATE_SPACES)}"),
    "units": ((str,), "a unit name"),
    "fps": ((int, float), "a frame rate"),
    "label_names": ((list,), "a list of class names"),
    "source": ((str,), "a text"),
    "view_names": ((list,), "a list of view names"),
    "reader": ((str,), "the converting reader's format and revision"),
}
_HEADER_DEFAULTS = {"source": "", "view_names": [], "reader": ""}


def checked_labels(labels: object, what: str) -> tuple[str, ...]:
    """``labels`` as a tuple of class names; InputError, naming ``what`` and the offending names,
    unless they are a non-empty list of distinct, non-empty strings (a string or a mapping would
    otherwise pass as its letters or its keys). A dataset's label names and a model's labels
    follow this one rule, so a model trained on a dataset always has labels its card accepts."""
    if not isinstance(labels, (list, tuple)):
        raise InputError(f"{what}: labels must be a list of names, not a {type(labels).__name__}")
    if not labels:
        raise InputError(f"{what}: labels must be a non-empty list of names")
    unnamed = [label for label in labels if not (isinstance(label, str) and label.strip())]
    if unnamed:
        raise InputError(f"{what}: every label must be a non-empty name, not {_listed(unnamed)}")
    # A line break or a control character (a no-break space or a CJK space is fine)
    broken = [label for label in labels if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in label)]
    if broken:
        raise InputError(f"{what}: every label must be a name on one line, not {_listed(broken)}")
    repeated = sorted(label for label, count in Counter(labels).items() if count > 1)
    if repeated:
        raise InputError(f"{what}: labels must be distinct ({_listed(repeated)} more than once)")
    return tuple(labels)


def _listed(values: list) -> str:
    """A few of ``values`` for a message (a list of thousands would bury it)."""
    shown = ", ".join(repr(v) for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Where each sequence's frames start: the running sum of the lengths before it."""
    return np.concatenate([[0], np.cumsum(lengths)])[:-1].astype(np.int64)


@dataclass(frozen=True)
class SkeletonSequence:
    """One recording: (T, P, J, C) coordinates of P people, with confidences and timestamps."""

    name: str
    coords: np.ndarray
    confidence: np.ndarray
    timestamps_ms: np.ndarray
    label: int = -1
    subject: int = -1
    view: int = -1
    image_size: tuple[int, int] = (0, 0)

    @property
    def num_frames(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_persons(self) -> int:
        return int(self.coords.shape[1])


@dataclass
class SkeletonDataset:
    """Many sequences in one layout and coordinate space, with label names and named splits."""

    layout: str
    dims: int
    coordinate_space: str
    units: str
    fps: float
    label_names: tuple[str, ...]
    names: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    views: np.ndarray
    image_sizes: np.ndarray
    lengths: np.ndarray
    coords: np.ndarray
    confidence: np.ndarray
    timestamps_ms: np.ndarray
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    view_names: tuple[str, ...] = ()
    # The reader that converted the source and its revision ("nw-ucla 2"; skeleton.readers), kept
    # through subsets and remapping; "" for data no reader converted.
    reader: str = ""

    def __post_init__(self) -> None:
        self.validate()
        self.offsets = _offsets(self.lengths)  # one per sequence
        # Compact files hold float16 and a file written elsewhere may hold integers: in memory,
        # coordinates and confidences are always float32 and timestamps float64.
        self.coords = self.coords.astype(np.float32, copy=False)
        self.confidence = self.confidence.astype(np.float32, copy=False)
        self.timestamps_ms = self.timestamps_ms.astype(np.float64, copy=False)

    # -- building -------------------------------------------------------------------------

    @classmethod
    def from_sequences(
        cls,
        sequences: Sequence[SkeletonSequence],
        *,
        layout: str,
        coordinate_space: str,
        units: str,
        fps: float,
        label_names: Iterable[str] = (),
        splits: dict[str, Iterable[int]] | None = None,
        source: str = "",
        view_names: Iterable[str] = (),
        reader: str = "",
    ) -> SkeletonDataset:
        """Pack sequences (people padded with NaN to the largest count) into one dataset."""
        if not sequences:
            raise InputError(f"no sequences to write ({source or 'empty input'})")
        dims = int(sequences[0].coords.shape[-1])
        persons = max(s.num_persons for s in sequences)
        joints = get_layout(layout).num_joints

        def padded(array: np.ndarray, fill: float) -> np.ndarray:
            pad = [(0, 0)] * array.ndim
            pad[1] = (0, persons - array.shape[1])
            return np.pad(array, pad, constant_values=fill)

        for s in sequences:
            if s.coords.ndim != 4 or s.coords.shape[2:] != (joints, dims):
                raise InputError(f"{s.name}: coordinates of shape {s.coords.shape}, expected (T, P, {joints}, {dims})")
        return cls(
            layout=layout,
            dims=dims,
            coordinate_space=coordinate_space,
            units=units,
            fps=float(fps),
            label_names=tuple(label_names),
            names=np.array([s.name for s in sequences], dtype=str),
            labels=np.array([s.label for s in sequences], dtype=np.int64),
            subjects=np.array([s.subject for s in sequences], dtype=np.int64),
            views=np.array([s.view for s in sequences], dtype=np.int64),
            image_sizes=np.array([s.image_size for s in sequences], dtype=np.int64).reshape(-1, 2),
            lengths=np.array([s.num_frames for s in sequences], dtype=np.int64),
            coords=np.concatenate([padded(s.coords.astype(np.float32), np.nan) for s in sequences]),
            confidence=np.concatenate([padded(s.confidence.astype(np.float32), 0.0) for s in sequences]),
            timestamps_ms=np.concatenate([s.timestamps_ms.astype(np.float64) for s in sequences]),
            splits={k: np.asarray(sorted(v), dtype=np.int64) for k, v in (splits or {}).items()},
            source=source,
            view_names=tuple(view_names),
            reader=reader,
        )

    # -- reading --------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def __getitem__(self, i: int) -> SkeletonSequence:
        frames = slice(int(self.offsets[i]), int(self.offsets[i] + self.lengths[i]))
        return SkeletonSequence(
            name=str(self.names[i]),
            coords=self.coords[frames],
            confidence=self.confidence[frames],
            timestamps_ms=self.timestamps_ms[frames],
            label=int(self.labels[i]),
            subject=int(self.subjects[i]),
            view=int(self.views[i]),
            image_size=(int(self.image_sizes[i, 0]), int(self.image_sizes[i, 1])),
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def num_frames(self) -> int:
        return int(self.coords.shape[0])

    @property
    def is_labelled(self) -> bool:
        return bool(self.label_names) and bool((self.labels >= 0).any())

    def labelled_in(self, indices: np.ndarray) -> np.ndarray:
        """The labelled sequences among ``indices`` (a split), in their order."""
        indices = np.asarray(indices)
        return indices[self.labels[indices] >= 0]

    def copies_among(self, indices: np.ndarray, originals: np.ndarray) -> np.ndarray:
        """The sequences of ``indices`` whose frames are exactly those of a sequence of
        ``originals`` (a test part against its train part: a copy there is no held-out clip)."""
        seen = {self._frames_digest(i) for i in originals}
        indices = np.asarray(indices, dtype=np.int64)
        return indices[np.array([self._frames_digest(i) in seen for i in indices], dtype=bool)]

    def _frames_digest(self, i: int) -> bytes:
        return hashlib.sha256(np.ascontiguousarray(self[i].coords).tobytes()).digest()

    def persons_per_sequence(self) -> np.ndarray:
        """How many people actually appear in each sequence (not the padded count)."""
        present = ~np.isnan(self.coords).all(axis=(2, 3))
        return np.array(
            [present[o : o + n].any(axis=0).sum() for o, n in zip(self.offsets, self.lengths)],
            dtype=np.int64,
        )

    def subset(self, indices: Iterable[int]) -> SkeletonDataset:
        """The listed sequences as a new dataset (splits are dropped: their indices would shift)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        frames = (
            np.concatenate([np.arange(self.offsets[i], self.offsets[i] + self.lengths[i]) for i in idx])
            if len(idx)
            else np.zeros(0, dtype=np.int64)
        )
        return SkeletonDataset(
            layout=self.layout,
            dims=self.dims,
            coordinate_space=self.coordinate_space,
            units=self.units,
            fps=self.fps,
            label_names=self.label_names,
            names=self.names[idx],
            labels=self.labels[idx],
            subjects=self.subjects[idx],
            views=self.views[idx],
            image_sizes=self.image_sizes[idx],
            lengths=self.lengths[idx],
            coords=self.coords[frames],
            confidence=self.confidence[frames],
            timestamps_ms=self.timestamps_ms[frames],
            source=self.source,
            view_names=self.view_names,
            reader=self.reader,
        )

    # -- checking -------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise InputError when the arrays disagree with each other or with the layout."""
        # Counts and indices must be integers before anything is counted or indexed with them (a
        # file edited by hand can hold floats there).
        counts = {key: getattr(self, key) for key in ("lengths", "labels", "subjects", "views", "image_sizes")}
        counts.update({f"split {name!r}": idx for name, idx in self.splits.items()})
        problems = [
            f"{key} holds {a.dtype} values, not integers" for key, a in counts.items() if a.dtype.kind not in "iu"
        ]
        values = {key: getattr(self, key) for key in ("coords", "confidence", "timestamps_ms")}
        problems += [
            f"{key} holds {a.dtype} values, not numbers" for key, a in values.items() if a.dtype.kind not in "iuf"
        ]
        if self.lengths.ndim != 1:
            problems.append(f"lengths has shape {self.lengths.shape}, expected (sequences,)")
        if problems:
            raise InputError("inconsistent dataset: " + "; ".join(problems))
        if self.label_names:  # none: an unlabelled corpus
            checked_labels(self.label_names, "label_names")
        layout = get_layout(self.layout)
        n = len(self)
        if self.coordinate_space not in COORDINATE_SPACES:
            problems.append(f"coordinate space {self.coordinate_space!r} not in {COORDINATE_SPACES}")
        if self.dims not in (2, 3):
            problems.append(f"dims {self.dims} is neither 2 nor 3")
        if self.coords.ndim != 4 or self.coords.shape[2:] != (layout.num_joints, self.dims):
            problems.append(f"coords shape {self.coords.shape} does not fit (N, P, {layout.num_joints}, {self.dims})")
        elif n and self.coords.shape[1] == 0:
            # P is the most people in any sequence: none at all leaves nothing to learn or score.
            problems.append("coords has no person slot (P = 0): no sequence holds anyone")
        if self.confidence.shape != self.coords.shape[:3]:
            problems.append(f"confidence shape {self.confidence.shape} != {self.coords.shape[:3]}")
        if self.timestamps_ms.shape != (self.coords.shape[0],):
            problems.append("one timestamp per frame expected")
        if int(self.lengths.sum()) != self.coords.shape[0]:
            problems.append(f"sequence lengths add up to {int(self.lengths.sum())}, not {self.coords.shape[0]} frames")
        if n and self.lengths.min() < 1:
            first = int(np.argmin(self.lengths))
            problems.append(f"sequence {first} has {int(self.lengths[first])} frames (every sequence has at least one)")
        for key in ("names", "labels", "subjects", "views"):
            if getattr(self, key).shape != (n,):
                problems.append(f"{key} has shape {getattr(self, key).shape}, expected ({n},)")
        if self.image_sizes.shape != (n, 2):
            problems.append(f"image_sizes has shape {self.image_sizes.shape}, expected ({n}, 2)")
        if self.labels.size and self.labels.max(initial=-1) >= len(self.label_names):
            problems.append(f"label {int(self.labels.max())} has no name ({len(self.label_names)} names)")
        if self.labels.size and self.labels.min() < -1:
            problems.append(f"label {int(self.labels.min())} is neither a class index nor -1 (unlabelled)")
        if not np.isfinite(self.fps) or self.fps <= 0:
            problems.append(f"fps {self.fps} is not positive")
        for split, idx in self.splits.items():
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                problems.append(f"split {split!r} indexes past the {n} sequences")
        if problems:
            raise InputError("inconsistent dataset: " + "; ".join(problems))
        self._check_timestamps()

    def _check_timestamps(self) -> None:
        """Each sequence's timestamps are finite, increase strictly and span at most
        ``MAX_SEQUENCE_SPAN_MS``: every later step resamples by them, and a NaN, a clock standing
        still or a clock in nanoseconds would fail there (or ask for hundreds of GiB) once work
        has started. Called once the arrays' shapes agree."""
        times = self.timestamps_ms.astype(np.float64, copy=False)
        starts = _offsets(self.lengths)
        ends = starts + self.lengths - 1  # each sequence's last frame
        steps = np.diff(times)
        steps[ends[:-1]] = np.inf  # from one sequence's last frame to the next one's first: no step
        too_long = ends[times[ends] - times[starts] > MAX_SEQUENCE_SPAN_MS]
        hours = MAX_SEQUENCE_SPAN_MS / 3_600_000
        first_bad = {
            "is not finite": np.flatnonzero(~np.isfinite(times))[:1],
            "is not after the one before it": np.flatnonzero(steps <= 0)[:1] + 1,
            f"is more than {hours:g} h (the longest a sequence may last) after its first": too_long[:1],
        }
        for what, frames in first_bad.items():
            if frames.size:
                frame = int(frames[0])
                sequence = int(np.searchsorted(starts, frame, side="right")) - 1
                raise InputError(
                    f"inconsistent dataset: sequence {sequence} ({str(self.names[sequence])!r}): the timestamp"
                    f" {times[frame]:g} of its frame {frame - int(starts[sequence])} {what}"
                    " (timestamps_ms: each frame's time in ms from its sequence's start)"
                )

    # -- files ----------------------------------------------------------------------------

    def header(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "layout": self.layout,
            "dims": self.dims,
            "coordinate_space": self.coordinate_space,
            "units": self.units,
            "fps": self.fps,
            "label_names": list(self.label_names),
            "splits": sorted(self.splits),
            "source": self.source,
            "view_names": list(self.view_names),
            "reader": self.reader,
        }

    def save(self, path: Path, compact: bool = False) -> None:
        """Write the dataset to ``path`` atomically (nothing is left there on failure).

        ``compact`` stores coordinates and confidences as float16, compressed: a third to a
        sixth of the size, for moving data between machines (steps of 2 mm at 2 to 4 m, 1 px
        at 1024 to 2048 px, under the sensors' own noise); reading always gives float32.
        """
        arrays = {
            "header": np.array(json.dumps(self.header())),
            "names": self.names,
            "labels": self.labels,
            "subjects": self.subjects,
            "views": self.views,
            "image_sizes": self.image_sizes,
            "lengths": self.lengths,
            "coords": self.coords.astype(np.float16) if compact else self.coords,
            "confidence": self.confidence.astype(np.float16) if compact else self.confidence,
            "timestamps_ms": self.timestamps_ms,
            **{f"split/{k}": v for k, v in self.splits.items()},
        }
        with atomic_path(path) as temporary, open(temporary, "wb") as f:
            (np.savez_compressed if compact else np.savez)(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> SkeletonDataset:
        """Read a dataset file; InputError naming the file when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such dataset file")
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if not isinstance(header, dict):
                    raise InputError(f"{path}: not a skeleton dataset (its header is not a JSON object)")
                if header.get("format") != FORMAT_NAME:
                    raise InputError(f"{path}: not a skeleton dataset (format {header.get('format')!r})")
                if header.get("version") != FORMAT_VERSION:
                    raise InputError(f"{path}: dataset format version {header.get('version')} is not supported")
                arrays = {k: data[k] for k in data.files}
        except InputError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: not a readable skeleton dataset ({type(e).__name__}: {e})") from None
        try:
            fields = _header_values(header)
            if why := outdated_conversion(fields["reader"], fields["source"]):
                raise InputError(why)
            dataset = cls(
                **fields,
                names=arrays["names"],
                labels=arrays["labels"],
                subjects=arrays["subjects"],
                views=arrays["views"],
                image_sizes=arrays["image_sizes"],
                lengths=arrays["lengths"],
                coords=arrays["coords"],
                confidence=arrays["confidence"],
                timestamps_ms=arrays["timestamps_ms"],
                splits={k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("split/")},
            )
        except KeyError as e:
            raise InputError(f"{path}: skeleton dataset lacks {e}") from None
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        return dataset


def _header_values(header: dict) -> dict:
    """The header's fields as the dataset takes them; KeyError for a missing required field,
    InputError naming a field of the wrong type."""
    values = {}
    for key, (types, meaning) in _HEADER_FIELDS.items():
        value = header.get(key, _HEADER_DEFAULTS[key]) if key in _HEADER_DEFAULTS else header[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise InputError(f"header field {key!r} must be {meaning}, not {reprlib.repr(value)}")
        values[key] = value
    view_names = values["view_names"]
    if not all(isinstance(name, str) for name in view_names):
        raise InputError(f"header field 'view_names' must be a list of view names, not {reprlib.repr(view_names)}")
    return {
        **values,
        "fps": float(values["fps"]),
        "label_names": tuple(values["label_names"]),
        "view_names": tuple(values["view_names"]),
    }


def uniform_timestamps(num_frames: int, fps: float) -> np.ndarray:
    """Timestamps (ms) of ``num_frames`` frames taken at a steady ``fps``."""
    return np.arange(num_frames, dtype=np.float64) * (1000.0 / fps)
