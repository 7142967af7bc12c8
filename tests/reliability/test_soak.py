"""Soak: eight real-clip camera streams through a server process, in real time.

Short run 2 minutes, full run (``ACTIONREC_RELIABILITY=full``) 30 minutes. The eight open at once
on a server that has measured no stream yet, so it admits them all; those its pose workers cannot
keep are shed once measured, newest first, with RESOURCE_EXHAUSTED (``service.admission``), and the
others run to the end without error, with events. Every frame that entered must be accounted for
(processed, skipped by design, or dropped with a reason), and the server's resident memory may grow
by less than 5 % after the warm-up.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.loadgen import StreamResult, frame_stream, run_stream
from service.testing import VIDEOS, ServerProcess, encoded_frames
from skeleton.artifact import open_model
from tests.reliability.conftest import FULL

STREAMS = 8
SOAK_S = 1800.0 if FULL else 120.0
WARMUP_S = 60.0 if FULL else 30.0  # sessions, landmarkers, batch shapes and allocator pools settle
SAMPLE_S = 5.0


def test_eight_real_time_streams_run_without_error_loss_or_memory_growth(models_dir: Path, tmp_path: Path) -> None:
    frames = encoded_frames(VIDEOS / "arm_wrestling.mp4", 280)
    model_fps = open_model(models_dir / "sports2d.onnx")[0].window.fps  # the streams' model, the default
    results = [StreamResult() for _ in range(STREAMS)]
    with ServerProcess(models_dir, tmp_path) as server:
        threads = [
            threading.Thread(
                target=run_stream,
                args=(
                    server.address,
                    frame_stream(
                        frames,
                        pb.StreamConfig(stream_id=f"soak-{i}", max_people=2),
                        result,
                        realtime=True,
                        seconds=SOAK_S,
                    ),
                    result,
                ),
                kwargs={"deadline_s": SOAK_S + 300},
            )
            for i, result in enumerate(results)
        ]
        started, cpu_before = time.monotonic(), server.cpu_seconds()
        for thread in threads:
            thread.start()
        samples: list[tuple[float, float]] = []  # (seconds since start, RSS MiB) while the streams kept run
        while any(thread.is_alive() for thread in threads) and time.monotonic() - started < SOAK_S - SAMPLE_S:
            time.sleep(SAMPLE_S)
            samples.append((time.monotonic() - started, server.rss_mib()))
        for thread in threads:
            thread.join(SOAK_S + 300)
        assert server.process.poll() is None, "the server died during the soak"
        cores_used = (server.cpu_seconds() - cpu_before) / (time.monotonic() - started)
        assert 0 < cores_used <= len(os.sched_getaffinity(server.process.pid)) * 1.05  # CPU seconds, not ticks

    kept = [r for r in results if not r.error]
    shed = [r for r in results if r.error]
    assert kept, "no stream was kept"
    for result in shed:
        assert result.code == "RESOURCE_EXHAUSTED", result.error
        # Shed once measured; or, opened after another stream was measured, refused at once.
        assert "ended this stream to keep its older streams served" in result.error or (
            "pose workers are at capacity" in result.error and result.final is None
        ), result.error
    for result in results:
        final = result.final
        if final is None:  # refused before it was a stream
            continue
        assert final is not None and final.final  # a shed stream's statistics come before its status
        dropped = sum(final.frames_dropped.values())
        assert final.frames_processed + final.frames_skipped + dropped == final.frames_received
        assert set(final.frames_dropped) <= {"queue_full", "shed"}, dict(final.frames_dropped)  # never a failure
    for result in kept:
        final = result.final
        assert final.frames_received == result.sent  # nothing lost between client and server
        # The streams kept are served: posed at half the model's frame rate or more (a window needs
        # its person in half its samples), with events. (Before admission by pose load, eight
        # streams on an AVX2-only 2-core VM were each posed at 2.6 frames a second, and none got
        # an event.)
        assert final.frames_processed >= 0.5 * model_fps * SOAK_S and result.events > 0, final
    # Growth from the lowest point after the warm-up: the memory of the streams shed in the first
    # seconds may go back to the system only later (at 65 s of one 2-minute run: 888 MiB, then 605),
    # and a baseline taken before that would hide as much growth.
    after_warmup = min(rss for t, rss in samples if t >= WARMUP_S)
    at_end = samples[-1][1]
    growth = (at_end - after_warmup) / after_warmup
    finals = [r.final for r in results if r.final is not None]
    received = sum(final.frames_received for final in finals)
    dropped = sum(sum(final.frames_dropped.values()) for final in finals)
    print(
        f"soak: {STREAMS} streams x {SOAK_S:.0f} s; RSS {after_warmup:.0f} MiB at its lowest after {WARMUP_S:.0f} s,"
        f" {at_end:.0f} MiB at {samples[-1][0]:.0f} s ({growth:+.1%}); frames received {received}, dropped {dropped};"
        f" events {sum(r.events for r in results)}; streams kept {len(kept)}, shed {len(shed)};"
        f" the server used {cores_used:.2f} cores"
    )
    assert growth < 0.05
