"""The service's I/O threads give way to its compute threads."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from service.scheduling import become_io_thread, io_thread_niceness
from service.workers import PoseWorkers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")


def niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(function):
    seen = []
    thread = threading.Thread(target=lambda: seen.append(function()))
    thread.start()
    thread.join()
    return seen[0]


def test_an_io_thread_lowers_its_own_priority_and_no_other_threads() -> None:
    before = niceness()

    def io_thread() -> int:
        become_io_thread()
        become_io_thread()  # twice is once
        return niceness()

    assert in_thread(io_thread) == io_thread_niceness() > before
    assert niceness() == before  # the calling thread is untouched


def test_pose_threads_keep_the_process_priority_when_a_stream_handler_uses_them_first() -> None:
    workers = PoseWorkers(2, pin=False)
    try:

        def handler() -> list[int]:
            become_io_thread()  # what a gRPC handler thread does
            return [worker.call(niceness) for worker in workers.workers]

        assert in_thread(handler) == [niceness(), niceness()]
    finally:
        workers.shutdown()
