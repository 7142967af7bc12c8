"""Admission to the pose workers by their measured load (service.admission): the rules on measured
streams, the workers that apply them, and a server that refuses and sheds camera streams."""

from __future__ import annotations

import itertools
import re
import threading
import time
from pathlib import Path

import pytest

from service.admission import MEASURE_S, SHED_FACTOR, Admission, PoseCapacityFull, StreamLoad
from service.config import ServerConfig
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.loadgen import StreamResult, paced, run_stream
from service.testing import BLANK, StillPerson, running_server, wait_until
from service.workers import PoseWorkers


def measured_load(demand: float, live: bool = True, age_s: float = 10.0, fps: float = 15.0) -> StreamLoad:
    """A stream opened ``age_s`` ago whose frames (``fps`` a second over the last MEASURE_S) each
    took the pose time that makes ``demand`` cores."""
    now = time.monotonic()
    load = StreamLoad("camera", live=live, now=now - age_s)
    for k in range(int(MEASURE_S * fps)):
        load.frame_in(now - MEASURE_S + (k + 0.5) / fps)
    load.posed(demand / fps)
    return load


def test_a_streams_demand_is_its_frame_rate_times_its_pose_time_once_measured() -> None:
    load = StreamLoad("camera", live=True, now=0.0)
    for k in range(60):  # 15 frames a second for 4 s, each posed in 50 ms
        load.frame_in(k / 15)
        load.posed(0.05)
    assert load.demand(MEASURE_S - 0.1) is None  # too young to say
    assert load.demand(4.0) == pytest.approx(15 * 0.05, rel=0.05)
    assert load.demand(4.0 + MEASURE_S + 1) == 0.0  # a camera that stopped sending wants nothing
    unposed = StreamLoad("camera", live=True, now=0.0)
    unposed.frame_in(1.0)
    assert unposed.demand(10.0) is None  # no pose time seen yet


def test_a_new_stream_fits_beside_measured_streams_only_within_the_limit() -> None:
    admission, now = Admission(0.9), time.monotonic()
    light, heavy = [measured_load(0.3)], [measured_load(0.75)]
    assert admission.fits(light, 0.3, now) and not admission.fits(heavy, 0.75, now)
    # A worker without a live stream takes one, whatever it is doing: a lossless file is paced.
    assert admission.fits([measured_load(3.0, live=False)], 3.0, now)
    assert Admission(0.0).fits(heavy * 4, 0.75, now)  # 0: admission off
    # A stream not yet measured counts as the typical one.
    young = [measured_load(0.75, age_s=1.0)]
    assert admission.demand(young, 0.5, now) == 0.5 and admission.fits(young, 0.4, now)


def test_an_overloaded_worker_sheds_its_newest_measured_live_stream_never_its_only_one() -> None:
    admission, now = Admission(0.9), time.monotonic()
    oldest, middle, newest = measured_load(0.6, age_s=30), measured_load(0.6, age_s=20), measured_load(0.6, age_s=10)
    assert admission.victim([oldest, middle, newest], 0.6, now) is newest
    assert admission.victim([oldest, middle], 0.6, now) is None  # 1.2 is under 1.5 x 0.9
    # The newest goes once it is measured: not an older one in its place meanwhile.
    young = measured_load(0.6, age_s=1.0)
    assert admission.victim([oldest, middle, newest, young], 0.6, now) is None
    # Its only live stream stays, however heavy; lossless streams count but never go.
    file = measured_load(2.0, live=False, age_s=5.0)
    assert admission.victim([oldest, file], 0.6, now) is None
    assert admission.victim([oldest, middle, file], 0.6, now) is middle
    assert SHED_FACTOR > 1  # shedding starts above the admission limit, so the two do not flap


def test_workers_place_streams_by_demand_and_refuse_a_live_one_that_fits_nowhere() -> None:
    workers = PoseWorkers(2, pin=False, admission=Admission(0.9))
    try:
        busy, light = measured_load(0.7), measured_load(0.2)
        first = workers.assign(busy)
        second = workers.assign(light)
        assert first is not second  # the empty worker first
        # The lighter one; it fits there (0.2 + 0.45), where it would not beside the busy one (0.7 + 0.45).
        assert workers.assign(measured_load(0.45)) is second
        assert workers.demand(first) == pytest.approx(0.7, rel=0.05)
        # A new stream counts as the median measured one (0.45): it fits on neither.
        refused = "at capacity: the least loaded one is posing 0.65 of a core and a stream needs about 0.45 more"
        with pytest.raises(PoseCapacityFull, match=refused):
            workers.assign(StreamLoad("late", live=True))
        # A lossless stream (a file) is never refused: it is paced, not dropped.
        file = StreamLoad("file", live=False)
        assert workers.assign(file) in (first, second)
        # A clip call takes a worker without a load.
        assert workers.assign() in (first, second)
        workers.release(first, busy)
        assert workers.demand(first) < 0.7
    finally:
        workers.shutdown()


