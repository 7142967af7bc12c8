"""Admission to the pose workers by their measured load: an overloaded server serves the camera
streams it can in full, and turns the others away with a status that says so.

A live stream wants every frame its model's rate admits. When the streams on a pose worker want
more pose time than its core has, every lane drops its oldest frames (``service.lanes``) and the
streams degrade together: 8 real-time streams on 2 cores were each posed at 2.6 frames a second,
under the half-window presence a window needs, and not one of them got an event. So each stream's
**demand** is measured, in cores: its mean pose time a frame (decoding included) times the frames a
second that enter its lane, over the last ``MEASURE_S`` seconds. Then:

* **Admission.** A new live stream goes to the worker with the least demand, and is refused
  (RESOURCE_EXHAUSTED) when even that one would go over ``max_load`` cores with it. A worker with no
  live stream always takes one: a single camera is served as well as the core can.
* **Shedding.** A worker whose demand goes over ``SHED_FACTOR`` times ``max_load`` ends its newest
  live stream (RESOURCE_EXHAUSTED) once that one is measured, one at a time, and never its only
  live stream. That
  settles streams admitted together before any was measured (cameras reconnecting after a
  restart), and streams whose scenes got busier. The newest goes: the ones that were there first
  keep what they had.

A stream is measured once it has run for ``MEASURE_S``. Until then it counts as the typical demand
of the server's camera streams: the median of those measured now, or, when none of the open ones
is, the last such median (0 on a server that has measured none, which admits a first burst and
sheds what it cannot keep).
Lossless streams (files: ``lossless`` in the stream's configuration) count in their worker's
demand but are never shed and never refused: their caller asked for every frame and the server's
flow control paces them, so they finish, only later. Clip calls (``ClassifyClip``) are short and
bounded by their own slots; they are not counted.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque

from service.errors import Overloaded

# A stream's demand is measured over this long (and it is unmeasured for this long after it opens).
MEASURE_S = 3.0
# A worker sheds over this many times the admission limit: between the two, its streams lose a few
# frames to the lanes (a window needs half of them), and neither a new stream nor a shed one is due.
SHED_FACTOR = 1.5
# Weight of a new pose time in a stream's running mean (about the last ten frames).
COST_WEIGHT = 0.1


class PoseCapacityFull(Overloaded):
    """A live stream that no pose worker has room for."""


class StreamLoad:
    """One stream's demand on its pose worker: frames into its lane, and what each costs to pose."""

    def __init__(self, stream_id: str, live: bool, now: float | None = None) -> None:
        self.stream_id = stream_id
        self.live = live  # False: a lossless stream, never refused or shed
        self.opened = time.monotonic() if now is None else now
        self.shed = False  # chosen to be shed: no longer counted
        self._arrivals: deque[float] = deque()
        self._cost_s: float | None = None
        self._lock = threading.Lock()

    def frame_in(self, now: float | None = None) -> None:
        """A frame entered the stream's lane (whether it is posed or dropped later)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._arrivals.append(now)
            self._trim(now)

    def posed(self, seconds: float) -> None:
        """A frame of the stream was decoded and posed in ``seconds`` of its worker's time."""
        with self._lock:
            self._cost_s = seconds if self._cost_s is None else self._cost_s + COST_WEIGHT * (seconds - self._cost_s)

    def demand(self, now: float) -> float | None:
        """Cores wanted over the last ``MEASURE_S``; None until the stream has run that long and
        had a frame posed."""
        with self._lock:
            if now - self.opened < MEASURE_S or self._cost_s is None:
                return None
            self._trim(now)
            return len(self._arrivals) / MEASURE_S * self._cost_s

    def _trim(self, now: float) -> None:
        while self._arrivals and self._arrivals[0] < now - MEASURE_S:
            self._arrivals.popleft()


class Admission:
    """The admission and shedding rules over the workers' streams (``max_load`` 0: neither)."""

    def __init__(self, max_load: float) -> None:
        self.max_load = max_load
        self._last_measured = 0.0  # the last typical demand seen, for when no open stream is measured

    @property
    def enabled(self) -> bool:
        return self.max_load > 0

    def typical(self, loads: list[StreamLoad], now: float) -> float:
        """What a stream not yet measured counts as: the median measured demand of the open live
        streams (a lossless one takes whatever its core has spare, which says nothing of a camera's
        need), else the last such median."""
        measured = [d for d in (load.demand(now) for load in loads if load.live and not load.shed) if d is not None]
        if measured:
            self._last_measured = statistics.median(measured)
        return self._last_measured

    @staticmethod
    def demand(loads: list[StreamLoad], typical: float, now: float) -> float:
        """A worker's demand: its streams' measured demands, ``typical`` for those not measured yet."""
        total = 0.0
        for load in loads:
            if not load.shed:
                measured = load.demand(now)
                total += typical if measured is None else measured
        return total

    def fits(self, worker_loads: list[StreamLoad], typical: float, now: float) -> bool:
        """Whether a new live stream may join a worker with these streams."""
        if not self.enabled or not any(load.live and not load.shed for load in worker_loads):
            return True
        return self.demand(worker_loads, typical, now) + typical <= self.max_load

    def refusal(self, least_loaded: list[StreamLoad], typical: float, now: float) -> PoseCapacityFull:
        """The error of a live stream that fits on no worker (``least_loaded``: the streams of the one
        with the least demand)."""
        demand = self.demand(least_loaded, typical, now)
        return PoseCapacityFull(
            f"the server's pose workers are at capacity: the least loaded one is posing {demand:.2f} of a core and a"
            f" stream needs about {typical:.2f} more (the limit is {self.max_load:g}); try another replica or later"
        )

    def shed_error(self) -> Overloaded:
        """The error a shed stream ends with."""
        return Overloaded(
            f"the server ended this stream to keep its older streams served: their pose worker was asked for more than"
            f" {SHED_FACTOR * self.max_load:g} of its core, and this was the newest of its streams; try"
            " another replica or later"
        )

    def victim(self, worker_loads: list[StreamLoad], typical: float, now: float) -> StreamLoad | None:
        """The stream a worker over its shedding limit is to end now, or None."""
        if not self.enabled:
            return None
        live = [load for load in worker_loads if load.live and not load.shed]
        if len(live) < 2 or self.demand(worker_loads, typical, now) <= SHED_FACTOR * self.max_load:
            return None
        newest = max(live, key=lambda load: load.opened)
        # Not measured yet: it is still the one to go if its measure says so, not an older one.
        return newest if newest.demand(now) is not None else None
