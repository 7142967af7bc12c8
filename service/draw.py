"""The client's annotated video: each person's skeleton and their latest label, drawn on the frame."""

from __future__ import annotations

import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from skeleton.errors import InputError
from skeleton.layouts import get_layout

_LAYOUT = get_layout("mediapipe33")
_BONES = [(_LAYOUT.index(child), _LAYOUT.index(parent)) for child, parent in _LAYOUT.bones]
_NOSE = _LAYOUT.index("nose")
_PALETTE = [(66, 135, 245), (245, 166, 35), (80, 200, 120), (220, 80, 200), (60, 200, 220), (200, 60, 60)]
# Containers OpenCV's writer puts MPEG-4 video in; given another name (.txt, .webm) it opens nothing and says nothing.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
# Frames held for their poses at most: 4 s of 30 fps 1080p frames would be 750 MB.
MAX_BUFFERED_BYTES = 256 << 20


def check_output(path: Path) -> None:
    """An InputError unless a video can be written at ``path``. The writer opens at the first
    frame, mid-stream, and reports a failure only by not opening: this says so before."""
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file name")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{path}: not a video file name (end it in {', '.join(VIDEO_SUFFIXES)})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError:
        raise InputError(f"{path}: cannot write a file in {path.parent}") from None


@dataclass(frozen=True)
class Style:
    """Line widths and text size for a frame: those of a 720-line frame, scaled with its size,
    so that labels stay readable on a 4K camera and do not cover a small one."""

    font_scale: float
    thickness: int
    radius: int

    @classmethod
    def for_frame(cls, shape: tuple[int, ...]) -> Style:
        k = max(0.5, min(shape[0], shape[1]) / 720)
        return cls(font_scale=0.6 * k, thickness=max(1, round(2 * k)), radius=max(2, round(3 * k)))


_FONT = cv2.FONT_HERSHEY_SIMPLEX


def label_origin(text: str, anchor: tuple[int, int], shape: tuple[int, ...], style: Style) -> tuple[int, int]:
    """Where ``text`` starts (its baseline's left end): centred above ``anchor`` (the head), and
    moved inside the frame when that would cut it off (a person at the edge)."""
    (width, height), baseline = cv2.getTextSize(text, _FONT, style.font_scale, style.thickness + 2)
    x = min(max(0, anchor[0] - width // 2), max(0, shape[1] - width))
    y = min(max(height + 1, anchor[1] - round(2 * height)), max(height + 1, shape[0] - baseline - 1))
    return x, y


def draw_people(bgr: np.ndarray, people: list[tuple[int, np.ndarray, np.ndarray]], labels: dict[int, str]) -> None:
    """Draw (track id, (33, 2) pixels, (33,) visibility) people and their labels onto ``bgr``."""
    style = Style.for_frame(bgr.shape)
    for track_id, xy, visibility in people:
        colour = _PALETTE[track_id % len(_PALETTE)]
        points = [tuple(int(v) for v in p) for p in np.round(xy)]
        for a, b in _BONES:
            if min(visibility[a], visibility[b]) >= 0.3:
                cv2.line(bgr, points[a], points[b], colour, style.thickness, cv2.LINE_AA)
        for point, seen in zip(points, visibility):
            if seen >= 0.3:
                cv2.circle(bgr, point, style.radius, colour, -1, cv2.LINE_AA)
        text = f"#{track_id} {labels.get(track_id, '')}".strip()
        origin = label_origin(text, points[_NOSE], bgr.shape, style)
        cv2.putText(bgr, text, origin, _FONT, style.font_scale, (0, 0, 0), style.thickness + 2, cv2.LINE_AA)
        cv2.putText(bgr, text, origin, _FONT, style.font_scale, colour, style.thickness, cv2.LINE_AA)


class Annotator:
    """Writes the frames the client sent, each with the people posed at or before its time.

    Frames wait until the server has posed a frame at or after theirs (it poses only the frames
    its model needs), so every written frame shows the newest pose known for it. The wait is
    bounded, in frames and in bytes (a 1080p frame is 6 MB): a server that answers late or not
    at all gets its frames written with the poses known so far, instead of the client's memory
    growing with every frame read. The sending thread adds frames while the responses' thread
    adds poses and labels, so every method holds one lock.
    """

    def __init__(self, path: Path, fps: float, max_buffered: int = 120) -> None:
        self.path = Path(path)
        check_output(self.path)
        self.fps = fps if fps > 0 else 30.0
        self.max_buffered = max_buffered
        self._lock = threading.Lock()
        self._writer: cv2.VideoWriter | None = None
        self._frames: deque[tuple[int, np.ndarray]] = deque()
        self._buffered_bytes = 0
        self._people: list = []
        self._pending_people: deque[tuple[int, list]] = deque()
        self._labels: dict[int, str] = {}
        self._closed = False
        self.written = 0

    @property
    def buffered(self) -> tuple[int, int]:
        """Frames waiting for their poses, and their bytes."""
        with self._lock:
            return len(self._frames), self._buffered_bytes

    def add_frame(self, timestamp_ms: int, bgr: np.ndarray) -> None:
        with self._lock:
            if self._closed:  # a sender still reading as the run ended: the video is finished
                return
            self._frames.append((timestamp_ms, bgr))
            self._buffered_bytes += bgr.nbytes
            while len(self._frames) > self.max_buffered or (
                self._buffered_bytes > MAX_BUFFERED_BYTES and len(self._frames) > 1
            ):
                self._write_next()

    def set_label(self, track_id: int, text: str) -> None:
        """The label drawn over person ``track_id`` from the next frame written on."""
        with self._lock:
            self._labels[track_id] = text

    def new_stream(self) -> None:
        """The frames so far are drawn with what their stream said; a new stream's people are
        numbered afresh, so no label or skeleton of the last one is carried onto its frames."""
        with self._lock:
            while self._frames:
                self._write_next()
            self._people, self._labels = [], {}
            self._pending_people.clear()

    def add_poses(self, timestamp_ms: int, people: list) -> None:
        with self._lock:
            self._pending_people.append((timestamp_ms, people))
            while self._frames and self._frames[0][0] <= timestamp_ms:
                self._write_next()

    def _write_next(self) -> None:
        timestamp_ms, bgr = self._frames.popleft()
        self._buffered_bytes -= bgr.nbytes
        while self._pending_people and self._pending_people[0][0] <= timestamp_ms:
            self._people = self._pending_people.popleft()[1]
        if self._writer is None:
            size = (bgr.shape[1], bgr.shape[0])
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not writer.isOpened():
                raise InputError(f"{self.path}: cannot write a video there")
            self._writer = writer
        frame = bgr.copy()
        draw_people(frame, self._people, self._labels)
        self._writer.write(frame)
        self.written += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            while self._frames:
                self._write_next()
            if self._writer is not None:
                self._writer.release()