# ---------------------------------------------------------------- a server with slow pose


@pytest.fixture
def config(models_dir: Path, tmp_path: Path) -> ServerConfig:
    """One unpinned pose worker, admitting up to 0.9 of its core."""
    return ServerConfig(
        models_dir=models_dir, actions_file=tmp_path / "actions.json", workers=1, pin_workers=False, max_pose_load=0.9
    )


FPS = 15.0


def _camera(config: pb.StreamConfig, seconds: float, result: StreamResult, stop: threading.Event | None = None):
    """A camera's frames in real time at FPS (``service.loadgen.paced``), for ``seconds`` or until ``stop``."""
    times = [round(k * 1000 / FPS) for k in range(int(seconds * FPS))]
    frames = (pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=t, raw=BLANK)) for t in times)
    if stop is not None:
        frames = itertools.takewhile(lambda _: not stop.is_set(), frames)
    return paced(frames, times, True, result, pb.StreamFramesRequest(config=config))


class _Stream:
    """A camera stream in its own thread (``service.loadgen.run_stream``): its result, and when it ended."""

    def __init__(self, address: str, stream_id: str, seconds: float, stop: threading.Event | None = None) -> None:
        self.result = StreamResult()
        self.ended = 0.0  # time.monotonic() of its status
        requests = _camera(pb.StreamConfig(stream_id=stream_id, frame_rate_hint=FPS), seconds, self.result, stop)
        self._thread = threading.Thread(target=self._run, args=(address, requests))
        self._thread.start()

    def _run(self, address: str, requests) -> None:
        run_stream(address, requests, self.result, deadline_s=60)
        self.ended = time.monotonic()

    def join(self) -> None:
        self._thread.join(90)


def _metric(server, name: str) -> float:
    return server.metrics.registry.get_sample_value(name) or 0.0


def test_a_server_refuses_a_camera_its_pose_worker_has_no_room_for_and_serves_it_later(config: ServerConfig) -> None:
    """One pose worker at 50 ms a frame: a 15 fps camera wants 0.75 of its core, so a second one
    (1.5 with it) is refused with RESOURCE_EXHAUSTED while the first runs, and admitted after."""
    with running_server(config, lambda max_people: StillPerson(0.05)) as server:
        address = f"127.0.0.1:{server.port}"
        stop = threading.Event()
        workers = server.runtime.pose_workers
        (worker,) = workers.workers
        first = _Stream(address, "first", 30.0, stop)
        assert wait_until(lambda: workers.demand(worker) > 0.5, MEASURE_S + 10)  # measured
        second = _Stream(address, "second", 2.0)
        second.join()
        assert second.result.code == "RESOURCE_EXHAUSTED" and second.result.final is None
        refused = second.result.error
        posing = re.search(r"pose workers are at capacity: the least loaded one is posing ([0-9.]+) of", refused)
        assert posing and 0.6 <= float(posing.group(1)) < 1.35, second.result.error  # 50 ms x 15, and decoding
        assert _metric(server, "actionrec_streams_refused_total") == 1
        stop.set()
        first.join()
        assert not first.result.error and first.result.events > 0
        assert not first.result.final.frames_dropped  # the admitted camera lost nothing to the refused one
        assert wait_until(lambda: not worker.loads)  # its lane released
        third = _Stream(address, "third", 2.0)
        third.join()
        assert not third.result.error and third.result.final is not None


def test_cameras_admitted_together_beyond_capacity_are_shed_newest_first(config: ServerConfig) -> None:
    """Three cameras open at once on a server that has measured none (so all are admitted), each
    wanting 0.75 of the one worker's core: once measured, the newest ones are ended with
    RESOURCE_EXHAUSTED until the worker is within 1.5 x its limit, and the first keeps streaming."""
    with running_server(config, lambda max_people: StillPerson(0.05)) as server:
        address = f"127.0.0.1:{server.port}"
        streams = []
        for name in ("a", "b", "c"):
            streams.append(_Stream(address, name, 10.0))
            time.sleep(0.2)  # in this order
        for stream in streams:
            stream.join()
        first, *later = streams
        assert not first.result.error and first.result.events > 0
        # 0.75 + 0.75 is over 1.35: both later cameras go, newest first.
        assert later[1].ended < later[0].ended
        for stream in later:
            assert stream.result.code == "RESOURCE_EXHAUSTED", stream.result.error
            assert "ended this stream to keep its older streams served" in stream.result.error
            # Its final statistics came before the status: every frame it sent is accounted for.
            final = stream.result.final
            assert final.frames_pending == 0 and set(final.frames_dropped) <= {"queue_full", "shed"}
            dropped = sum(final.frames_dropped.values())
            assert final.frames_received == final.frames_processed + final.frames_skipped + dropped
        assert _metric(server, "actionrec_streams_shed_total") == 2
