"""The client's annotated video: each person's skeleton and their latest label, drawn on the frame."""

from __future__ import annotations

import tempfile
import threading
import time
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
# Bytes of frames held for their poses at most (43 frames of 1080p): 120 frames of it would be 750 MB.
MAX_BUFFERED_BYTES = 256 << 20
# Bytes of frames ready and not yet encoded at most: past it the sender waits for the video writer.
MAX_UNWRITTEN_BYTES = 64 << 20
# The video plays in real time: a frame is placed by its timestamp at the writer's frame rate, within
# a frame either way (a camera is never exactly at its declared rate, and its timestamps wobble by a
# few ms: without the slack, one running at 29.97 for 30 would judder, a frame shown twice and the
# next left out, for much of the time). Further behind, the last frame is shown again until it (a
# camera slower than it declares, a stream that stalls); further ahead, the frame is left out (one
# faster than it declares). A gap longer than this (a stream stalled for minutes, a reconnect's
# wait) is cut to it, so that an hour without frames is not an hour of one picture. A file's frames
# are timed by their index at its own rate: each has a slot of its own.
MAX_HOLD_S = 10.0


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
    """Writes the frames the client read, each with the people posed at or before its time, in
    real time at ``fps`` (each frame at its timestamp's place: ``MAX_HOLD_S``).

    A frame waits until the server has posed a frame at or after its own (the server poses only
    the frames its model needs), so every written frame shows the newest pose known for it. The
    wait is bounded, in frames and in bytes (a 1080p frame is 6 MB): past the bound, the sender
    waits up to ``patience_s`` for poses (a file loses nothing by waiting; a ``live`` one's does not wait), and
    if none come, the oldest frames are written with the poses known so far, with no more waiting
    until poses come again: the client's memory does not grow with every frame read from a server
    that answers late or not at all.

    gRPC's sending thread adds frames; the main thread, which reads the responses, adds poses and
    labels. Both only pair them up, under one lock. Drawing and encoding the video happen in a
    thread of their own, so that a late server's burst of answers does not hold up the events
    printed; a file's sender waits for that thread only while more than ``MAX_UNWRITTEN_BYTES`` are
    queued for it, a live one's never (at most ``MAX_BUFFERED_BYTES`` + ``MAX_UNWRITTEN_BYTES`` are held in all).
    ``stop_waiting`` ends the sender's waits when its stream ends. A video that cannot be
    written is raised by the next call (and by ``close`` if no call raised it).
    """

    def __init__(
        self, path: Path, fps: float, max_buffered: int = 120, patience_s: float = 0.0, live: bool = False
    ) -> None:
        self.path = Path(path)
        check_output(self.path)
        self.fps = fps if fps > 0 else 30.0
        self.max_buffered = max_buffered
        self.patience_s = patience_s
        # A camera's sender never waits for the writer: a frame released while the writer is over
        # MAX_UNWRITTEN_BYTES behind is not drawn (its moment shows the frame before it), where a
        # file's sender waits, losing nothing.
        self.live = live
        self._changed = threading.Condition()
        self._waiting: deque[tuple[int, np.ndarray]] = deque()  # frames without their poses yet
        self._to_write: deque[tuple[int, np.ndarray, list, dict[int, str]]] = deque()  # frames with what to draw
        self._waiting_bytes = 0
        self._unwritten_bytes = 0  # of the frames to write
        self._people: list = []
        self._pending_people: deque[tuple[int, list]] = deque()
        self._labels: dict[int, str] = {}
        self._closing = False
        self._starved = False  # the last wait for poses ran out: no more waiting until some come
        self._stop_waiting = False  # the sender's stream is ending: it waits for nothing
        self._failure: Exception | None = None
        self._failure_raised = False
        self._writer: cv2.VideoWriter | None = None
        self._size = (0, 0)  # (width, height) the writer was opened at, by the first frame
        self._first_ms: int | None = None  # the first frame's timestamp: the video's time 0
        self._next_slot = 0  # the video frame the next one written fills
        self._last_drawn: np.ndarray | None = None  # shown again over a gap in the source's frames
        self.written = 0  # video frames, repeats included
        self.repeated = 0  # video frames that show the frame before them again (the source was slower)
        self.left_out = 0  # frames whose moment already had a frame (the source was faster)
        self.writer_behind = 0  # a live source's frames not drawn: the writer was too far behind
        self._undrawn_ms: int | None = None  # the last of them: the video is held through its moment
        self.cut_s = 0.0  # time without frames beyond MAX_HOLD_S a gap, not in the video
        self._thread = threading.Thread(target=self._write_frames, name="annotator", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> tuple[int, int]:
        """Frames held (waiting for their poses, or to be written), and their bytes."""
        with self._changed:
            return len(self._waiting) + len(self._to_write), self._waiting_bytes + self._unwritten_bytes

    def add_frame(self, timestamp_ms: int, bgr: np.ndarray) -> None:
        with self._changed:
            self._raise_failure()
            if self._closing or self._failure is not None:  # the video is finished, or will not be
                return
            self._waiting.append((timestamp_ms, bgr))
            self._waiting_bytes += bgr.nbytes
            patient_until = time.monotonic() + (0.0 if self.live else self.patience_s)
            while (
                self._failure is None
                and len(self._waiting) > 1
                and (len(self._waiting) > self.max_buffered or self._waiting_bytes > MAX_BUFFERED_BYTES)
            ):
                patience = patient_until - time.monotonic()
                if patience > 0 and not (self._starved or self._stop_waiting):
                    self._changed.wait(patience)  # poses coming in release frames meanwhile
                else:
                    if patience <= 0:  # none came: the next frames go as they are until poses come again
                        self._starved = True
                    self._release_next()
            while (
                not self.live
                and self._failure is None
                and not self._stop_waiting
                and self._unwritten_bytes > MAX_UNWRITTEN_BYTES
            ):
                self._changed.wait()
            self._raise_failure()

    def stop_waiting(self) -> None:
        """The sender's stream is ending: a wait in ``add_frame`` ends now, and no other begins
        until ``new_stream``."""
        with self._changed:
            self._stop_waiting = True
            self._changed.notify_all()

    def set_label(self, track_id: int, text: str) -> None:
        """The label drawn over person ``track_id`` from the next frame released on."""
        with self._changed:
            self._raise_failure()
            self._labels[track_id] = text

    def add_poses(self, timestamp_ms: int, people: list) -> None:
        with self._changed:
            self._raise_failure()
            self._pending_people.append((timestamp_ms, people))
            self._starved = False
            while self._waiting and self._waiting[0][0] <= timestamp_ms:
                self._release_next()

    def new_stream(self) -> None:
        """The frames so far are drawn with what their stream said; a new stream's people are
        numbered afresh, so no label or skeleton of the last one is carried onto its frames."""
        with self._changed:
            self._raise_failure()
            while self._waiting:
                self._release_next()
            self._people, self._labels = [], {}
            self._pending_people.clear()
            self._starved = self._stop_waiting = False

    def close(self) -> None:
        """Write every frame held, finish the video; a failure no call has raised yet is raised."""
        with self._changed:
            while self._waiting:
                self._release_next()
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        if self._writer is not None:
            if self._undrawn_ms is not None and self._failure is None:  # the last frames were not drawn
                self._hold_through(self._slot(self._undrawn_ms))
            self._writer.release()
        with self._changed:
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None and not self._failure_raised:
            self._failure_raised = True
            raise self._failure

    def _release_next(self) -> None:
        """The oldest waiting frame, with the newest poses at or before it, goes to be written."""
        timestamp_ms, bgr = self._waiting.popleft()
        self._waiting_bytes -= bgr.nbytes
        while self._pending_people and self._pending_people[0][0] <= timestamp_ms:
            self._people = self._pending_people.popleft()[1]
        if self._failure is not None:  # nothing more is written
            return
        if self.live and self._unwritten_bytes > MAX_UNWRITTEN_BYTES:
            self.writer_behind += 1
            self._undrawn_ms = timestamp_ms
            return
        self._to_write.append((timestamp_ms, bgr, self._people, dict(self._labels)))
        self._unwritten_bytes += bgr.nbytes
        self._changed.notify_all()

    def _write_frames(self) -> None:
        while True:
            with self._changed:
                while not self._to_write and not self._closing:
                    self._changed.wait()
                if not self._to_write:
                    return
                timestamp_ms, bgr, people, labels = self._to_write[0]
            try:
                self._write(timestamp_ms, bgr, people, labels)
            except Exception as e:  # noqa: BLE001 - told to the client by its next call
                failure = e
            else:
                failure = None
            with self._changed:
                self._to_write.popleft()
                self._unwritten_bytes -= bgr.nbytes
                if failure is not None:
                    self._failure = failure
                    self._unwritten_bytes = 0
                    self._to_write.clear()
                self._changed.notify_all()

    def _hold_through(self, last_slot: int) -> None:
        """The last frame drawn, shown again in every video frame up to ``last_slot`` (at most
        MAX_HOLD_S of them: the rest of the gap is cut)."""
        gap = last_slot + 1 - self._next_slot
        if self._last_drawn is None or gap <= 0:
            return
        held = min(gap, round(MAX_HOLD_S * self.fps))
        for _ in range(held):
            self._writer.write(self._last_drawn)
        self.written += held
        self.repeated += held
        self.cut_s += (gap - held) / self.fps
        self._next_slot += gap

    def _slot(self, timestamp_ms: int) -> int:
        """The video frame a source frame of this timestamp belongs in."""
        if self._first_ms is None:
            self._first_ms = timestamp_ms
        return round((timestamp_ms - self._first_ms) * self.fps / 1000.0)

    def _write(self, timestamp_ms: int, bgr: np.ndarray, people: list, labels: dict[int, str]) -> None:
        slot = self._slot(timestamp_ms)
        if slot < self._next_slot - 1:  # over a frame ahead of its time: its moment has a frame
            self.left_out += 1
            return
        self._hold_through(slot - 2)  # over a frame behind: the last frame fills the gap, but for a frame
        if self._writer is None:
            size = (bgr.shape[1], bgr.shape[0])
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not writer.isOpened():
                raise InputError(f"{self.path}: cannot write a video there")
            self._writer = writer
            self._size = size
        frame = bgr.copy()
        draw_people(frame, people, labels)
        if (frame.shape[1], frame.shape[0]) != self._size:
            # A camera that changes resolution mid-stream: the writer takes only its first size and
            # would drop the others without a word, so they are drawn as they came, then scaled to it.
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self._last_drawn = frame
        self._next_slot += 1
        self.written += 1
