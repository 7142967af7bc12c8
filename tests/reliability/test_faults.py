"""Faults: a stream's pose estimator failing mid-stream, models missing or corrupt at start-up,
a damaged enrolled-actions file, and clients that vanish at any point of their streams.

Each fault ends where it happened: the stream or start-up concerned gets a clear error, and
everything else (the other streams, the models, the enrolled actions) carries on.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.actions import ActionStore
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.lanes import Lane
from service.runtime import mediapipe_factory
from service.server import SERVICE_NAME
from service.testing import (
    ROOT,
    VIDEOS,
    HeldRequests,
    assert_still_serving,
    encoded_frames,
    frame_requests,
    running_server,
    skeleton_frames,
    skeleton_requests,
    wait_until,
    waving_person,
)
from skeleton.pose.estimator import PoseEstimator

from .conftest import REPORT, TIMEOUT, scaled

# ---------------------------------------------------------------- pose estimators that fail or are counted


class PoseCrashed(Exception):
    """What a broken pose backend raises."""


class WorkerKilled(BaseException):
    """Not an ``Exception``: what would end a worker thread that did not guard against it."""


@dataclass
class CountedPose:
    """A real estimator, counted while open; from its ``fail_after``-th frame on it raises ``error``."""

    inner: PoseEstimator
    owner: EstimatorFactory
    fail_after: int | None = None
    error: BaseException | None = None
    frames: int = 0
    close_error: BaseException | None = None  # raised by ``close``, after closing

    def estimate(self, rgb: np.ndarray, timestamp_ms: int, frame_size=None):
        self.frames += 1
        if self.fail_after is not None and self.frames > self.fail_after:
            raise self.error
        if self.owner.hold is not None:  # a backend that is stuck until the test lets it go
            self.owner.hold.wait(TIMEOUT)
        return self.inner.estimate(rgb, timestamp_ms, frame_size)

    def close(self) -> None:
        self.inner.close()
        with self.owner.lock:
            self.owner.open -= 1
        if self.close_error is not None:
            raise self.close_error


@dataclass
class EstimatorFactory:
    """The server's ``estimator_factory``: real MediaPipe landmarkers, each counted until closed;
    ``fail_next`` makes the next one made fail after some frames."""

    make: Callable[[int], PoseEstimator]  # max people -> a real estimator
    open: int = 0
    made: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    close_error: BaseException | None = None  # every estimator made raises it when closed
    hold: threading.Event | None = None  # when given, every estimator waits for it before each frame
    _failure: tuple[int, BaseException] | None = None

    def fail_next(self, after: int, error: BaseException) -> None:
        self._failure = after, error

    def __call__(self, max_people: int) -> CountedPose:
        estimator = CountedPose(self.make(max_people), self, close_error=self.close_error)
        if self._failure is not None:
            (estimator.fail_after, estimator.error), self._failure = self._failure, None
        with self.lock:
            self.open += 1
            self.made += 1
        return estimator


@pytest.fixture(scope="module")
def footage() -> list[tuple[bytes, int]]:
    # 5 s of real footage, two people: in its first 3 s pose holds nobody for half a window, and a
    # stream makes no claim about people seen for less
    return encoded_frames(VIDEOS / "arm_wrestling.mp4", 140)


def _outcome(call) -> tuple[grpc.StatusCode, str, list[pb.StreamResponse]]:
    responses: list[pb.StreamResponse] = []
    try:
        responses.extend(call)
    except grpc.RpcError as e:
        return e.code(), e.details(), responses
    return grpc.StatusCode.OK, "", responses


def _session(server, stream_id: str):
    return next((s for s in list(server.sessions) if s.options.stream_id == stream_id), None)


def _active_streams(server) -> float:
    gauge = server.metrics.registry.get_sample_value
    return sum(gauge("actionrec_active_streams", {"kind": kind}) or 0.0 for kind in ("frames", "skeletons"))


def assert_no_stream_left(server, factory: EstimatorFactory) -> None:
    """Within a few seconds: every session closed, the active-streams gauge back to 0, and each
    stream's slot, pose worker share and pose estimator given back."""
    runtime = server.runtime

    def left() -> tuple:
        workers = [w.streams for w in runtime.pose_workers.workers]
        return len(server.sessions), _active_streams(server), runtime.slots.open, sum(workers), factory.open

    assert wait_until(lambda: not any(left()), seconds=TIMEOUT), left()


# ---------------------------------------------------------------- (a) pose fails mid-stream


