"""The pose workers: one thread per core, each pinned to its core, each serving its own streams.

MediaPipe does a frame's work on the landmarker's own threads, which are born with the CPU
affinity of the thread that creates them. So a stream's landmarker is created on its worker's
pinned thread, and that stream's frames are posed on that core from then on: no frame's work
hops between cores, and each core cycles through the buffers of its own streams only (measured
in benchmarks/service_figures.py: the unpinned shared pool lost about a tenth of the pose rate).
A new stream goes to the worker with the fewest streams.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def _pin(core: int) -> None:
    os.sched_setaffinity(0, {core})  # 0: the calling thread, and the threads it starts later


@dataclass
class PoseWorker:
    index: int
    core: int | None
    executor: ThreadPoolExecutor
    streams: int = 0

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on this worker's thread (so threads it starts are pinned too) and wait."""
        return self.executor.submit(function).result()


class PoseWorkers:
    def __init__(self, count: int, pin: bool = True) -> None:
        cores = sorted(os.sched_getaffinity(0))
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

    def assign(self) -> PoseWorker:
        """The worker with the fewest streams takes one more; give it back with ``release``."""
        with self._lock:
            worker = min(self.workers, key=lambda w: (w.streams, w.index))
            worker.streams += 1
            return worker

    def release(self, worker: PoseWorker) -> None:
        with self._lock:
            worker.streams -= 1

    def shutdown(self) -> None:
        # Turns still queued run (not cancelled): the lanes are closed by now, so a turn only
        # releases its lane, which closes its stream's or clip's landmarker and its worker share.
        for worker in self.workers:
            worker.executor.shutdown(wait=True, cancel_futures=False)
