"""Which threads the kernel favours: the compute threads (pose, the model) over the I/O ones.

Every frame or skeleton that arrives wakes a few Python threads (gRPC's handler, the stream's
reader, the thread handing results to the streams), and each wake-up may preempt whatever runs on
that core. On a machine with few cores that is MediaPipe's or the model's thread: measured on the
2-core development machine with four skeleton streams sent as fast as taken, the batcher's thread
was preempted about 4,000 times a second and spent 30 % of each onnxruntime call waiting for a
core, so the skeleton path ran at 0.67 of onnxruntime alone (0.63-0.72 over several runs).

So the service's I/O threads run ``IO_NICENESS`` steps below the process's priority: they still
run whenever a core is free, but they preempt the compute threads far less often (the batcher's
thread was preempted about 1,100 times a second in the same benchmark; in back-to-back runs the
skeleton path went from 573-617 to 715-757 windows/s, and the frame path lost nothing: measured
again with two camera streams as fast as taken, four runs each way in A-B-B-A order, 175.3 posed
frames/s with the I/O threads lowered against 175.2 with none lowered). Lowering a
thread's priority needs no privilege; raising it back does, and a thread starts with the priority
of the thread that starts it, so compute threads must be started by a thread that is not an I/O
thread (``service.workers`` starts the pose threads while the server loads).

An event's way out (the hand-over of results, the gRPC handler) crosses two lowered threads, so
lowering could add to events' latency when both cores are posing. Measured by leaving those two
at the process's priority and lowering only the readers of skeleton streams (two camera streams
in real time, an event every model frame, four servers each way in A-B-B-A order, twice): the
p99 of latency over the event's own pose + classify time went 1.50 -> 1.475 in one series and
1.49 -> 1.50 in the other, nothing to tell from noise, while the skeleton path lost 5.6 % (754
-> 712 windows/s, same order). So every I/O thread stays lowered.

Other processes' load does not starve the lowered threads into dropping frames: one real-time
stream (``arm_wrestling.mp4`` through ``actionrec client``) with five busy-looping processes at
the default priority on the 2-core machine, three runs each way alternating, posed all 150 frames
and dropped none both ways; event latency median 61-75 ms lowered against 63-65 ms not lowered,
worst 79-108 ms against 74-80 ms (with two such processes: 43-46 against 40-43, no drops).

``SCHED_BATCH`` for the I/O threads gave the same skeleton figure but cost the frame path 3 %:
probably because an I/O thread holding the GIL waited for a core while the pose threads
waited for the GIL (not measured).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

IO_NICENESS = 10
_LINUX = sys.platform.startswith("linux")
# The niceness of the thread that imported this module: the process's own, which compute threads keep.
_PROCESS_NICENESS = os.getpriority(os.PRIO_PROCESS, 0) if _LINUX else 0


def io_thread_niceness() -> int:
    """The niceness an I/O thread takes: ``IO_NICENESS`` steps below the process (at most 19)."""
    return min(19, _PROCESS_NICENESS + IO_NICENESS)


def become_io_thread() -> None:
    """Lower the calling thread's priority to ``io_thread_niceness()``. Linux only: elsewhere a
    thread has no priority of its own to set, and it is left as it is."""
    if not _LINUX:
        return
    try:
        # On Linux, PRIO_PROCESS with a thread's id sets that thread alone.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), io_thread_niceness())
    except OSError as e:  # already lower than that (started by an I/O thread): nothing to lower
        log.debug("I/O thread priority left as it is", extra={"fields": {"error": str(e)}})