@pytest.mark.parametrize("error", [PoseCrashed("the pose backend crashed"), WorkerKilled()], ids=["raises", "kills"])
def test_a_stream_whose_pose_fails_ends_alone(make_config, footage, error: BaseException) -> None:
    """The failing stream starts while a good one runs, on the one pose worker both share; it
    ends with a clear status, and the good one, still running then, finishes with its events."""
    config = make_config(workers=1)
    factory = EstimatorFactory(mediapipe_factory(config))
    with running_server(config, factory) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        outcomes: dict[str, tuple] = {}

        def run(name: str, requests: Iterator[pb.StreamFramesRequest]) -> threading.Thread:
            call = partial(api.StreamFrames, requests, timeout=TIMEOUT)
            thread = threading.Thread(target=lambda: outcomes.setdefault(name, _outcome(call())))
            thread.start()
            return thread

        def requests(name: str) -> list[pb.StreamFramesRequest]:
            return list(frame_requests(pb.StreamConfig(stream_id=name, lossless=True, max_people=2), footage))

        failed = threading.Event()

        def good_requests() -> Iterator[pb.StreamFramesRequest]:
            # half its frames, the rest once the failing stream has ended: it is still running then
            messages = requests("good")
            yield from messages[: len(messages) // 2]
            failed.wait(TIMEOUT)
            yield from messages[len(messages) // 2 :]

        good = run("good", good_requests())
        assert wait_until(
            lambda: (s := _session(server, "good")) is not None and s.stats().frames_processed >= 5, seconds=TIMEOUT
        )
        factory.fail_next(after=5, error=error)
        run("failing", iter(requests("failing"))).join(TIMEOUT + 5)
        assert _session(server, "good") is not None, "the good stream was over before the other one failed"
        failed.set()
        good.join(TIMEOUT + 5)

        code, details, _ = outcomes["failing"]
        assert code == grpc.StatusCode.UNAVAILABLE, (code, details)
        assert "pose estimation failed" in details and "reconnect" in details
        code, details, responses = outcomes["good"]
        assert code == grpc.StatusCode.OK, (code, details)
        final = responses[-1].stats
        assert final.final and final.frames_received == len(footage) and not final.frames_dropped
        assert any(r.WhichOneof("kind") == "event" for r in responses)
        assert_no_stream_left(server, factory)
        assert_still_serving(channel)


def test_an_estimator_that_fails_to_close_leaks_no_stream_slot(make_config, footage, service_warnings) -> None:
    """Closing a stream's pose backend raises: the error is logged, and the stream's slot, its
    share of its pose worker and its session are given back (with one slot, the next stream
    would otherwise be refused for good)."""
    config = make_config(workers=1, max_streams=1)
    factory = EstimatorFactory(mediapipe_factory(config))
    with running_server(config, factory) as server:
        factory.close_error = PoseCrashed("close failed")  # the streams' estimators, not the warm-up's
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        for name in ("first", "second"):
            stream = pb.StreamConfig(stream_id=name, lossless=True)
            code, details, responses = _outcome(api.StreamFrames(frame_requests(stream, footage[:20]), timeout=TIMEOUT))
            assert code == grpc.StatusCode.OK, (name, code, details)
            assert responses[-1].stats.final and responses[-1].stats.frames_received == 20
        assert_no_stream_left(server, factory)
        assert sum("closing a pose estimator failed" in r.getMessage() for r in service_warnings) == 2
        assert_still_serving(channel)


def test_a_lane_goes_on_when_its_work_raises_anything() -> None:
    """Below the streams: whatever one item's work raises, the lane's later items still run and
    closing it still releases it (a wedged lane would hang its stream until the deadline)."""
    processed, released = [], threading.Event()

    def process(item: int) -> None:
        if item == 1:
            raise WorkerKilled()
        processed.append(item)

    with ThreadPoolExecutor(1) as executor:
        lane: Lane[int] = Lane(executor, process, capacity=8, on_drop=lambda *_: None, on_closed=released.set)
        for item in range(4):
            lane.put(item)
        assert wait_until(lambda: processed == [0, 2, 3], seconds=5), processed
        lane.close("stream_failed")
        assert released.wait(5)


# ---------------------------------------------------------------- (b) models missing or corrupt at start-up

START_UP_SECONDS = 90  # a refused start ends within this, however slow the machine


def _serve(models_dir: Path, state: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "actionrec", "serve", "--host", "127.0.0.1", "--port", "0"]
    command += ["--models-dir", str(models_dir), "--actions-file", str(state / "actions.json"), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=START_UP_SECONDS)


def _damage_models(models_dir: Path, folder: Path, damage: str) -> tuple[list[str], str, str]:
    """A models folder with one thing wrong; (extra serve arguments, the file to be named, why)."""
    folder.mkdir()
    for model in models_dir.glob("*.onnx"):
        (folder / model.name).symlink_to(model)
    if damage == "missing":
        return ["--models", "sports2d", "walking"], str(folder / "walking.onnx"), "no such model file"
    if damage == "truncated":
        broken = folder / "sports2d.onnx"
        data = broken.read_bytes()
        broken.unlink()
        broken.write_bytes(data[: len(data) // 2])
        return [], str(broken), "not a loadable ONNX model"
    pose = folder / "pose.task"
    pose.write_bytes(b"PK\x03\x04 not really a MediaPipe bundle")
    return ["--pose-model", str(pose)], str(pose), "not a usable MediaPipe pose landmarker model"


@pytest.mark.parametrize("damage", ["missing", "truncated", "pose_model"])
def test_serve_refuses_a_missing_or_corrupt_model_naming_the_file(models_dir, tmp_path: Path, damage: str) -> None:
    extra, named, why = _damage_models(models_dir, tmp_path / "models", damage)
    result = _serve(tmp_path / "models", tmp_path, *extra)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("actionrec serve: error: ") and named in last and why in last, last
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- (c) the enrolled actions file damaged


def _waving_clip() -> pb.Clip:
    times = np.arange(60) * 33
    return pb.Clip(skeletons=pb.SkeletonClip(frames=skeleton_frames([waving_person("mediapipe33", times)], times)))


def _damaged_store(path: Path, damage: str) -> bytes:
    """A real store file, then damaged: cut short (a crash mid-write without an atomic rename),
    overwritten with noise, or another program's JSON."""
    store = ActionStore(path)
    store.enroll("sports2d", "v0", "gym", "old", np.ones((2, 8)))
    content = path.read_bytes()
    damaged = {
        "truncated": content[: len(content) // 2],
        "noise": np.random.default_rng(1).bytes(512),
        "foreign": json.dumps({"format": "something-else", "version": 7}).encode(),
    }[damage]
    path.write_bytes(damaged)
    return damaged


@pytest.mark.parametrize("damage", ["truncated", "noise", "foreign"])
def test_a_damaged_actions_file_is_set_aside_and_the_server_starts(make_config, service_warnings, damage: str) -> None:
    config = make_config()
    damaged = _damaged_store(config.actions_file, damage)
    with running_server(config) as server:
        api = pb_grpc.ActionRecognitionStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        (backup,) = config.actions_file.parent.glob("actions.json.corrupt-*")
        assert backup.read_bytes() == damaged and not config.actions_file.exists()
        (warning,) = service_warnings
        assert warning.levelno == logging.WARNING and warning.name == "service.actions"
        assert warning.fields["backup"] == str(backup) and "set aside" in warning.getMessage()
        assert {m.name for m in api.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT).models} == {
            "sports2d",
            "daily3d",
        }
        assert not api.ListActions(pb.ListActionsRequest(), timeout=TIMEOUT).actions
        request = pb.EnrollActionRequest(action_set="gym", action="wave", examples=[_waving_clip()])
        api.EnrollAction(request, timeout=TIMEOUT)
    assert [(a.action_set, a.action) for a in ActionStore(config.actions_file).list()] == [("gym", "wave")]
    assert backup.read_bytes() == damaged  # the fresh file went beside it


# ---------------------------------------------------------------- (d) clients that vanish


CANCEL_POINTS = ("before_config", "after_config", "mid_frames", "events_pending")


def _stream_to_abandon(api, footage, rng: random.Random, stream_id: str, kind: str, point: str):
    """(the call, its messages) of a stream of ``kind`` that will be cancelled at ``point``."""
    config = pb.StreamConfig(stream_id=stream_id, window_stride=4)
    if kind == "frames":
        # lossless when events must come: every frame posed, so that the people fill windows
        config.lossless = point == "events_pending" or rng.random() < 0.5
        count = {"before_config": 0, "after_config": 0, "mid_frames": rng.randint(1, 20), "events_pending": 84}[point]
        # events come from the footage's last 3 s (someone is seen there for half a window)
        start = len(footage) - count if point == "events_pending" else rng.randrange(0, len(footage) - count + 1)
        messages = list(frame_requests(config, footage[start : start + count]))
        return api.StreamFrames, messages if point != "before_config" else []
    count = {"before_config": 0, "after_config": 0, "mid_frames": rng.randint(1, 30), "events_pending": 90}[point]
    times = np.arange(count) * 33
    frames = skeleton_frames([waving_person("mediapipe33", times)], times)
    messages = list(skeleton_requests(pb.SkeletonStreamConfig(stream=config), frames))
    return api.StreamSkeletons, messages if point != "before_config" else []


def _abandon_one(api, server, footage, rng: random.Random, index: int) -> tuple[str, str, bool]:
    """Open a stream, take it to a random point, cancel it there; (kind, point, got there)."""
    kind, point = rng.choice(("frames", "skeletons")), rng.choice(CANCEL_POINTS)
    stream_id = f"abandoned-{index}"
    method, messages = _stream_to_abandon(api, footage, rng, stream_id, kind, point)
    received = rng.randint(1, max(1, len(messages) - 1))  # mid_frames: cancelled once the server has these

    def stats() -> pb.StreamStats | None:
        session = _session(server, stream_id)
        return session.stats() if session is not None else None

    reached = {
        "before_config": lambda: True,
        "after_config": lambda: stats() is not None,
        "mid_frames": lambda: (s := stats()) is not None and s.frames_received >= received,
        "events_pending": lambda: (s := stats()) is not None and s.windows_classified > 0,
    }[point]
    requests = HeldRequests(messages)
    call = method(iter(requests), timeout=TIMEOUT)
    got_there = wait_until(reached, seconds=TIMEOUT)
    call.cancel()
    requests.release.set()
    return kind, point, got_there


def _frames_accounted(server) -> tuple[float, float]:
    """(frames received, frames processed + skipped + dropped), all streams together."""
    registry = server.metrics.registry

    def value(name: str, labels: dict | None = None) -> float:
        return registry.get_sample_value(name, labels or {}) or 0.0

    received = sum(value("actionrec_frames_received_total", {"kind": k}) for k in ("frames", "skeletons"))
    processed = sum(value("actionrec_frames_processed_total", {"kind": k}) for k in ("frames", "skeletons"))
    dropped = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "actionrec_frames_dropped"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )
    return received, processed + value("actionrec_frames_skipped_total") + dropped


def test_clients_that_vanish_at_any_point_leak_nothing(make_config, footage, service_warnings) -> None:
    disconnects = scaled(150, 1000)
    config = make_config(max_streams=8)
    factory = EstimatorFactory(mediapipe_factory(config))
    rng = random.Random(20261125)
    with running_server(config, factory) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        results = [_abandon_one(api, server, footage, rng, i) for i in range(disconnects)]
        assert_no_stream_left(server, factory)
        received, accounted = _frames_accounted(server)
        assert received == accounted and received > 0
        cancelled = server.metrics.registry.get_sample_value("actionrec_frames_dropped_total", {"reason": "cancelled"})
        assert cancelled, "no stream was cut off with frames still pending"
        # a new stream on real footage still works
        stream = pb.StreamConfig(stream_id="after", lossless=True)
        code, details, responses = _outcome(api.StreamFrames(frame_requests(stream, footage), timeout=TIMEOUT))
        assert code == grpc.StatusCode.OK and any(r.WhichOneof("kind") == "event" for r in responses), details
    missed = [(kind, point) for kind, point, got_there in results if not got_there]
    assert not missed, f"streams cancelled before reaching their point: {missed[:5]}"
    assert {(kind, point) for kind, point, _ in results} == {
        (k, p) for k in ("frames", "skeletons") for p in CANCEL_POINTS
    }
    assert not service_warnings, [r.getMessage() for r in service_warnings[:3]]
    REPORT.append(f"{disconnects} streams abandoned at random points, nothing leaked ({int(cancelled)} frames cut off)")


# ---------------------------------------------------------------- (e) calls that hold handler threads


def _silent_requests(stop: threading.Event) -> Iterator[pb.StreamSkeletonsRequest]:
    """A stream that opens and never says a word."""
    stop.wait(TIMEOUT)
    return
    yield


def test_streams_that_never_configure_cannot_starve_health_checks(make_config, service_warnings) -> None:
    """More silent streams than the server has handler threads: one holds the one stream slot
    until it is ended after ``config_seconds``, the rest are refused at once, and health
    checks and a real stream are answered all the while."""
    # Starved, a health check waits for a handler thread that a silent stream lets go of only when
    # it is ended, ``config_seconds`` after it came; answered within half of that, it was not
    # starved. Both are long beside a health check's milliseconds, so a slow machine passes and a
    # starved server fails, whatever the load.
    config_seconds, health_deadline = 10.0, 5.0
    config = make_config(max_streams=1, max_clip_calls=1, config_seconds=config_seconds)
    silent_count = 16  # handler threads: 1 stream + 1 clip call + 8
    with running_server(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        stop = threading.Event()
        outcomes: list[tuple] = []
        began = time.monotonic()
        with ThreadPoolExecutor(silent_count) as pool:
            calls = [
                pool.submit(lambda: _outcome(api.StreamSkeletons(_silent_requests(stop), timeout=TIMEOUT)))
                for _ in range(silent_count)
            ]
            # while the silent streams come
            assert health.Check(request, timeout=health_deadline).status == health_pb2.HealthCheckResponse.SERVING
            # and once they are all in: the others refused, one holding the slot and its handler thread
            assert wait_until(
                lambda: sum(call.done() for call in calls) == silent_count - 1 and server.runtime.slots.open == 1,
                seconds=TIMEOUT,
            )
            assert health.Check(request, timeout=health_deadline).status == health_pb2.HealthCheckResponse.SERVING
            outcomes = [call.result(TIMEOUT) for call in calls]
            stop.set()
        took = time.monotonic() - began
        codes = sorted(code.name for code, _, _ in outcomes)
        assert codes == ["DEADLINE_EXCEEDED"] + ["RESOURCE_EXHAUSTED"] * (silent_count - 1), codes
        assert all("1 streams open" in details for code, details, _ in outcomes if code.name == "RESOURCE_EXHAUSTED")
        # ended by the server after its config_seconds, saying why, not by the client at its deadline
        assert any("sent no configuration within 10 s" in details for _, details, _ in outcomes)
        assert config_seconds < took < TIMEOUT, took
        assert any("sent no configuration" in r.getMessage() for r in service_warnings)
        sample = server.metrics.registry.get_sample_value

        def counted() -> dict:
            codes = ("OK", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
            return {c: sample("actionrec_rpcs_total", {"method": "StreamSkeletons", "code": c}) for c in codes}

        # Counted when each handler ends, which may be just after its client has its status.
        expected = {"OK": None, "DEADLINE_EXCEEDED": 1, "RESOURCE_EXHAUSTED": 15}
        wait_until(lambda: counted() == expected, seconds=TIMEOUT)
        assert counted() == expected, counted()
        assert wait_until(lambda: server.runtime.slots.open == 0, seconds=TIMEOUT)
        assert_still_serving(channel)


def test_clip_calls_beyond_their_limit_are_refused_not_queued(make_config, footage) -> None:
    """A ClassifyClip whose pose is stuck holds the one clip-call slot: a second is refused with
    RESOURCE_EXHAUSTED at once, and the first, let go, still gets its answer."""
    config = make_config(max_clip_calls=1)
    factory = EstimatorFactory(mediapipe_factory(config))
    clip = pb.Clip(frames=pb.FrameClip(frames=[pb.Frame(encoded=data, timestamp_ms=t) for data, t in footage[:20]]))
    with running_server(config, factory) as server:
        factory.hold = threading.Event()  # the clips' estimators, not the warm-up's
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        with ThreadPoolExecutor(1) as pool:
            stuck = pool.submit(api.ClassifyClip, pb.ClassifyClipRequest(clip=clip), timeout=TIMEOUT)
            try:
                assert wait_until(lambda: server.runtime.call_slots.open == 1, seconds=TIMEOUT)
                with pytest.raises(grpc.RpcError) as refused:
                    api.ClassifyClip(pb.ClassifyClipRequest(clip=clip), timeout=TIMEOUT)
                assert not stuck.done()  # the slot was still held by the first
            finally:
                factory.hold.set()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "1 clip calls open" in refused.value.details()
            assert stuck.result(TIMEOUT).labels
        sample = server.metrics.registry.get_sample_value
        assert wait_until(
            lambda: (
                server.runtime.call_slots.open == 0
                and sample("actionrec_rpcs_total", {"method": "ClassifyClip", "code": "OK"}) == 1
                and sample("actionrec_rpcs_total", {"method": "ClassifyClip", "code": "RESOURCE_EXHAUSTED"}) == 1
            ),
            seconds=TIMEOUT,
        )
        assert_still_serving(channel)
