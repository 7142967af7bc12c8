"""MSR Action3D skeletons (``aNN_sMM_eKK_skeleton3D.txt``: 20 joints of ``x y z confidence``).

Frames that are all zeros (the sensor lost the person) are dropped, since they would teach a
model that people collapse to a point; the frames kept keep their capture times, so a loss in
the middle of a sequence stays a gap of that length (missing, not squeezed out: the motion
before and after it is not joined as if no time had passed). A sequence with no valid frame is
skipped and reported.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.readers.common import input_files, label_from_number, label_names_beside, name_fields, one_person

FPS = 15.0  # the capture rate given in the dataset's paper
NAME_PATTERN = r"a(?P<a>\d+)_s(?P<s>\d+)_e(?P<e>\d+)_skeleton3D\.txt"
TRAIN_SUBJECTS = (1, 3, 5, 7, 9)  # the standard cross-subject protocol
PAPER_LIST = "files_used_in_cvpr12_paper.txt"


def _read_file(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():  # an empty file is reported below, not as a warning
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise InputError(f"{path}: not an MSR Action3D skeleton file ({e})") from None
    if values.size == 0:
        raise InputError(f"{path}: empty file")
    if values.shape[1] != 4 or values.shape[0] % 20:
        raise InputError(
            f"{path}: {values.shape[0]} lines of {values.shape[1]} values; expected 20 lines of 4 per frame"
        )
    return values.reshape(-1, 20, 4)


def read_msr_action3d(source: Path) -> SkeletonDataset:
    files = input_files(source, "a*_s*_e*_skeleton3D.txt", "MSR Action3D skeleton")
    folder = files[0].parent
    label_names = label_names_beside(folder, "action_names.tsv", [f"a{i:02d}" for i in range(1, 21)])
    paper = folder / PAPER_LIST
    in_paper = (
        {line.split()[0].removesuffix(".txt") for line in paper.read_text().splitlines() if line.strip()}
        if paper.is_file()
        else None
    )
    sequences: list[SkeletonSequence] = []
    skipped = []
    for path in files:
        fields = name_fields(path, NAME_PATTERN, "MSR Action3D")
        label = label_from_number(path, fields["a"], label_names)
        frames = _read_file(path)
        seen = np.abs(frames[..., :3]).sum(axis=(1, 2)) > 0
        timestamps = uniform_timestamps(len(frames), FPS)[seen]
        frames = frames[seen]
        if len(frames) == 0:
            skipped.append(path.name)
            continue
        sequences.append(
            SkeletonSequence(
                name=path.name.removesuffix(".txt"),
                coords=one_person(frames[..., :3]),
                confidence=one_person(frames[..., 3]),
                timestamps_ms=timestamps,
                label=label,
                subject=fields["s"],
                view=1,
            )
        )
    if skipped:
        print(
            f"msr-action3d: skipped {len(skipped)} sequence(s) with no valid frame: {', '.join(skipped)}",
            file=sys.stderr,
        )
    standard = [
        i for i, s in enumerate(sequences) if in_paper is None or s.name.removesuffix("_skeleton3D") in in_paper
    ]
    splits = {
        "cross-subject/train": [i for i in standard if sequences[i].subject in TRAIN_SUBJECTS],
        "cross-subject/test": [i for i in standard if sequences[i].subject not in TRAIN_SUBJECTS],
    }
    return SkeletonDataset.from_sequences(
        sequences,
        layout="msr20",
        coordinate_space="camera",
        units="m",
        fps=FPS,
        label_names=label_names,
        splits=splits,
        source=f"MSR Action3D ({folder}); cross-subject splits over "
        + (f"the {len(standard)} sequences of {PAPER_LIST}" if in_paper is not None else "all sequences"),
    )
