"""Penn Action 2-D annotations (one ``NNNN.mat`` per video: 13 joints, pixels, visibility)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.readers.common import input_files

FPS = 30.0  # YouTube clips; the files do not state it
LABEL_NAMES = (
    "baseball_pitch",
    "baseball_swing",
    "bench_press",
    "bowl",
    "clean_and_jerk",
    "golf_swing",
    "jump_rope",
    "jumping_jacks",
    "pullup",
    "pushup",
    "situp",
    "squat",
    "strum_guitar",
    "tennis_forehand",
    "tennis_serve",
)
VIEW_NAMES = ("front", "back", "left", "right")
# A joint the annotators did not place is stored at a point within a pixel or so of the image's
# top-left corner (0, 0.67, 1, 1.33 ...), always with visibility 0; no placed joint comes within
# 2 pixels of it. Read as data, such a corner joint is a cue tied to the class (present in 99 %
# of strum_guitar frames, 1-3 % of the golf and tennis ones) that camera landmarks never give,
# and its hips throw off a window's centre and scale: it is read as missing. Other invisible
# joints are the annotators' guesses of where the hidden joint is, and are kept.
UNPLACED_WITHIN_PX = 2.0
_REQUIRED = ("action", "pose", "x", "y", "visibility", "dimensions", "train")


def _read_file(path: Path) -> tuple[SkeletonSequence, bool]:
    try:
        record = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises many types for a damaged file
        raise InputError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise InputError(f"{path}: not a Penn Action annotation (missing {', '.join(missing)})")
    action = str(np.ravel(record["action"])[0])
    view = str(np.ravel(record["pose"])[0])
    if action not in LABEL_NAMES:
        raise InputError(f"{path}: unknown action {action!r}")
    x, y, visibility = (np.asarray(record[k], dtype=np.float32) for k in ("x", "y", "visibility"))
    if x.ndim != 2 or x.shape[1] != 13 or x.shape != y.shape or x.shape != visibility.shape or len(x) == 0:
        raise InputError(f"{path}: x/y/visibility shapes {x.shape}/{y.shape}/{visibility.shape}, expected (T>0, 13)")
    height, width = (int(v) for v in np.ravel(record["dimensions"])[:2])
    unplaced = (visibility == 0) & (x < UNPLACED_WITHIN_PX) & (y < UNPLACED_WITHIN_PX)
    coords = np.stack([x, y], axis=-1)
    coords[unplaced] = np.nan
    sequence = SkeletonSequence(
        name=path.stem,
        coords=coords[:, None],
        confidence=visibility[:, None],
        timestamps_ms=uniform_timestamps(len(x), FPS),
        label=LABEL_NAMES.index(action),
        view=VIEW_NAMES.index(view) if view in VIEW_NAMES else -1,
        image_size=(width, height),
    )
    return sequence, int(np.ravel(record["train"])[0]) == 1


def read_penn_action(source: Path) -> SkeletonDataset:
    sequences, official_train = [], []
    for path in input_files(source, "*.mat", "Penn Action annotation (.mat)"):
        sequence, is_train = _read_file(path)
        if is_train:
            official_train.append(len(sequences))
        sequences.append(sequence)
    official_test = sorted(set(range(len(sequences))) - set(official_train))
    return SkeletonDataset.from_sequences(
        sequences,
        layout="penn13",
        coordinate_space="image",
        units="px",
        fps=FPS,
        label_names=LABEL_NAMES,
        splits={"official/train": official_train, "official/test": official_test},
        source=f"Penn Action ({source}); views index view_names",
        view_names=VIEW_NAMES,
    )
