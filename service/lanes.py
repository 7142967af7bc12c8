"""A stream's lane to the pose workers: a short queue, served one item at a time.

Pose work for one stream must run in order and never twice at once (its MediaPipe landmarker
keeps tracking state and wants increasing timestamps), while different streams should run in
parallel on all cores. So each stream has a lane: a bounded queue that, when it has work,
puts itself on a shared executor to run one item and then goes to the back of the line; N
worker threads thus serve all lanes round-robin, at most one worker per lane.

A turn runs up to ``turn`` items before the lane goes to the back of the line: switching a
worker between streams costs (each stream's landmarker has its own buffers, cold in the cache),
so under load a worker finishes what a stream has waiting, within a bound that keeps it fair.

When the lane is full, the oldest droppable item is dropped (the newest frames are the ones a
live recognizer wants) and ``on_drop`` hears about it, so the stream can count it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Lane(Generic[T]):
    def __init__(
        self,
        executor: Executor,
        process: Callable[[T], None],
        capacity: int,
        on_drop: Callable[[T, str], None],
        on_closed: Callable[[], None] = lambda: None,
        turn: int = 1,
    ) -> None:
        self._executor = executor
        self._process = process
        self._capacity = capacity
        self._on_drop = on_drop
        self._on_closed = on_closed
        self._turn = turn
        self._items: deque[tuple[T, bool]] = deque()  # (item, droppable)
        self._lock = threading.Lock()
        self._scheduled = False  # on the executor's queue or running
        self._closed = False
        self._released = False

    @property
    def pending(self) -> int:
        return len(self._items)

    @property
    def busy(self) -> bool:
        """Work queued or running."""
        return self._scheduled

    def put(self, item: T, droppable: bool = True) -> bool:
        """Queue ``item``; False when the lane is closed (the item is not taken)."""
        dropped = None
        with self._lock:
            if self._closed:
                return False
            if droppable and sum(1 for _, d in self._items if d) >= self._capacity:
                for i, (old, old_droppable) in enumerate(self._items):
                    if old_droppable:
                        del self._items[i]
                        dropped = old
                        break
            self._items.append((item, droppable))
            schedule = not self._scheduled
            self._scheduled = True
        if dropped is not None:
            self._on_drop(dropped, "queue_full")
        if schedule:
            self._submit()
        return True

    def close(self, reason: str) -> None:
        """Take no more items, drop the pending ones (telling ``on_drop`` with ``reason``), and call
        ``on_closed`` on the executor once no item is running any more."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dropped = [item for item, _ in self._items]
            self._items.clear()
            idle = not self._scheduled
        for item in dropped:
            self._on_drop(item, reason)
        if idle:
            # On the executor, not on the closing thread: that is gRPC's own when a client goes
            # away, and closing a stream's landmarker there would hold up every call's I/O.
            try:
                self._executor.submit(self._release)
            except RuntimeError:  # the executor is shut down: the server is stopping
                self._release()

    def _submit(self) -> None:
        try:
            self._executor.submit(self._run_turn)
        except RuntimeError:  # the executor is shut down: the server is stopping
            self.close("shutdown")
            with self._lock:
                self._scheduled = False
            self._release()

    def _run_turn(self) -> None:
        try:
            for _ in range(self._turn):
                with self._lock:
                    item = self._items.popleft()[0] if self._items and not self._closed else None
                if item is None:
                    break
                self._process(item)
        finally:
            # Even when ``process`` raised, the lane takes its next turn or is released: left
            # marked as running, it would never run again and its stream would hang.
            self._end_turn()

    def _end_turn(self) -> None:
        with self._lock:
            more = bool(self._items) and not self._closed
            self._scheduled = more
            release = self._closed and not more
        if more:
            self._submit()  # to the back of the line: the other lanes get their turn
        elif release:
            self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        try:
            self._on_closed()
        except BaseException as e:  # on the executor nobody reads the result: logged, not lost
            log.error("closing a lane failed", exc_info=e)
