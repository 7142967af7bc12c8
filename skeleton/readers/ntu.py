"""NTU RGB+D ``.skeleton`` files (Kinect v2, 25 joints, several bodies a frame).

A body keeps its person slot for as long as the sensor keeps its body id, so a sequence's
person axis follows identities, not the order the sensor happened to list them in a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.readers.common import input_files, label_from_number, label_names_beside, name_fields

FPS = 30.0
NAME_PATTERN = r"S(?P<S>\d{3})C(?P<C>\d{3})P(?P<P>\d{3})R(?P<R>\d{3})A(?P<A>\d{3})\.skeleton"
JOINTS = 25
# The standard NTU RGB+D protocols.
TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
TRAIN_CAMERAS = (2, 3)
# trackingState 0/1/2 = not tracked / inferred / tracked.
_CONFIDENCE_OF_STATE = np.array([0.0, 0.5, 1.0], dtype=np.float32)


@dataclass(frozen=True)
class NtuRecording:
    """Everything one ``.skeleton`` file says, per frame and person slot (NaN where absent)."""

    camera_xyz: np.ndarray  # (T, P, 25, 3) metres, camera frame
    color_xy: np.ndarray  # (T, P, 25, 2) pixels in the 1920x1080 RGB video
    confidence: np.ndarray  # (T, P, 25)


class _Tokens:
    """Whitespace-separated numbers of a file, read in order, with file-named errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.lines = path.read_text(encoding="ascii").split("\n")
        except UnicodeDecodeError:
            raise InputError(f"{path}: not a text .skeleton file") from None
        self.line = 0

    def next_values(self, expected: int, what: str) -> list[float]:
        while self.line < len(self.lines) and not self.lines[self.line].strip():
            self.line += 1
        if self.line >= len(self.lines):
            raise InputError(f"{self.path}: truncated: file ends where {what} was expected")
        fields = self.lines[self.line].split()
        self.line += 1
        if len(fields) != expected:
            raise InputError(
                f"{self.path}: line {self.line}: {len(fields)} values where {what} ({expected}) was expected"
            )
        try:
            return [float(v) for v in fields]
        except ValueError:
            raise InputError(f"{self.path}: line {self.line}: non-numeric value in {what}") from None


def read_ntu_recording(path: Path) -> NtuRecording:
    tokens = _Tokens(path)
    if not any(line.strip() for line in tokens.lines):
        raise InputError(f"{path}: empty file")
    num_frames = int(tokens.next_values(1, "the frame count")[0])
    if num_frames <= 0:
        raise InputError(f"{path}: frame count {num_frames}")
    slots: dict[int, int] = {}
    frames: list[dict[int, np.ndarray]] = []
    for _ in range(num_frames):
        bodies = {}
        for _ in range(int(tokens.next_values(1, "a body count")[0])):
            body_id = int(tokens.next_values(10, "a body line")[0])
            if int(tokens.next_values(1, "a joint count")[0]) != JOINTS:
                raise InputError(f"{path}: line {tokens.line}: joint count is not {JOINTS}")
            joints = np.array([tokens.next_values(12, "a joint line") for _ in range(JOINTS)], dtype=np.float64)
            bodies[slots.setdefault(body_id, len(slots))] = joints
        frames.append(bodies)
    persons = max(len(slots), 1)
    camera = np.full((num_frames, persons, JOINTS, 3), np.nan, dtype=np.float32)
    color = np.full((num_frames, persons, JOINTS, 2), np.nan, dtype=np.float32)
    confidence = np.zeros((num_frames, persons, JOINTS), dtype=np.float32)
    for t, bodies in enumerate(frames):
        for slot, joints in bodies.items():
            camera[t, slot] = joints[:, 0:3]
            color[t, slot] = joints[:, 5:7]
            confidence[t, slot] = _CONFIDENCE_OF_STATE[np.clip(joints[:, 11].astype(int), 0, 2)]
    return NtuRecording(camera, color, confidence)


def _read_ntu(source: Path, space: str) -> SkeletonDataset:
    files = input_files(source, "*.skeleton", "NTU RGB+D .skeleton")
    label_names = label_names_beside(files[0].parent, "label_map_ntu60.txt", [f"A{i:03d}" for i in range(1, 121)])
    sequences = []
    for path in files:
        fields = name_fields(path, NAME_PATTERN, "NTU RGB+D")
        label = label_from_number(path, fields["A"], label_names)
        recording = read_ntu_recording(path)
        coords = recording.camera_xyz if space == "camera" else recording.color_xy
        sequences.append(
            SkeletonSequence(
                name=path.stem,
                coords=coords,
                confidence=recording.confidence,
                timestamps_ms=uniform_timestamps(len(coords), FPS),
                label=label,
                subject=fields["P"],
                view=fields["C"],
                image_size=(1920, 1080) if space == "image" else (0, 0),
            )
        )
    splits = {
        "cross-subject/train": [i for i, s in enumerate(sequences) if s.subject in TRAIN_SUBJECTS],
        "cross-subject/test": [i for i, s in enumerate(sequences) if s.subject not in TRAIN_SUBJECTS],
        "cross-view/train": [i for i, s in enumerate(sequences) if s.view in TRAIN_CAMERAS],
        "cross-view/test": [i for i, s in enumerate(sequences) if s.view not in TRAIN_CAMERAS],
    }
    return SkeletonDataset.from_sequences(
        sequences,
        layout="ntu25",
        coordinate_space=space,
        units="m" if space == "camera" else "px",
        fps=FPS,
        label_names=label_names,
        splits=splits,
        source=f"NTU RGB+D ({source}); {'3-D camera joints' if space == 'camera' else '2-D colour-image joints'}",
    )


def read_ntu(source: Path) -> SkeletonDataset:
    """3-D joints in the sensor's camera frame (metres)."""
    return _read_ntu(source, "camera")


def read_ntu_color(source: Path) -> SkeletonDataset:
    """2-D joints in the RGB video's pixels (for comparison with pose estimated from video)."""
    return _read_ntu(source, "image")
