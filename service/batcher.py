"""One batcher per model, shared by all streams: windows in, one onnxruntime call per batch.

The Triton dynamic-batcher idea in a few lines: a batch is run as soon as it is full
(``max_batch``) or its oldest window has waited ``max_delay_ms``, so a busy server runs big
batches (what a GPU needs) and an idle one adds at most the delay to an event's latency. With a
delay of 0 a batch is whatever queued while the model ran the previous one: no latency is added
when idle, and batches still grow with the load. The
queue is bounded: when it is full a window is refused at once (``Overloaded``), and the stream
counts it, rather than every stream's latency growing without limit.

Results are handed to the streams by a second thread, so that the model's thread goes straight
on to the next batch while the streams' Python work (events) runs beside it. Handing them over
on the model's thread when no window waits (one thread wake-up less an event) was measured with
two camera streams in real time, an event every model frame, four servers each way in A-B-B-A
order: latency over the event's own compute went 1.175x -> 1.15x at p50 and 1.50x -> 1.49x at
p99, within the noise of such runs, so the one way stays.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.errors import ModelFailed, Overloaded, Unavailable
from service.metrics import Metrics
from service.models import Classified, LoadedModel
from service.scheduling import become_io_thread

log = logging.getLogger(__name__)


@dataclass
class _Job:
    window: np.ndarray
    future: Future
    enqueued: float


class Batcher:
    def __init__(
        self,
        model: LoadedModel,
        max_batch: int = 16,
        max_delay_ms: float = 5.0,
        max_queue: int = 256,
        metrics: Metrics | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.model = model
        # Told (once, with the model's name) when the batcher stops on an internal error: the model
        # is lost for this process's life, which the server's health then says.
        self._on_failure = on_failure
        self.failed = False
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.max_queue = max_queue
        self._metrics = metrics
        self._queue: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._deliver = ThreadPoolExecutor(1, thread_name_prefix=f"deliver-{model.name}", initializer=become_io_thread)
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{model.name}", daemon=True)
        self._thread.start()

    def submit(self, window: np.ndarray) -> Future[Classified]:
        """A future for one prepared window (length, joints, dims); it fails with ``Overloaded``
        at once when the queue is full or the batcher is closed."""
        future: Future[Classified] = Future()
        with self._ready:
            if self.failed:
                future.set_exception(self._failure())
            elif self._closed:
                future.set_exception(Overloaded("the model's batcher is shut down"))
            elif len(self._queue) >= self.max_queue:
                future.set_exception(Overloaded(f"the queue in front of model {self.model.name} is full"))
            else:
                self._queue.append(_Job(window, future, time.monotonic()))
                self._ready.notify()
        return future

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def has_room(self) -> bool:
        """Whether a window submitted now would be queued (a hint: ``submit`` decides)."""
        return not self._closed and len(self._queue) < self.max_queue

    @property
    def is_full(self) -> bool:
        """Whether the queue is full for now, so that room comes as batches run (a closed
        batcher is not: it refuses every window for good, and nothing should wait for it)."""
        return not self._closed and len(self._queue) >= self.max_queue

    def close(self, timeout: float | None = 10.0) -> None:
        """Run what is queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(timeout)
        self._deliver.shutdown(wait=True)

    def _next_batch(self) -> list[_Job] | None:
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            # Wait for more windows until the batch is full or its oldest window is due.
            deadline = self._queue[0].enqueued + self.max_delay
            while len(self._queue) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._ready.wait(remaining)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _loop(self) -> None:
        in_hand: list[_Job] = []
        try:
            while (batch := self._next_batch()) is not None:
                in_hand = batch
                self._run(batch)
                in_hand = []
        except BaseException as e:
            # A bug here would otherwise leave every waiting window (and its stream or clip
            # call) waiting for good: the batcher closes, and what it holds fails.
            with self._ready:
                self._closed = self.failed = True
                in_hand += self._queue
                self._queue.clear()
            log.critical(
                "batcher stopped; its windows fail",
                exc_info=e,
                extra={"fields": {"model": self.model.name, "failed": len(in_hand)}},
            )
            self._fail(in_hand, self._failure())
            if self._on_failure is not None:
                self._on_failure(self.model.name)

    def _failure(self) -> Unavailable:
        return Unavailable(f"model {self.model.name} failed; reconnect (to another replica)")

    def _run(self, jobs: list[_Job]) -> None:
        started = time.monotonic()
        try:
            results = self.model.run(np.stack([job.window for job in jobs]))
        except Exception as e:  # a model failure fails these windows, not the service
            log.exception("batch failed", extra={"fields": {"model": self.model.name, "size": len(jobs)}})
            failed = ModelFailed(f"model {self.model.name} failed to classify ({type(e).__name__}; see the server log)")
            self._deliver.submit(self._fail, jobs, failed)
            return
        if self._metrics is not None:
            self._metrics.observe_batch(self.model.name, len(jobs), started - jobs[0].enqueued, started)
        self._deliver.submit(self._succeed, jobs, results)

    @staticmethod
    def _succeed(jobs: list[_Job], results: list[Classified]) -> None:
        for job, result in zip(jobs, results):
            job.future.set_result(result)

    @staticmethod
    def _fail(jobs: list[_Job], error: Exception) -> None:
        for job in jobs:
            job.future.set_exception(error)
