"""The pose workers: one thread per core, each pinned to its core, each serving its own streams.

MediaPipe does a frame's work on the landmarker's own threads, which are born with the CPU
affinity of the thread that creates them. So a stream's landmarker is created on its worker's
pinned thread, and that stream's frames are posed on that core from then on: no frame's work
hops between cores, and each core cycles through the buffers of its own streams only (measured
in benchmarks/service_figures.py: the unpinned shared pool lost about a tenth of the pose rate).
A new stream goes to the worker whose streams want the least pose time (``service.admission``,
which also decides whether a camera stream is admitted at all, and which one a worker over
capacity sheds); between equals, to the one with the fewest streams.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from service.admission import Admission, StreamLoad

T = TypeVar("T")


def _pin(core: int) -> None:
    os.sched_setaffinity(0, {core})  # 0: the calling thread, and the threads it starts later


@dataclass
class PoseWorker:
    index: int
    core: int | None
    executor: ThreadPoolExecutor
    streams: int = 0  # streams and clip calls
    loads: list[StreamLoad] = field(default_factory=list)  # its streams' demands, in the order they came

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on this worker's thread (so threads it starts are pinned too) and wait."""
        return self.executor.submit(function).result()


class PoseWorkers:
    def __init__(self, count: int, pin: bool = True, admission: Admission | None = None) -> None:
        cores = sorted(os.sched_getaffinity(0))
        self.admission = admission or Admission(0.0)
        self._lock = threading.Lock()
        self.workers = []
        for i in range(count):
            core = cores[i % len(cores)] if pin else None
            executor = ThreadPoolExecutor(
                1, thread_name_prefix=f"pose{i}", initializer=_pin if pin else None, initargs=(core,) if pin else ()
            )
            # Start the thread now, from this (the loading) thread: a thread started later by a
            # stream's handler would inherit that I/O thread's lower priority (service.scheduling).
            executor.submit(lambda: None).result()
            self.workers.append(PoseWorker(i, core, executor))

    def assign(self, load: StreamLoad | None = None) -> PoseWorker:
        """The worker whose streams want the least pose time takes one more stream (its ``load``)
        or clip call (no load); give it back with ``release``. Raises Overloaded for a live stream
        that no worker has room for (``service.admission``)."""
        with self._lock:
            now = time.monotonic()
            typical = self._typical(now)
            ranked = sorted(
                self.workers, key=lambda w: (self.admission.demand(w.loads, typical, now), w.streams, w.index)
            )
            worker = ranked[0]
            if load is not None and load.live:
                worker = next((w for w in ranked if self.admission.fits(w.loads, typical, now)), None)
                if worker is None:
                    raise self.admission.refusal(ranked[0].loads, typical, now)
            if load is not None:
                worker.loads.append(load)
            worker.streams += 1
            return worker

    def release(self, worker: PoseWorker, load: StreamLoad | None = None) -> None:
        with self._lock:
            worker.streams -= 1
            if load is not None:
                worker.loads.remove(load)

    def take_shed(self, worker: PoseWorker, load: StreamLoad) -> bool:
        """True when the stream of ``load`` is the one its worker, over capacity, ends now: it is
        then no longer counted. Asked by each camera stream after its frames, so that a stream ends
        on its own turn."""
        if not self.admission.enabled:
            return False
        with self._lock:
            now = time.monotonic()
            if self.admission.victim(worker.loads, self._typical(now), now) is not load:
                return False
            load.shed = True
            return True

    def demand(self, worker: PoseWorker) -> float:
        """Cores the worker's streams want now (those not yet measured at the typical demand)."""
        with self._lock:
            now = time.monotonic()
            return self.admission.demand(worker.loads, self._typical(now), now)

    def _typical(self, now: float) -> float:
        return self.admission.typical([load for worker in self.workers for load in worker.loads], now)

    def shutdown(self) -> None:
        # Turns still queued run (not cancelled): the lanes are closed by now, so a turn only
        # releases its lane, which closes its stream's or clip's landmarker and its worker share.
        for worker in self.workers:
            worker.executor.shutdown(wait=True, cancel_futures=False)
