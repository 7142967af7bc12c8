"""A live stream on the model's time grid: which frames to pose, and per-person windows.

A model sees windows of ``length`` frames at ``fps``. A stream's frames arrive at the camera's
rate, with jitter and gaps, so two things happen on a grid of model frame times anchored at the
stream's first frame:

* ``FrameGate`` admits only the frame nearest each grid time; the others are never decoded or
  posed (skipped by design), which is why a camera at 30 fps costs a 15 fps model half its pose.
* ``StreamWindower`` reads each person's posed positions at the grid times by the shared
  ``skeleton.resample.resample`` (linear between the frames around it; missing across a gap
  longer than ``max_gap_ms``) and, every ``stride`` grid steps, hands out the last ``length``
  samples of every person present in enough of them, in the frame in which its last grid time
  passes (events keep pace with the stream; nothing waits for a person pose missed). A grid
  time a person was not seen at is read when they are seen again; a window handed out before
  that lacks it. A window whose newest sample was already in the person's last window says
  nothing new and is not handed out: a person who left, or is missed at the moment a window
  falls due, gets no stale copy of their last window.

Windows are in the model's layout and still unnormalised (NaN where a joint or the person is
missing); ``skeleton.windows.prepare_window`` turns them into model input.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from skeleton.pose.tracker import TRACKS_PER_PERSON
from skeleton.resample import resample
from skeleton.windows import MIN_WINDOW_PRESENCE, WindowSpec, fit_length

# Timestamps arrive in whole milliseconds, and most models' grid times do not (15 fps: every
# 66.67 ms), so a frame stamped 1333 ms is the frame of the grid time 1333.33 ms: a grid time
# within half a millisecond of a frame's timestamp is that frame's. Without this, the last grid
# time of a clip whose last frame was rounded down was never read, and a clip's window lost it.
TIMESTAMP_TOLERANCE_MS = 0.5


class FrameGate:
    """Admits the frames a model at ``fps`` needs: the one nearest each of its frame times.

    A frame is admitted when it is within half a source frame interval of the next due grid
    time (or past it). The source interval comes from ``source_fps`` when the caller gave it,
    else from the timestamps seen so far.
    """

    def __init__(self, fps: float, source_fps: float = 0.0) -> None:
        # Rates travel as float32 in the protocol (frame_rate_hint, ModelInfo.frame_rate): the gate
        # runs on those values, so a client's gate on what the server reports admits the same frames.
        fps, source_fps = float(np.float32(fps)), float(np.float32(source_fps))
        self.period = 1000.0 / fps
        self._interval = 1000.0 / source_fps if source_fps > 0 else None
        self._measure = source_fps <= 0
        self._due: float | None = None
        self._last: float | None = None

    def admit(self, timestamp_ms: float) -> bool:
        if self._last is not None and self._measure:
            step = timestamp_ms - self._last
            self._interval = step if self._interval is None else 0.9 * self._interval + 0.1 * step
        self._last = timestamp_ms
        if self._due is None:
            self._due = timestamp_ms + self.period
            return True
        slack = min(self._interval or 0.0, self.period) / 2
        if timestamp_ms + slack < self._due:
            return False
        self._due += (math.floor((timestamp_ms + slack - self._due) / self.period) + 1) * self.period
        return True


@dataclass(frozen=True)
class Window:
    """The last ``length`` grid samples of one person, cropped to the span they were seen in and
    brought back to ``length`` by ``fit_length`` (the person holds still before and after)."""

    track_id: int
    start_ms: float  # grid time of the first and last sample the person was seen in
    end_ms: float
    samples: np.ndarray  # (length, joints, dims), model layout, NaN where missing
    present: int  # grid samples the person was seen in


@dataclass
class _Track:
    last_time: float
    last_coords: np.ndarray  # (J, C)
    next_step: int  # the first grid step not yet read for this person
    samples: deque = field(default_factory=deque)  # (step, coords) of the grid steps the person was seen at
    emitted_step: int = -1  # the newest sample step of the last window handed out


class StreamWindower:
    def __init__(
        self,
        spec: WindowSpec,
        stride: int,
        max_gap_ms: float,
        min_presence: float = MIN_WINDOW_PRESENCE,
        max_people: int = 1,
    ) -> None:
        self.spec = spec
        self.stride = stride
        self.max_gap_ms = max_gap_ms
        self.min_samples = max(1, math.ceil(min_presence * spec.length))
        self.max_tracks = TRACKS_PER_PERSON * max(1, max_people)
        self.forgotten_tracks = 0  # tracks dropped over max_tracks before they were gone a window's span
        self.period = 1000.0 / spec.fps
        self._origin: float | None = None
        self._next_step = 0  # the first grid step not yet read
        self._tracks: dict[int, _Track] = {}  # least recently seen first

    @property
    def active_tracks(self) -> int:
        return len(self._tracks)

    def _time(self, step: int) -> float:
        return self._origin + step * self.period

    def add(self, timestamp_ms: float, people: dict[int, np.ndarray]) -> list[Window]:
        """One frame's people (track id -> (joints, dims) in the model's layout); returns the
        windows due by now. Timestamps must increase (the stream checks them)."""
        timestamp_ms = float(timestamp_ms)
        if self._origin is None:
            self._origin = timestamp_ms
        last_step = math.floor((timestamp_ms - self._origin + TIMESTAMP_TOLERANCE_MS) / self.period)
        # Windows still to come end at this frame's steps or later, so they hold no step before this.
        oldest_useful = self._next_step - self.spec.length + 1
        for track_id, coords in people.items():
            track = self._tracks.pop(track_id, None)
            if track is None:  # seen for the first time: only a grid time right at this frame is known
                track = _Track(timestamp_ms, coords, next_step=self._next_step)
            self._tracks[track_id] = track  # now the most recently seen
            self._read(track, timestamp_ms, coords, max(track.next_step, oldest_useful), last_step)
            track.last_time, track.last_coords, track.next_step = timestamp_ms, coords, last_step + 1
        self._limit_tracks(keep=len(people))
        windows: list[Window] = []
        for step in self._steps_between(self._next_step, last_step):
            if (step + 1) % self.stride == 0 and step + 1 >= self.spec.length:
                windows += self._windows_ending(int(step))
        self._next_step = max(self._next_step, last_step + 1)
        self._forget(last_step)
        return windows

    def _read(self, track: _Track, timestamp_ms: float, coords: np.ndarray, first: int, last: int) -> None:
        """The person's samples at grid steps ``first`` to ``last``, between their previous
        frame and this one. Steps are read per person, so a person missing from the frame in
        which a grid time passed is still read there, from the frames around it, when seen again
        within the gap that interpolation may bridge."""
        steps = self._steps_between(first, last)
        if not steps.size:
            return
        times = self._origin + steps * self.period
        times[np.abs(times - timestamp_ms) <= TIMESTAMP_TOLERANCE_MS] = timestamp_ms  # this frame's grid time
        if track.last_time == timestamp_ms:  # first seen in this frame: nothing to interpolate from
            values = np.where((times == timestamp_ms)[:, None, None], coords[None], np.nan)
        else:
            observed = np.stack([track.last_coords, coords])
            values = resample(observed, np.array([track.last_time, timestamp_ms]), times, self.max_gap_ms)
        for step, value in zip(steps, values):
            if np.isfinite(value).any():
                track.samples.append((int(step), value))

    def _steps_between(self, first: int, last: int) -> np.ndarray:
        """The grid steps from ``first`` to ``last``. After a long pause only two stretches can
        matter (windows still holding earlier samples, and steps near the new frame), so a
        timestamp far in the future costs no more than an ordinary frame."""
        count = last - first + 1
        reach = self.spec.length + math.ceil(self.max_gap_ms / self.period) + 1
        if count <= 2 * reach:
            return np.arange(first, last + 1)
        return np.concatenate([np.arange(first, first + reach), np.arange(last - reach + 1, last + 1)])

    def flush(self, min_samples: int | None = None) -> list[Window]:
        """At the end of a stream: one more window for each person seen since their last one (at
        least half a stride of new samples), and for a person who never had one, if they were seen
        in ``min_samples`` of it: by default the floor of every window, so that a stream makes no
        claim about someone glimpsed in a few frames as it ends. A clip's answer passes 1: a clip
        with no other window keeps its best."""
        floor = self.min_samples if min_samples is None else min_samples
        windows = []
        for track_id, track in self._tracks.items():
            if not track.samples:
                continue
            end = track.samples[-1][0]
            new = sum(1 for step, _ in track.samples if step > track.emitted_step)
            if new and (track.emitted_step < 0 or new >= max(1, self.stride // 2)):
                window = self._window(track_id, track, end, min_samples=1 if track.emitted_step >= 0 else floor)
                if window is not None:
                    windows.append(window)
        return windows

    def _windows_ending(self, step: int) -> list[Window]:
        windows = []
        for track_id, track in self._tracks.items():
            window = self._window(track_id, track, step, self.min_samples)
            if window is not None:
                windows.append(window)
        return windows

    def _window(self, track_id: int, track: _Track, end: int, min_samples: int) -> Window | None:
        first = end - self.spec.length + 1
        inside = [(step, coords) for step, coords in track.samples if first <= step <= end]
        # Nothing newer than the person's last window: it would be that window less its oldest
        # samples, handed out again for every grid step the person stays unseen.
        if len(inside) < min_samples or inside[-1][0] <= track.emitted_step:
            return None
        span_first, span_last = inside[0][0], inside[-1][0]
        samples = np.full((span_last - span_first + 1, self.spec.num_joints, self.spec.dims), np.nan, np.float32)
        for step, coords in inside:
            samples[step - span_first] = coords
        track.emitted_step = span_last
        return Window(
            track_id=track_id,
            start_ms=self._time(span_first),
            end_ms=self._time(span_last),
            samples=fit_length(samples, self.spec.length),
            present=len(inside),
        )

    def _limit_tracks(self, keep: int) -> None:
        """Forget the least recently seen tracks over ``max_tracks``, never one of the ``keep``
        seen in this frame (the most recent, at the end of the order)."""
        excess = len(self._tracks) - max(self.max_tracks, keep)
        if excess > 0:
            for track_id in list(self._tracks)[:excess]:
                del self._tracks[track_id]
            self.forgotten_tracks += excess

    def _forget(self, step: int) -> None:
        """Drop samples no future window can include, and people gone for a whole window."""
        oldest = step - self.spec.length + 1
        for track_id in list(self._tracks):
            track = self._tracks[track_id]
            while track.samples and track.samples[0][0] < oldest:
                track.samples.popleft()
            if not track.samples and track.last_time < self._time(oldest):
                del self._tracks[track_id]
