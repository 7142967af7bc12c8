"""From any skeleton source to exactly what a model takes: the train/serve contract.

A model is trained on, and served with, windows of ``length`` frames at ``fps`` frames per
second, in its joint ``layout``, normalised by ``normalization``, missing joints as zeros.
``WindowSpec`` holds those five facts (they travel in the model file's metadata) and the
functions below are the only way data becomes model input, for a training set and for a
live camera alike:

1. ``to_model_space``  maps a source's layout onto the model's (refusing what cannot feed it);
2. ``resample_to_fps`` (``skeleton.resample``) brings any frame rate to the model's;
3. ``fit_length``      crops or pads a clip to the window length;
4. ``prepare_window``  normalises a window and fills missing joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skeleton.errors import InputError
from skeleton.layouts import get_layout
from skeleton.mapping import layout_mapping
from skeleton.normalize import NORMALIZATIONS, normalize

# A window is classified only when its person is present in at least this share of its frames:
# the service skips emptier ones, and training and evaluation leave them out the same way, so
# that a model neither learns from nor is scored on windows it would never be shown.
MIN_WINDOW_PRESENCE = 0.5


# A model's frame rate, within what actions and cameras take: the service runs on it (as float32)
# to choose frames and cut windows, and 1e5 fps would make hundreds of windows of three frames.
MIN_WINDOW_FPS, MAX_WINDOW_FPS = 1.0, 1000.0


@dataclass(frozen=True)
class WindowSpec:
    """What one model input window is."""

    layout: str
    dims: int
    length: int
    fps: float
    normalization: str

    def __post_init__(self) -> None:
        # A spec also comes from files edited by hand (model metadata, checkpoints): a float or a
        # bool where a count belongs, or a string anywhere, is refused here, not met later as a
        # TypeError deep in windowing.
        if not isinstance(self.layout, str):
            raise InputError(f"window layout must be a layout name, not {self.layout!r}")
        get_layout(self.layout)
        if isinstance(self.dims, bool) or not isinstance(self.dims, int) or self.dims not in (2, 3):
            raise InputError(f"window dims must be 2 or 3, not {self.dims!r}")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 2:
            raise InputError(f"window length must be a whole number of at least 2 frames, not {self.length!r}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)):
            raise InputError(f"window frame rate must be a number, not {self.fps!r}")
        if not MIN_WINDOW_FPS <= self.fps <= MAX_WINDOW_FPS:
            raise InputError(
                f"window frame rate must be from {MIN_WINDOW_FPS:g} to {MAX_WINDOW_FPS:g} fps, not {self.fps:g}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"unknown normalisation {self.normalization!r}; known: {', '.join(NORMALIZATIONS)}")

    @property
    def num_joints(self) -> int:
        return get_layout(self.layout).num_joints

    @property
    def duration_ms(self) -> float:
        return (self.length - 1) * 1000.0 / self.fps


def to_model_space(
    coords: np.ndarray, confidence: np.ndarray | None, source_layout: str, spec: WindowSpec
) -> tuple[np.ndarray, np.ndarray | None]:
    """Map ``coords`` (..., J_src, C) to the model's layout; C must equal the model's dims.

    2-D input is never invented from 3-D or the other way round: a 2-D model fed depth-sensor
    joints, or a 3-D model fed image landmarks, would see data unlike its training data.
    """
    if coords.shape[-1] != spec.dims:
        raise InputError(f"the model takes {spec.dims}-D joints; these are {coords.shape[-1]}-D")
    return layout_mapping(source_layout, spec.layout).apply(coords, confidence)


def fit_length(frames: np.ndarray, length: int, start: int | None = None) -> np.ndarray:
    """``frames`` (T, ...) as exactly ``length`` frames.

    A longer clip is cropped (at ``start``, by default centred). A shorter one is centred and
    padded by holding its first and last frames: the person stands still before and after,
    which is what a live window around a short action looks like.
    """
    count = frames.shape[0]
    if count == 0:
        raise InputError("cannot make a window from no frames")
    if count >= length:
        first = (count - length) // 2 if start is None else int(np.clip(start, 0, count - length))
        return frames[first : first + length]
    before = (length - count) // 2
    index = np.clip(np.arange(length) - before, 0, count - 1)
    return frames[index]


def seen_frames(frames: np.ndarray) -> np.ndarray:
    """(T,) bool: the frames of ``frames`` (T, J, C) in which the person is seen (any joint not NaN)."""
    return np.isfinite(frames).any(axis=(1, 2))


def presence(frames: np.ndarray) -> float:
    """The share of ``frames`` (T, J, C) in which the person is seen."""
    return float(seen_frames(frames).mean()) if len(frames) else 0.0


def present_enough(shares: np.ndarray) -> np.ndarray:
    """The indices of the windows whose presence ``shares`` reach ``MIN_WINDOW_PRESENCE``; the
    best one alone when none does (a clip is never left without a window)."""
    shares = np.asarray(shares, dtype=np.float64)
    kept = np.flatnonzero(shares >= MIN_WINDOW_PRESENCE)
    return kept if len(kept) else np.array([int(np.argmax(shares))])


def window_starts(count: int, length: int, stride: int) -> list[int]:
    """Starts of the windows that cover ``count`` frames with the given stride (the last one
    ends at the clip's end); one window for a clip no longer than ``length``."""
    if count <= length:
        return [0]
    starts = list(range(0, count - length + 1, stride))
    if starts[-1] != count - length:
        starts.append(count - length)
    return starts


def prepare_window(window: np.ndarray, spec: WindowSpec, coordinate_space: str) -> np.ndarray:
    """Normalise one window (T, J, C) of one person and put zeros where joints are missing."""
    normalised = normalize(window[:, None], get_layout(spec.layout), coordinate_space, spec.normalization)[:, 0]
    return np.nan_to_num(normalised, nan=0.0).astype(np.float32)
