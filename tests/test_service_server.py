"""The service end to end, in process: real clips through MediaPipe, skeleton streams, clips,
model info, custom actions, health and reflection, and every kind of bad input.

Bad input gets its status (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED) and harms no one
else: each bad-input test ends by checking that the server still serves a good stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import service.server
import service.session
from actionrec.cli import main
from benchmarks.enrolment import Task, run_task
from service.clip_calls import (
    Sending,
    Server,
    check_size,
    classify,
    clip_from_file,
    delete_action,
    enroll,
    list_actions,
    model_info,
)
from service.config import ServerConfig
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.server import SERVICE_NAME, ActionServer
from service.testing import (
    BLANK,
    VIDEOS,
    HeldRequests,
    NobodyPose,
    StillPerson,
    assert_still_serving,
    encoded_frames,
    frame_requests,
    free_port,
    running_server,
    skeleton_frames,
    skeleton_requests,
    stub,
    wait_until,
    waving_person,
)
from service.windowing import FrameGate
from skeleton.errors import InputError
from tests.test_pose import _blank_video

MAX_STREAMS = 3
TIMEOUT = 60  # seconds any one call may take: a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def config(models_dir: Path, tmp_path_factory) -> ServerConfig:
    return ServerConfig(
        models_dir=models_dir,
        actions_file=tmp_path_factory.mktemp("state") / "actions.json",
        max_streams=MAX_STREAMS,
        max_image_bytes=1 << 20,
        workers=2,
    )


@pytest.fixture(scope="module")
def server(config: ServerConfig) -> Iterator[ActionServer]:
    with running_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def address(server: ActionServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address)


@pytest.fixture(scope="module")
def api(channel: grpc.Channel):
    return pb_grpc.ActionRecognitionStub(channel)


@pytest.fixture(scope="module")
def arm_wrestling() -> list[tuple[bytes, int]]:
    return encoded_frames(VIDEOS / "arm_wrestling.mp4", 140)


@dataclass
class Outcome:
    events: list[pb.ActionEvent] = field(default_factory=list)
    poses: list[pb.FramePoses] = field(default_factory=list)
    stats: list[pb.StreamStats] = field(default_factory=list)

    @property
    def final(self) -> pb.StreamStats:
        assert self.stats and self.stats[-1].final, "the stream ended without its final statistics"
        return self.stats[-1]


def collect(call) -> Outcome:
    outcome = Outcome()
    for response in call:
        kind = response.WhichOneof("kind")
        getattr(outcome, {"event": "events", "poses": "poses", "stats": "stats"}[kind]).append(getattr(response, kind))
    return outcome


def status_of(run) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as error:
        run()
    return error.value.code(), error.value.details()


def accounted(stats: pb.StreamStats) -> int:
    return stats.frames_processed + stats.frames_skipped + sum(stats.frames_dropped.values()) + stats.frames_pending


def waving_skeletons(seconds: float = 4.0, fps: float = 30.0, people: int = 2, speed: float = 1.0):
    times = np.round(np.arange(round(seconds * fps)) * 1000 / fps).astype(int)
    persons = [waving_person("mediapipe33", times, speed, offset=(150.0 + 300 * p, 240.0)) for p in range(people)]
    return skeleton_frames(persons, times)


# ---------------------------------------------------------------- health, reflection, models


def test_health_is_not_serving_until_the_models_are_loaded(config: ServerConfig) -> None:
    from dataclasses import replace

    server = ActionServer(replace(config, host="127.0.0.1", port=0))
    port = server.start()
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE_NAME):
            answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        code, details = status_of(lambda: stub(f"127.0.0.1:{port}").GetModelInfo(pb.GetModelInfoRequest(), timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE and "loading" in details
    finally:
        server.stop()


def test_a_model_whose_batcher_fails_turns_health_to_not_serving(config: ServerConfig) -> None:
    """A bug in a model's batcher loses that model for the process's life: the replica says so
    (NOT_SERVING, for its orchestrator to replace it) and its windows count as classify_error,
    not as a queue that is merely full."""

    class Broken:
        def observe_batch(self, *_) -> None:
            raise RuntimeError("a bug in the batcher's thread")

    with running_server(config) as server:
        server.runtime.batchers["sports2d"]._metrics = Broken()
        api = stub(f"127.0.0.1:{server.port}")
        frames = waving_skeletons(4.0, people=1)
        final = collect(
            api.StreamSkeletons(skeleton_requests(pb.SkeletonStreamConfig(), frames), timeout=TIMEOUT)
        ).final
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        for name in ("", SERVICE_NAME):
            answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert final.windows_classified == 0 and set(final.windows_dropped) == {"classify_error"}, final


def test_health_serving_and_reflection_lists_the_services(address: str) -> None:
    channel = grpc.insecure_channel(address)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE_NAME):
        answer = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))
    services = {s.name for s in answer.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= services


def test_model_info_comes_from_the_model_files(api, server: ActionServer) -> None:
    info = api.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    model = server.runtime.models.get("sports2d")
    assert info.name == "sports2d" and info.is_default
    assert tuple(info.labels) == model.card.labels
    assert (info.layout, info.dims, info.window_length) == (model.card.window.layout, 2, model.card.window.length)
    assert info.frame_rate == pytest.approx(model.card.window.fps)
    assert info.version == model.version and len(info.version) == 12
    assert dict(info.accuracy) == pytest.approx(model.card.accuracy)
    assert "CPUExecutionProvider" in info.execution_providers
    listed = api.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT)
    assert listed.default_model == "sports2d" and {m.name for m in listed.models} == {"sports2d", "daily3d"}
    assert [m.dims for m in listed.models if m.name == "daily3d"] == [3]
    code, details = status_of(lambda: api.GetModelInfo(pb.GetModelInfoRequest(model="nope"), timeout=TIMEOUT))
    assert code == grpc.StatusCode.NOT_FOUND and "daily3d, sports2d" in details


# ---------------------------------------------------------------- frame streams on a real clip


def test_frame_stream_poses_the_models_frames_and_accounts_for_every_frame(api, arm_wrestling, server) -> None:
    config = pb.StreamConfig(stream_id="arm", include_poses=True, lossless=True, window_stride=8, top_k=2, max_people=2)
    outcome = collect(api.StreamFrames(frame_requests(config, arm_wrestling), timeout=TIMEOUT))
    final = outcome.final
    assert final.frames_received == 140 and accounted(final) == 140
    assert final.frames_pending == 0 and not final.frames_dropped
    fps = server.runtime.models.get().card.window.fps
    # 5 s of 28 fps video: the model's rate is posed, the rest never decoded
    assert final.frames_processed == pytest.approx(140 / 28 * fps, abs=2)
    assert len(outcome.poses) == final.frames_processed and final.poses_dropped == 0
    people = [p for frame in outcome.poses for p in frame.people]
    assert people and all(len(p.image_xy) == 66 and len(p.visibility) == 33 for p in people)
    xy = np.array([p.image_xy for p in people]).reshape(-1, 33, 2)
    assert 0 < np.median(xy[..., 0]) < 340 and 0 < np.median(xy[..., 1]) < 256  # pixels of the frame as sent
    assert outcome.events and final.windows_classified == len(outcome.events)
    labels = set(server.runtime.models.get().card.labels)
    for event in outcome.events:
        assert event.stream_id == "arm" and event.model == "sports2d"
        assert 0 <= event.start_ms < event.end_ms <= arm_wrestling[-1][1]
        assert len(event.labels) == 2 and {s.label for s in event.labels} <= labels
        assert event.labels[0].score >= event.labels[1].score and 0 < event.labels[0].score <= 1
        assert event.track_id in {p.track_id for p in people}
        assert event.stats.latency_ms > 0
        # the compute behind the event is part of its latency
        assert event.timing.classify_ms > 0
        assert event.timing.pose_ms == 0 or event.timing.pose_ms + event.timing.classify_ms < event.stats.latency_ms
    # the windows that the stream's end completed had no frame posed for them: all others did
    assert sum(e.timing.pose_ms > 0 for e in outcome.events) >= len(outcome.events) - len(
        {e.track_id for e in outcome.events}
    )


def test_a_live_stream_faster_than_pose_drops_the_oldest_frames_and_counts_them(api, arm_wrestling) -> None:
    config = pb.StreamConfig(stream_id="burst", frame_rate_hint=28, include_poses=True)
    # every frame of the clip sent at once: far faster than one stream's pose
    outcome = collect(api.StreamFrames(frame_requests(config, arm_wrestling), timeout=TIMEOUT))
    final = outcome.final
    assert final.frames_received == 140 and accounted(final) == 140 and final.frames_pending == 0
    assert final.frames_dropped["queue_full"] > 0 and set(final.frames_dropped) == {"queue_full"}
    # The oldest waiting frames went: what was posed is in order and ends with the newest frame
    # the model's frame rate admits.
    gate = FrameGate(api.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT).frame_rate, 28)
    admitted = [timestamp for _, timestamp in arm_wrestling if gate.admit(timestamp)]
    posed = [p.timestamp_ms for p in outcome.poses]
    assert len(posed) == final.frames_processed >= 2 and posed == sorted(posed)
    assert posed[-1] == admitted[-1] and final.frames_skipped == 140 - len(admitted)


def test_three_d_model_takes_world_landmarks_from_frames(api, arm_wrestling) -> None:
    info = api.GetModelInfo(pb.GetModelInfoRequest(model="daily3d"), timeout=TIMEOUT)
    assert (info.window_length - 1) / info.frame_rate < arm_wrestling[-1][1] / 1000  # the clip holds a window
    config = pb.StreamConfig(model="daily3d", lossless=True, window_stride=8, include_embedding=True)
    outcome = collect(api.StreamFrames(frame_requests(config, arm_wrestling), timeout=TIMEOUT))
    assert outcome.final.frames_received == len(arm_wrestling) and accounted(outcome.final) == len(arm_wrestling)
    assert outcome.events
    for event in outcome.events:
        assert event.model == "daily3d" and len(event.embedding) == info.embedding_size


# ---------------------------------------------------------------- skeleton streams


def test_skeleton_stream_gives_events_for_each_person(api) -> None:
    config = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="sk", top_k=3, stats_interval_ms=200))
    frames = waving_skeletons(4.0)
    outcome = collect(api.StreamSkeletons(skeleton_requests(config, frames), timeout=TIMEOUT))
    final = outcome.final
    assert final.frames_received == final.frames_processed == len(frames) and final.frames_skipped == 0
    tracks = {e.track_id for e in outcome.events}
    assert len(tracks) == 2  # the server tracked the two people
    info = api.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    per_person = [e for e in outcome.events if e.track_id == min(tracks)]
    # 4 s at the model's rate, a window every half window, the last one at the end
    expected = (4.0 * info.frame_rate - info.window_length) // (info.window_length // 2) + 1
    assert len(per_person) >= expected
    assert all(len(e.labels) == 3 for e in outcome.events)
    assert all(e.timing.pose_ms == 0 and e.timing.classify_ms > 0 for e in outcome.events)  # no pose here
    # max_people is the frame streams' (the server poses): a skeleton stream's is not held to --max-people
    unposed = pb.SkeletonStreamConfig(stream=pb.StreamConfig(max_people=16))
    unposed_outcome = collect(api.StreamSkeletons(skeleton_requests(unposed, frames[:40]), timeout=TIMEOUT))
    assert unposed_outcome.final.frames_processed == 40


def test_every_statistics_snapshot_accounts_for_every_frame(api) -> None:
    """Mid-stream snapshots too (periodic ones and those in events, taken while frames are
    being parsed): each received frame is in exactly one of processed, skipped, dropped, pending."""
    config = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="snap", window_stride=1, stats_interval_ms=50))
    frames = waving_skeletons(6.0, people=8)
    outcome = collect(api.StreamSkeletons(skeleton_requests(config, frames), timeout=TIMEOUT))
    snapshots = outcome.stats + [e.stats for e in outcome.events if e.HasField("stats")]
    assert len(snapshots) > 50 and outcome.final.frames_received == len(frames)
    unbalanced = [(s.frames_received, accounted(s)) for s in snapshots if accounted(s) != s.frames_received]
    assert not unbalanced


def test_windows_a_full_batch_queue_refuses_are_counted(api, config: ServerConfig, monkeypatch) -> None:
    """Windows beyond the batcher's queue are refused before they are prepared, and counted:
    classified + refused is every window the stream made (as a roomy server classifies them)."""
    frames = waving_skeletons(4.0)
    config_message = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="tight", window_stride=1))
    reference = collect(api.StreamSkeletons(skeleton_requests(config_message, frames), timeout=TIMEOUT)).final
    assert not reference.windows_dropped
    prepared = []
    prepare = service.session.prepare_window
    monkeypatch.setattr(service.session, "prepare_window", lambda *args: prepared.append(1) or prepare(*args))
    # The stream's own share of the queue out of the way: here the batcher refuses.
    monkeypatch.setattr(service.session, "STREAM_QUEUE_SHARE", 1000.0)
    with running_server(replace(config, max_batch=1, max_batch_queue=1)) as tight:
        tight_api = stub(f"127.0.0.1:{tight.port}")
        final = collect(tight_api.StreamSkeletons(skeleton_requests(config_message, frames), timeout=TIMEOUT)).final
    assert set(final.windows_dropped) <= {"batch_queue_full"}
    assert final.windows_classified + final.windows_dropped["batch_queue_full"] == reference.windows_classified
    # Two people: each frame completes two windows at once, and a queue of one takes one of them.
    assert final.windows_classified > 0 and final.windows_dropped["batch_queue_full"] > 0
    # The refused windows were not normalised first (a few may race past the check, and are
    # refused by the batcher itself).
    assert final.windows_classified <= len(prepared) < reference.windows_classified


def test_skeletons_with_caller_track_ids_and_other_layouts(api) -> None:
    times = np.arange(60) * 50
    person = waving_person("coco17", times)
    config = pb.SkeletonStreamConfig(
        stream=pb.StreamConfig(stream_id="coco"), format=pb.SkeletonFormat(layout="coco17", dims=2)
    )
    frames = skeleton_frames([person], times, with_ids=True)
    for frame in frames:
        frame.people[0].track_id = 42
    outcome = collect(api.StreamSkeletons(skeleton_requests(config, frames), timeout=TIMEOUT))
    assert outcome.events and {e.track_id for e in outcome.events} == {42}


def test_track_ids_that_change_every_frame_are_bounded_and_counted(api, config: ServerConfig) -> None:
    """One person keeps id 0; three others get a new id every frame. The stream keeps 4 tracks a
    person it may show, reports how many it forgot, and the steady person's events still come."""
    times = np.arange(90) * 33
    person = waving_person("mediapipe33", times)
    frames = skeleton_frames([person] * 4, times, with_ids=True)
    fresh = iter(range(1, 10**6))
    for frame in frames:
        for other in frame.people[1:]:
            other.track_id = next(fresh)
    stream = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="churn", stats_interval_ms=50))
    outcome = collect(api.StreamSkeletons(skeleton_requests(stream, frames), timeout=TIMEOUT))
    limit = 4 * config.max_skeleton_people
    assert outcome.final.tracks_forgotten == 3 * len(frames) + 1 - limit
    assert max(s.active_tracks for s in outcome.stats + [outcome.final]) <= limit
    assert len([e for e in outcome.events if e.track_id == 0]) >= 2


def test_3d_skeletons_feed_the_3d_model(api) -> None:
    times = np.arange(150) * 33  # 5 s: longer than a daily3d window (4.1 s), so a live window forms
    flat = waving_person("ntu25", times, scale=0.01, offset=(0.0, 0.0))
    person = np.concatenate([flat * np.array([1, -1]), np.full(flat.shape[:2] + (1,), 3.0)], axis=-1)
    config = pb.SkeletonStreamConfig(
        stream=pb.StreamConfig(model="daily3d"), format=pb.SkeletonFormat(layout="ntu25", dims=3)
    )
    outcome = collect(api.StreamSkeletons(skeleton_requests(config, skeleton_frames([person], times)), timeout=TIMEOUT))
    assert outcome.events and all(e.model == "daily3d" for e in outcome.events)
    assert outcome.events[0].end_ms < times[-1]  # before the stream's end: not only its final flush


# ---------------------------------------------------------------- clips


def test_classify_clip_of_a_still_image_and_of_skeletons(api) -> None:
    image = pb.Frame(timestamp_ms=0, encoded=(VIDEOS / "basketball1.png").read_bytes())
    request = pb.ClassifyClipRequest(clip=pb.Clip(frames=pb.FrameClip(frames=[image])), include_embedding=True)
    answer = api.ClassifyClip(request, timeout=TIMEOUT)
    info = api.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    assert answer.windows == 1 and len(answer.labels) == 3 and answer.model == "sports2d"
    assert len(answer.embedding) == info.embedding_size
    assert np.linalg.norm(answer.embedding) == pytest.approx(1.0, abs=1e-4)

    skeletons = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(3.0, people=2)))
    answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=skeletons, top_k=1), timeout=TIMEOUT)
    assert answer.windows >= 2 and len(answer.labels) == 1 and answer.end_ms > answer.start_ms


def test_a_depth_sensor_clip_of_one_person_is_answered_whole(api, msr) -> None:
    """A real MSR Action3D clip in which the Kinect loses its one person for over a second: a stream
    takes the skeleton back after that long for a new person; a clip in which no frame holds two
    people is one person's, answered from its first frame to its last."""
    from skeleton.pose.tracker import PersonTracker

    sequence = msr[int(np.flatnonzero(msr.names == "a13_s06_e01_skeleton3D")[0])]
    person, times = sequence.coords[:, 0], sequence.timestamps_ms.round().astype(int)
    assert np.diff(times).max() > 1000
    tracker = PersonTracker(lone_person_stays=True)
    assert {i for joints, t in zip(person, times) for i in tracker.update([joints], [np.ones(20)], float(t))} == {0, 1}
    fmt = pb.SkeletonFormat(layout="kinect20", dims=3)
    clip = pb.Clip(skeletons=pb.SkeletonClip(format=fmt, frames=skeleton_frames([person], times)))
    gap = int(np.argmax(np.diff(times))) + 1  # the first frame after the loss; the longer part is before it
    answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=clip, model="daily3d"), timeout=TIMEOUT)
    assert answer.track_id == 0 and answer.start_ms == times[0] and answer.end_ms > times[gap]
    # The same skeletons in a pose estimator's layout (MediaPipe's, the sensor's joints placed on its
    # landmarks): an estimator may find another person in the next frame, so the tracker's two
    # people stay two, and the one seen longer is answered.
    landmarks = np.full((len(person), 33, 3), np.nan, np.float32)
    for kinect, mediapipe in ((3, 0), (4, 11), (8, 12), (5, 13), (9, 14), (6, 15), (10, 16), (12, 23), (16, 24)):
        landmarks[:, mediapipe] = person[:, kinect]
    for kinect, mediapipe in ((13, 25), (17, 26), (14, 27), (18, 28)):
        landmarks[:, mediapipe] = person[:, kinect]
    estimated = pb.SkeletonFormat(layout="mediapipe33", dims=3)
    clip = pb.Clip(skeletons=pb.SkeletonClip(format=estimated, frames=skeleton_frames([landmarks], times)))
    answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=clip, model="daily3d"), timeout=TIMEOUT)
    assert answer.track_id == 0 and answer.start_ms == times[0] and answer.end_ms < times[gap]
    # The caller's track ids are the caller's word: two people, the one seen longer answered.
    named = skeleton_frames([person], times, with_ids=True)
    for frame in named[6:]:
        frame.people[0].track_id = 7
    clip = pb.Clip(skeletons=pb.SkeletonClip(format=fmt, frames=named))
    answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=clip, model="daily3d"), timeout=TIMEOUT)
    assert answer.track_id == 7 and answer.start_ms >= times[6]


def test_a_sensor_stream_keeps_one_track_where_its_lone_skeleton_jumps(api, nw_ucla) -> None:
    """A real NW-UCLA clip streamed without track ids (9.4 s, one person, the Kinect's skeleton
    jumping by over half its size at 4.2 s): one track, with windows across the jump, where the
    tracker by distance alone would end it there and start another person."""
    from skeleton.pose.tracker import PersonTracker

    sequence = nw_ucla[int(np.flatnonzero(nw_ucla.names == "a04_s01_e00_v01")[0])]
    person, times = sequence.coords[:, 0], sequence.timestamps_ms.round().astype(int)
    by_distance = PersonTracker()
    assert [by_distance.update([joints], [np.ones(20)], float(t))[0] for joints, t in zip(person, times)] == [
        0
    ] * 63 + [1] * (len(times) - 63)
    config = pb.SkeletonStreamConfig(
        stream=pb.StreamConfig(model="daily3d", lossless=True, window_stride=4),
        format=pb.SkeletonFormat(layout="kinect20", dims=3),
    )
    outcome = collect(api.StreamSkeletons(skeleton_requests(config, skeleton_frames([person], times)), timeout=TIMEOUT))
    assert outcome.events and {event.track_id for event in outcome.events} == {0}
    assert any(event.start_ms < times[63] < event.end_ms for event in outcome.events)


def test_a_long_clip_holds_no_more_of_the_queue_than_a_stream(api, config: ServerConfig) -> None:
    """A clip's windows go to the model a stream's share at a time (a quarter of its queue): all
    at once, a long clip would fill the queue every stream of the model shares (here: be refused
    by a queue of 8 outright), and the answer is still the mean over every window."""
    clip = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(20.0, fps=10.0, people=1)))
    roomy = api.ClassifyClip(pb.ClassifyClipRequest(clip=clip, top_k=3), timeout=TIMEOUT)
    assert roomy.windows > 8
    with running_server(replace(config, max_batch=1, max_batch_queue=8)) as tight:
        answer = stub(f"127.0.0.1:{tight.port}").ClassifyClip(
            pb.ClassifyClipRequest(clip=clip, top_k=3), timeout=TIMEOUT
        )
    assert answer.windows == roomy.windows
    assert [label.label for label in answer.labels] == [label.label for label in roomy.labels]
    assert [label.score for label in answer.labels] == pytest.approx([label.score for label in roomy.labels], abs=1e-5)


def test_bad_clips_are_refused(api) -> None:
    blank = cv2.imencode(".png", np.zeros((120, 160, 3), np.uint8))[1].tobytes()
    cases = {
        "the clip has no frames": pb.Clip(),
        "no person found": pb.Clip(frames=pb.FrameClip(frames=[pb.Frame(timestamp_ms=0, encoded=blank)])),
        "does not follow": pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(1.0)[::-1])),
    }
    for message, clip in cases.items():
        code, details = status_of(
            lambda clip=clip: api.ClassifyClip(pb.ClassifyClipRequest(clip=clip), timeout=TIMEOUT)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details


# ---------------------------------------------------------------- custom actions


def test_enrolled_actions_are_recognised_listed_deleted_and_survive_a_restart(api, config: ServerConfig) -> None:
    wave = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(3.0, people=1, speed=1.0)))
    still = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(3.0, people=1, speed=0.0)))
    enrolled = api.EnrollAction(
        pb.EnrollActionRequest(action_set="gym", action="wave", examples=[wave, wave]), timeout=TIMEOUT
    )
    assert enrolled.action.examples == 2 and enrolled.self_similarity == pytest.approx(1.0, abs=1e-4)
    api.EnrollAction(pb.EnrollActionRequest(action_set="gym", action="stand", examples=[still]), timeout=TIMEOUT)

    # Recognised on clips that were not enrolled: another waving speed and a person elsewhere in
    # the image (the embedding is of the normalised pose), and standing still elsewhere.
    other_wave = waving_person("mediapipe33", np.arange(0, 3000, 33), speed=1.6, offset=(420.0, 260.0), scale=70.0)
    other_still = waving_person("mediapipe33", np.arange(0, 3000, 33), speed=0.0, offset=(200.0, 200.0), scale=130.0)
    for person, action in ((other_wave, "wave"), (other_still, "stand")):
        clip = pb.Clip(skeletons=pb.SkeletonClip(frames=skeleton_frames([person], np.arange(0, 3000, 33))))
        answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=clip, action_set="gym", top_k=2), timeout=TIMEOUT)
        assert [s.label for s in answer.custom_labels][0] == action
        assert answer.custom_labels[0].score > answer.custom_labels[1].score + 0.05
    stream = pb.SkeletonStreamConfig(stream=pb.StreamConfig(action_set="gym", top_k=2))
    outcome = collect(api.StreamSkeletons(skeleton_requests(stream, waving_skeletons(3.0, people=1)), timeout=TIMEOUT))
    assert outcome.events and all({s.label for s in e.custom_labels} == {"wave", "stand"} for e in outcome.events)

    listed = api.ListActions(pb.ListActionsRequest(action_set="gym"), timeout=TIMEOUT)
    assert [(a.action, a.model, a.examples) for a in listed.actions] == [
        ("stand", "sports2d", 1),
        ("wave", "sports2d", 2),
    ]
    api.DeleteAction(pb.DeleteActionRequest(action_set="gym", action="stand"), timeout=TIMEOUT)
    code, _ = status_of(lambda: api.DeleteAction(pb.DeleteActionRequest(action_set="gym", action="stand"), timeout=5))
    assert code == grpc.StatusCode.NOT_FOUND

    with running_server(config) as restarted:  # a second server on the same store: a restart
        again = stub(f"127.0.0.1:{restarted.port}").ListActions(pb.ListActionsRequest(), timeout=TIMEOUT)
    assert [(a.action_set, a.action, a.examples) for a in again.actions] == [("gym", "wave", 2)]
    # A server that does not load sports2d still lists its actions, and deletes them by its name.
    with running_server(replace(config, models=("daily3d",), default_model="daily3d")) as other:
        other_api = stub(f"127.0.0.1:{other.port}")
        request = pb.DeleteActionRequest(action_set="gym", action="wave", model="sports2d")
        assert other_api.DeleteAction(request, timeout=TIMEOUT).action.model == "sports2d"
        assert not other_api.ListActions(pb.ListActionsRequest(), timeout=TIMEOUT).actions


@pytest.mark.parametrize(
    "task, floor",
    [
        # MSR Action3D's 20 actions, which daily3d was never trained on; chance is 5 %.
        (Task("daily3d", "msr", "cross-subject", 3, "new actions"), 30.0),
        # NW-UCLA's own 10 classes from 3 clips each of views 1 and 2, answered in view 3.
        (Task("daily3d", "nw-ucla", "cross-view", 3, "its own classes"), 85.0),
    ],
    ids=["daily3d-enrols-msr", "daily3d-enrols-nw-ucla"],
)
def test_actions_enrolled_from_real_clips_are_recognised_on_other_people_or_cameras(
    api, msr, nw_ucla, task: Task, floor: float
) -> None:
    """Few-shot enrolment on real recordings, through the server (the benchmark's own code path,
    one draw): examples from the train part, every test clip answered by the top custom label.
    Measured with this draw and the daily3d shipped since 2026-12-08 (windows stood upright): 32.2 %
    (MSR, K = 5; the daily3d before it scored 37.4, one of its worse draws, whose mean was 41.2 ± 3.3,
    docs/service.md) and 93.5 % (NW-UCLA, K = 3; 93.8 before); the floors sit 2.2 and 8.5 points
    under, six times chance and more."""
    dataset = {"msr": msr, "nw-ucla": nw_ucla}[task.dataset]
    with ThreadPoolExecutor(2) as pool:
        result = run_task(api, task, dataset, shots=[5 if task.dataset == "msr" else 3], draws=1, pool=pool)
    try:
        assert result["rows"][0]["accuracy_mean"] >= floor
    finally:
        for listed in api.ListActions(pb.ListActionsRequest(), timeout=TIMEOUT).actions:
            if listed.action_set.startswith(f"{task.model}-{task.dataset}-"):
                request = pb.DeleteActionRequest(action_set=listed.action_set, action=listed.action, model=task.model)
                api.DeleteAction(request, timeout=TIMEOUT)


def test_top_k_reaches_enrolled_actions_beyond_the_models_classes(api) -> None:
    """An action set may hold more actions than the model has classes: top_k applies to each list."""
    info = api.GetModelInfo(pb.GetModelInfoRequest(), timeout=TIMEOUT)
    wave = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(3.0, people=1)))
    actions = len(info.labels) + 2
    for i in range(actions):
        api.EnrollAction(pb.EnrollActionRequest(action_set="many", action=f"a{i}", examples=[wave]), timeout=TIMEOUT)
    try:
        answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=wave, action_set="many", top_k=100), timeout=TIMEOUT)
        assert len(answer.labels) == len(info.labels) and len(answer.custom_labels) == actions
        stream = pb.SkeletonStreamConfig(stream=pb.StreamConfig(action_set="many", top_k=100))
        events = collect(
            api.StreamSkeletons(skeleton_requests(stream, waving_skeletons(3.0, people=1)), timeout=TIMEOUT)
        )
        assert events.events and all(len(e.custom_labels) == actions for e in events.events)
    finally:
        for i in range(actions):
            api.DeleteAction(pb.DeleteActionRequest(action_set="many", action=f"a{i}"), timeout=TIMEOUT)


class _FailingModel:
    """A loaded model whose batches fail while ``failing`` is set (onnxruntime raising mid-run)."""

    def __init__(self, model) -> None:
        self.model, self.name, self.failing = model, model.name, True

    def run(self, batch: np.ndarray):
        if self.failing:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : a failing kernel")
        return self.model.run(batch)


def test_a_batch_the_model_fails_costs_only_its_windows(config: ServerConfig) -> None:
    """A model call that raises drops its stream windows as classify_error (the stream goes on and
    ends normally) and fails a clip call with INTERNAL; once the model runs again, so does the server."""
    with running_server(config) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        batcher = server.runtime.batchers["sports2d"]
        failing = batcher.model = _FailingModel(batcher.model)
        stream = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="failing"))
        outcome = collect(
            api.StreamSkeletons(skeleton_requests(stream, waving_skeletons(3.0, people=1)), timeout=TIMEOUT)
        )
        assert not outcome.events and outcome.final.frames_processed == 90
        assert outcome.final.windows_dropped["classify_error"] > 0 and not outcome.final.windows_classified
        clip = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(2.0, people=1)))
        code, details = status_of(lambda: api.ClassifyClip(pb.ClassifyClipRequest(clip=clip), timeout=TIMEOUT))
        assert (code, details) == (
            grpc.StatusCode.INTERNAL,
            "model sports2d failed to classify (RuntimeError; see the server log)",
        )
        failing.failing = False
        assert_still_serving(channel)


class _SlowModel:
    """A loaded model that takes ``seconds`` a batch: a model slower than its callers send."""

    def __init__(self, model, seconds: float) -> None:
        self.model, self.name, self.seconds = model, model.name, seconds

    def run(self, batch: np.ndarray):
        time.sleep(self.seconds)
        return self.model.run(batch)


def test_a_fast_skeleton_stream_holds_a_share_of_the_models_queue(config: ServerConfig) -> None:
    """A skeleton client sending as fast as it can, one window a frame, to a model slower than it:
    beyond its share of the model's queue (a quarter) its windows are dropped as stream_behind,
    leaving the rest of the queue to other streams; with lossless the server stops reading it
    instead, and every window is classified."""
    with running_server(replace(config, max_batch_queue=8, max_batch=2)) as server:
        api = pb_grpc.ActionRecognitionStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
        batcher = server.runtime.batchers["sports2d"]
        batcher.model = _SlowModel(batcher.model, 0.02)
        frames = waving_skeletons(3.0, people=2)
        finals = []
        for lossless in (False, True):
            stream = pb.SkeletonStreamConfig(stream=pb.StreamConfig(window_stride=1, lossless=lossless))
            outcome = collect(api.StreamSkeletons(skeleton_requests(stream, frames), timeout=TIMEOUT))
            assert outcome.final.frames_processed == len(frames)
            assert outcome.final.windows_classified == len(outcome.events)
            finals.append(outcome.final)
        fast, lossless = finals
        assert set(fast.windows_dropped) == {"stream_behind"}, fast
        assert not lossless.windows_dropped, lossless
        assert lossless.windows_classified == fast.windows_classified + fast.windows_dropped["stream_behind"]


def test_bad_enrolments_are_refused(api) -> None:
    wave = pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(1.0, people=1)))
    code, details = status_of(lambda: api.EnrollAction(pb.EnrollActionRequest(action="x"), timeout=TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "at least one example" in details
    code, details = status_of(lambda: api.EnrollAction(pb.EnrollActionRequest(action="", examples=[wave]), timeout=5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "action name" in details


# ---------------------------------------------------------------- bad input


def _frame_stream(api, messages: list[pb.StreamFramesRequest]):
    return lambda: collect(api.StreamFrames(iter(messages), timeout=TIMEOUT))


PNG = (VIDEOS / "basketball1.png").read_bytes()
CONFIG = pb.StreamFramesRequest(config=pb.StreamConfig(stream_id="bad"))


def _frame(timestamp: int, **image) -> pb.StreamFramesRequest:
    return pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=timestamp, **image))


@pytest.mark.parametrize(
    "messages, message",
    [
        ([_frame(0, encoded=PNG)], "first message of a stream must be its configuration"),
        ([CONFIG, _frame(0, encoded=PNG), CONFIG], "configured once"),
        ([CONFIG, _frame(0, encoded=b"\xff\xd8\xff\xe0 not really a jpeg")], "frame 0 (t=0 ms): truncated or corrupt"),
        ([CONFIG, _frame(0, encoded=PNG), _frame(40, encoded=PNG[:5000])], "frame 1 (t=40 ms): truncated PNG"),
        ([CONFIG, _frame(0, encoded=b"")], "empty image bytes"),
        ([CONFIG, _frame(0, encoded=PNG + bytes(2 << 20))], "over the limit of 1048576"),
        ([CONFIG, _frame(0, raw=pb.RawImage(rgb=bytes(100), width=10, height=10))], "needs 300 RGB bytes"),
        # a tiny file: MediaPipe would abort the whole server on a side of 32767 pixels or more
        (
            [CONFIG, _frame(0, encoded=cv2.imencode(".png", np.zeros((40_000, 1, 3), np.uint8))[1].tobytes())],
            "image of 1x40000 pixels has a side over 16384",
        ),
        ([CONFIG, _frame(0, raw=pb.RawImage(rgb=bytes(3 * 16_385), width=16_385, height=1))], "has a side over"),
        ([CONFIG, _frame(0, encoded=PNG), _frame(0, encoded=PNG)], "does not follow the previous frame's 0 ms"),
        ([CONFIG, _frame(10, encoded=PNG), _frame(5, encoded=PNG)], "does not follow"),
        ([pb.StreamFramesRequest(config=pb.StreamConfig(max_people=99))], "over this server's limit"),
        ([pb.StreamFramesRequest(config=pb.StreamConfig(stats_interval_ms=1))], "stats_interval_ms 1 is under 50"),
    ],
    ids=[
        "frame-before-config",
        "second-config",
        "corrupt-jpeg",
        "truncated-png",
        "empty-bytes",
        "oversized-bytes",
        "wrong-raw-size",
        "tall-png",
        "wide-raw",
        "repeated-timestamp",
        "decreasing-timestamp",
        "too-many-people",
        "statistics-too-often",
    ],
)
def test_bad_frame_streams_get_invalid_argument(api, channel, messages, message: str) -> None:
    code, details = status_of(_frame_stream(api, messages))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details
    assert_still_serving(channel)


def _until_failure(call) -> tuple[list[pb.StreamResponse], grpc.RpcError]:
    """A call's responses up to the error that ended it, and that error."""
    responses = []
    with pytest.raises(grpc.RpcError) as error:
        for response in call:
            responses.append(response)
    return responses, error.value


def test_a_failed_stream_sends_its_final_statistics_before_the_error(api, channel) -> None:
    """Nothing lost unseen when a stream fails: its last message counts every frame it took (the
    bad one as invalid; any still in hand, as stream_failed once their pose returns) and says
    classified only for windows whose events were sent, then the status says what was wrong.
    Camera frames and skeletons alike."""
    frames = [_frame(40 * k, encoded=PNG) for k in range(6)] + [_frame(1000, encoded=b"junk")]
    camera = api.StreamFrames(iter([CONFIG, *frames]), timeout=TIMEOUT)
    good = waving_skeletons(0.5, people=1)
    nan = pb.SkeletonFrame(timestamp_ms=10_000, people=[pb.Skeleton(coords=[float("nan")] * 66)])
    skeletons = api.StreamSkeletons(skeleton_requests(pb.SkeletonStreamConfig(), good + [nan]), timeout=TIMEOUT)
    for call, received in ((camera, len(frames)), (skeletons, len(good) + 1)):
        responses, error = _until_failure(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        final = responses[-1].stats
        assert final.final and final.frames_pending == 0, final
        assert final.frames_received == received and accounted(final) == received, final
        assert final.frames_dropped["invalid"] == 1, final
        assert final.windows_classified == sum(r.WhichOneof("kind") == "event" for r in responses), final
    assert_still_serving(channel)


def test_an_event_made_as_its_stream_fails_is_dropped_not_counted_as_sent(config: ServerConfig, monkeypatch) -> None:
    """The stream fails while a window's event is being made: the event would go behind the
    failure, never sent, so its window is counted dropped (stream_failed), not classified."""
    with running_server(config) as server:
        make_labels = service.session.top_labels

        def failing_meanwhile(*args):
            for session in list(server.sessions):
                session.fail(InputError("a bad frame arrived meanwhile"))
            return make_labels(*args)

        monkeypatch.setattr(service.session, "top_labels", failing_meanwhile)
        frames = waving_skeletons(4.0, people=1)
        call = stub(f"127.0.0.1:{server.port}").StreamSkeletons(
            skeleton_requests(pb.SkeletonStreamConfig(), frames), timeout=TIMEOUT
        )
        responses, error = _until_failure(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "a bad frame arrived meanwhile" in error.details()
    final = responses[-1].stats
    assert final.final and not any(r.WhichOneof("kind") == "event" for r in responses)
    assert final.windows_classified == 0 and final.windows_dropped["stream_failed"] >= 1, final


TRUNCATED = b"\x0a\x05\x0a"  # a field that says 5 bytes follow, and one does: no message parses it


def test_messages_that_do_not_parse_are_invalid_argument(channel) -> None:
    """Bytes gRPC cannot parse as the request (a client in another language can send them) are
    bad input, said so, not INTERNAL; mid-stream they end the stream with its final statistics,
    not as a clean end of the stream."""
    raw_stream = channel.stream_stream(
        f"/{SERVICE_NAME}/StreamSkeletons", request_serializer=bytes, response_deserializer=pb.StreamResponse.FromString
    )
    code, details = status_of(lambda: list(raw_stream(iter([TRUNCATED]), timeout=TIMEOUT)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "the stream's first message could not be parsed" in details
    good = [r.SerializeToString() for r in skeleton_requests(pb.SkeletonStreamConfig(), waving_skeletons(0.5))]
    responses, error = _until_failure(raw_stream(iter([*good, TRUNCATED, *good[1:]]), timeout=TIMEOUT))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    assert "a message of the stream could not be parsed" in error.details()
    final = responses[-1].stats
    assert final.final and final.frames_received == len(good) - 1 == accounted(final), final
    raw_call = channel.unary_unary(
        f"/{SERVICE_NAME}/GetModelInfo", request_serializer=bytes, response_deserializer=pb.ModelInfo.FromString
    )
    code, details = status_of(lambda: raw_call(TRUNCATED, timeout=TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "the request could not be parsed" in details
    assert_still_serving(channel)


def _skeleton_stream(api, config: pb.SkeletonStreamConfig, frames):
    return lambda: collect(api.StreamSkeletons(skeleton_requests(config, frames), timeout=TIMEOUT))


def test_bad_skeletons_get_invalid_argument(api, channel) -> None:
    good = waving_skeletons(0.5, people=1)
    nan = pb.SkeletonFrame(timestamp_ms=10_000, people=[pb.Skeleton(coords=[float("nan")] * 66)])
    short = pb.SkeletonFrame(timestamp_ms=10_000, people=[pb.Skeleton(coords=[1.0] * 65)])
    plain = pb.SkeletonStreamConfig()
    with_id = pb.SkeletonFrame(timestamp_ms=10_000, people=[pb.Skeleton(coords=good[0].people[0].coords, track_id=0)])
    without_id = pb.SkeletonFrame(timestamp_ms=10_001, people=[pb.Skeleton(coords=good[0].people[0].coords)])
    last = good[-1].timestamp_ms
    repeated = pb.SkeletonFrame(timestamp_ms=last, people=good[-1].people)
    earlier = pb.SkeletonFrame(timestamp_ms=last - 5, people=good[-1].people)
    cases = [
        (plain, good + [repeated], f"does not follow the previous frame's {last} ms"),
        (plain, good + [earlier], "does not follow"),
        (plain, good + [nan], "coordinates must be finite"),
        # the server's ids and the caller's would name different people alike
        (plain, good + [with_id], "people with a track_id in a stream whose people the server tracks"),
        (plain, [with_id, without_id], "people without a track_id in a stream whose people carry them"),
        (plain, good + [short], "has 65 values; mediapipe33 in 2-D needs 33 x 2 = 66"),
        (pb.SkeletonStreamConfig(format=pb.SkeletonFormat(layout="kinect99")), good, "kinect99"),
        (pb.SkeletonStreamConfig(format=pb.SkeletonFormat(dims=3)), good, "takes 2-D skeletons"),
        (pb.SkeletonStreamConfig(format=pb.SkeletonFormat(coordinate_space="polar")), good, "coordinate space"),
    ]
    for config, frames, message in cases:
        code, details = status_of(_skeleton_stream(api, config, frames))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and message in details, (message, details)
    frame_first = [pb.StreamSkeletonsRequest(frame=frame) for frame in good[:2]]
    code, details = status_of(lambda: collect(api.StreamSkeletons(iter(frame_first), timeout=TIMEOUT)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "first message of a stream must be its configuration" in details
    assert_still_serving(channel)


def test_unknown_model_or_action_set_is_not_found(api, channel, server: ActionServer) -> None:
    for config in (pb.StreamConfig(model="nope"), pb.StreamConfig(action_set="nope")):
        request = pb.SkeletonStreamConfig(stream=config)
        code, details = status_of(_skeleton_stream(api, request, waving_skeletons(0.2, people=1)))
        assert code == grpc.StatusCode.NOT_FOUND and "nope" in details
    # A name no set can have is refused as such, in a short message, and leaves nothing behind
    # (a cache of every name asked for would grow with each one).
    store = server.runtime.actions
    cached = len(store._prototypes)
    huge = "x" * 100_000
    for call in (
        _skeleton_stream(api, pb.SkeletonStreamConfig(stream=pb.StreamConfig(action_set=huge)), []),
        lambda: api.ClassifyClip(
            pb.ClassifyClipRequest(
                clip=pb.Clip(skeletons=pb.SkeletonClip(frames=waving_skeletons(1.0))), action_set=huge
            ),
            timeout=TIMEOUT,
        ),
    ):
        code, details = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "(100000 characters)" in details and len(details) < 300
    for i in range(20):
        status_of(_skeleton_stream(api, pb.SkeletonStreamConfig(stream=pb.StreamConfig(action_set=f"none-{i}")), []))
    assert len(store._prototypes) == cached
    assert_still_serving(channel)


def test_one_stream_too_many_gets_resource_exhausted(api, channel, server: ActionServer) -> None:
    held = [HeldRequests([pb.StreamSkeletonsRequest(config=pb.SkeletonStreamConfig())]) for _ in range(MAX_STREAMS)]
    calls = [api.StreamSkeletons(iter(h), timeout=TIMEOUT) for h in held]
    try:
        assert wait_until(lambda: server.runtime.slots.open == MAX_STREAMS)
        code, details = status_of(_skeleton_stream(api, pb.SkeletonStreamConfig(), []))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and f"{MAX_STREAMS} streams open" in details
    finally:
        for h in held:
            h.release.set()
        for call in calls:
            collect(call)
    assert_still_serving(channel)


def test_a_stream_that_sends_no_configuration_in_time_is_told_so(config: ServerConfig) -> None:
    """A stream that opens and says nothing ends after ``config_seconds`` with DEADLINE_EXCEEDED
    and a message that says why (not a bare CANCELLED), and gives its slot back; one that closes
    before a word ends OK."""
    with running_server(replace(config, config_seconds=0.5)) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        api = pb_grpc.ActionRecognitionStub(channel)
        silent = HeldRequests([])
        try:
            began = time.monotonic()
            code, details = status_of(lambda: collect(api.StreamFrames(iter(silent), timeout=TIMEOUT)))
            took = time.monotonic() - began
        finally:
            silent.release.set()
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, (code, details)
        assert "sent no configuration within 0.5 s" in details and "first message" in details
        assert 0.5 <= took < TIMEOUT / 2, took
        assert not collect(api.StreamSkeletons(iter(()), timeout=TIMEOUT)).events  # closed before a word: OK
        sample = server.metrics.registry.get_sample_value
        assert wait_until(lambda: server.runtime.slots.open == 0)
        # the thread that waited for the silent stream's first message ended with the call
        assert wait_until(lambda: not any(t.name == "stream-first-message" for t in threading.enumerate()))
        assert wait_until(
            lambda: sample("actionrec_rpcs_total", {"method": "StreamFrames", "code": "DEADLINE_EXCEEDED"}) == 1
        )
        assert sample("actionrec_rpcs_total", {"method": "StreamSkeletons", "code": "OK"}) == 1
        assert_still_serving(channel)


class _NoStreamReaders:
    """``threading`` for the server module, except that a stream's reader thread cannot start
    (a process at its thread limit)."""

    def __getattr__(self, name: str):
        return getattr(threading, name)

    def Thread(self, *args, name: str = "", **kwargs) -> threading.Thread:
        if name == "stream-reader":
            raise RuntimeError("can't start new thread")
        return threading.Thread(*args, name=name, **kwargs)


def test_a_stream_that_fails_as_it_opens_gives_its_slot_back(api, channel, server: ActionServer, monkeypatch) -> None:
    monkeypatch.setattr(service.server, "threading", _NoStreamReaders())
    for _ in range(MAX_STREAMS + 1):  # one slot kept each time would refuse the last with RESOURCE_EXHAUSTED
        code, details = status_of(_skeleton_stream(api, pb.SkeletonStreamConfig(), waving_skeletons(0.5)))
        assert code == grpc.StatusCode.INTERNAL, (code, details)
    assert wait_until(lambda: server.runtime.slots.open == 0 and not server.sessions)
    active = server.metrics.registry.get_sample_value("actionrec_active_streams", {"kind": "skeletons"})
    assert active == 0
    monkeypatch.undo()
    assert_still_serving(channel)


def test_a_client_that_vanishes_mid_stream_frees_its_stream(api, channel, server: ActionServer, arm_wrestling) -> None:
    frames = [_frame(ts, encoded=data) for data, ts in arm_wrestling[:10]]
    held = HeldRequests([pb.StreamFramesRequest(config=pb.StreamConfig(stream_id="vanishing")), *frames])
    call = api.StreamFrames(iter(held), timeout=TIMEOUT)
    try:
        assert wait_until(
            lambda: len(server.sessions) == 1 and next(iter(server.sessions)).stats().frames_received == 10
        )
        call.cancel()  # the client goes away without closing its stream
        assert wait_until(lambda: not server.sessions and server.runtime.slots.open == 0)
    finally:
        held.release.set()
    assert_still_serving(channel)


def test_a_bad_stream_does_not_disturb_a_good_one_running_beside_it(api, server: ActionServer) -> None:
    good = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="good"))
    requests = list(skeleton_requests(good, waving_skeletons(4.0)))  # the configuration and 120 frames
    go_on = threading.Event()

    def held_halfway():
        yield from requests[:61]
        go_on.wait(TIMEOUT)
        yield from requests[61:]

    results: dict[str, Outcome] = {}
    thread = threading.Thread(
        target=lambda: results.setdefault("good", collect(api.StreamSkeletons(held_halfway(), timeout=TIMEOUT)))
    )
    thread.start()
    try:
        # the bad streams come while the good one is open, half its frames in
        assert wait_until(lambda: any(s.stats().frames_processed == 60 for s in server.sessions))
        for _ in range(3):
            code, _ = status_of(_frame_stream(api, [CONFIG, _frame(0, encoded=b"junk")]))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(server.sessions) == 1
    finally:
        go_on.set()
        thread.join(TIMEOUT)
    assert results["good"].events and results["good"].final.frames_processed == 120


def test_frames_pending_when_the_server_stops_are_dropped_as_shutdown(config: ServerConfig) -> None:
    """Not as `cancelled`: gRPC cancels the open calls as the server stops, and the frames they
    had pending are the shutdown's, as the drop policy says."""
    frames = [pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=i * 67, raw=BLANK)) for i in range(12)]
    held = HeldRequests([pb.StreamFramesRequest(config=pb.StreamConfig(stream_id="s", lossless=True)), *frames])
    slow = replace(config, workers=1, pin_workers=False)
    with running_server(slow, lambda max_people: NobodyPose(seconds=0.3)) as server:
        call = stub(f"127.0.0.1:{server.port}").StreamFrames(iter(held), timeout=TIMEOUT)
        assert wait_until(lambda: any(s.stats().frames_received == 12 for s in server.sessions), TIMEOUT)
        server.stop(0)
        held.release.set()
        status_of(lambda: collect(call))
        sample = server.metrics.registry.get_sample_value
        dropped = {
            reason: sample("actionrec_frames_dropped_total", {"reason": reason})
            for reason in ("cancelled", "shutdown", "stream_ended")
        }
        processed = sample("actionrec_frames_processed_total", {"kind": "frames"})
    assert dropped["shutdown"] > 0 and not dropped["cancelled"] and not dropped["stream_ended"]
    assert processed + dropped["shutdown"] == 12


def test_a_drain_after_the_client_sent_everything_ends_the_stream_as_usual(config: ServerConfig) -> None:
    """A client that had sent its last frame when the server began to drain lost nothing: its
    frames are posed and the call ends OK, not UNAVAILABLE with a request to reconnect (a file
    client would report a failure, or send the file again)."""
    frames = [pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=i * 67, raw=BLANK)) for i in range(8)]
    requests = [pb.StreamFramesRequest(config=pb.StreamConfig(stream_id="sent", lossless=True)), *frames]
    slow = replace(config, workers=1, pin_workers=False)
    with running_server(slow, lambda max_people: NobodyPose(seconds=0.2)) as server:
        call = stub(f"127.0.0.1:{server.port}").StreamFrames(iter(requests), timeout=TIMEOUT)
        # every frame in and the input closed, most of them still to pose
        assert wait_until(lambda: any(s._input_ended for s in server.sessions), TIMEOUT)
        draining = threading.Thread(target=server.drain, args=(TIMEOUT,))
        draining.start()
        final = collect(call).final
        draining.join(TIMEOUT)
    assert final.frames_processed == 8 and not final.frames_dropped


def test_a_clip_call_that_ends_stops_posing_its_clip(config: ServerConfig) -> None:
    """A client that gives up on a ClassifyClip (no deadline), and a server that stops under one,
    end the call's posing within a moment: it no longer holds a pose worker and a call slot (or the
    process's exit) until the whole clip is posed."""
    posed: list[int] = []  # every frame posed, by each estimator the server makes
    clip = pb.Clip(frames=pb.FrameClip(frames=[pb.Frame(timestamp_ms=i * 67, raw=BLANK) for i in range(50)]))
    settings = replace(config, workers=1, pin_workers=False, max_clip_calls=1)
    with running_server(settings, lambda max_people: NobodyPose(seconds=0.3, posed=posed)) as server:
        call = stub(f"127.0.0.1:{server.port}").ClassifyClip.future(pb.ClassifyClipRequest(clip=clip))
        assert wait_until(lambda: len(posed) >= 2, TIMEOUT)
        call.cancel()
        assert wait_until(lambda: server.runtime.call_slots.open == 0, 5)
        time.sleep(0.5)  # a frame being posed when the call ended may finish; no more come
        stopped_at = len(posed)
        time.sleep(0.7)
        assert len(posed) == stopped_at < 10  # of the clip's 50 (0.3 s each)

        call = stub(f"127.0.0.1:{server.port}").ClassifyClip.future(pb.ClassifyClipRequest(clip=clip))
        assert wait_until(lambda: len(posed) >= stopped_at + 2, TIMEOUT)
        began = time.monotonic()
        server.drain(timeout=1.0)
        assert call.exception(TIMEOUT).code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - began < 5 and server.runtime.call_slots.open == 0


def test_a_drain_lets_a_clip_call_under_way_finish(config: ServerConfig) -> None:
    """SIGTERM's drain waits for clip calls as for streams, within its deadline: a call that
    began before it gets its own answer, not UNAVAILABLE (here: nobody in the clip)."""
    posed: list[int] = []
    # 6 s of posing: longer than the grace stop() gives calls (STOP_GRACE_SECONDS)
    clip = pb.Clip(frames=pb.FrameClip(frames=[pb.Frame(timestamp_ms=i * 67, raw=BLANK) for i in range(20)]))
    settings = replace(config, workers=1, pin_workers=False)
    with running_server(settings, lambda max_people: NobodyPose(seconds=0.3, posed=posed)) as server:
        warm_up = len(posed)  # the frames loading posed
        call = stub(f"127.0.0.1:{server.port}").ClassifyClip.future(pb.ClassifyClipRequest(clip=clip))
        assert wait_until(lambda: len(posed) > warm_up, TIMEOUT)
        server.drain(timeout=TIMEOUT)
        assert len(posed) == warm_up + 20  # the whole clip, before the server stopped
        error = call.exception(TIMEOUT)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "no person" in error.details()


def test_a_drain_waits_for_an_enrolment_being_stored(config: ServerConfig, tmp_path: Path) -> None:
    """An enrolment whose clips are posed but whose store write is slow (a busy disk) still holds
    its call slot: a drain waits for it, and the caller gets its answer, not UNAVAILABLE."""
    example = pb.Clip(frames=pb.FrameClip(frames=[pb.Frame(timestamp_ms=i * 67, raw=BLANK) for i in range(3)]))
    settings = replace(config, workers=1, pin_workers=False, actions_file=tmp_path / "actions.json")
    with running_server(settings, lambda max_people: StillPerson(seconds=0.0)) as server:
        store, writing, go_on = server.runtime.actions, threading.Event(), threading.Event()
        enroll = store.enroll

        def slow_enroll(*args, **kwargs):
            writing.set()
            go_on.wait(TIMEOUT)
            return enroll(*args, **kwargs)

        store.enroll = slow_enroll
        api = stub(f"127.0.0.1:{server.port}")
        call = api.EnrollAction.future(pb.EnrollActionRequest(action="still", examples=[example]), timeout=TIMEOUT)
        assert writing.wait(TIMEOUT)
        assert server.runtime.call_slots.open == 1
        with ThreadPoolExecutor(1) as pool:
            drained = pool.submit(server.drain, TIMEOUT)
            time.sleep(0.5)
            assert not drained.done()  # the drain waits for the store
            go_on.set()
            drained.result(TIMEOUT)
        assert call.result(TIMEOUT).action.examples == 1
        assert [a.action for a in store.list()] == ["still"]


def test_an_enrolments_clips_share_the_calls_time_cap(config: ServerConfig, monkeypatch) -> None:
    """A unary call without a deadline gets MAX_CALL_SECONDS in all, not that much for each of
    its clips (and again for classifying each): three clips of 0.6 s each are over a 1 s cap."""
    monkeypatch.setattr(service.server, "MAX_CALL_SECONDS", 1.0)
    example = pb.Clip(frames=pb.FrameClip(frames=[pb.Frame(timestamp_ms=i * 67, raw=BLANK) for i in range(3)]))
    settings = replace(config, workers=1, pin_workers=False)
    with running_server(settings, lambda max_people: StillPerson(seconds=0.2)) as server:
        api = stub(f"127.0.0.1:{server.port}")
        one = api.EnrollAction(pb.EnrollActionRequest(action="still", examples=[example]), timeout=TIMEOUT)
        assert one.action.examples == 1  # one clip is well within the cap
        code, details = status_of(
            lambda: api.EnrollAction(pb.EnrollActionRequest(action="stiller", examples=[example] * 3), timeout=TIMEOUT)
        )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "longer than the call's deadline" in details


# ---------------------------------------------------------------- the command line's clip calls


def test_classify_enroll_list_and_delete_from_video_files(address: str, tmp_path: Path, capsys) -> None:
    """`actionrec classify` and `actionrec actions` on real clips: a clip file goes as the
    frames its model uses, an enrolled action is matched on a clip of it, and list and delete
    see what was enrolled."""
    server = Server(address)
    wrestling, hugging = VIDEOS / "arm_wrestling.mp4", VIDEOS / "hugging_ntu_style.mp4"
    info = model_info(server, "")  # with how the server takes frames: its pose width, clip and call limits
    limits = (info.pose_width, info.max_clip_frames, info.max_message_bytes, info.max_people)
    assert info.frame_rate == 15.0 and limits == (640, 900, 64 << 20, 4)
    clip = clip_from_file(wrestling, info)
    assert 145 <= len(clip.frames.frames) <= 155  # 280 frames at 28 fps: 10 s, at 15 fps
    wide = clip_from_file(hugging, info).frames.frames  # 1920 x 1080: sent at the server's pose width
    assert {cv2.imdecode(np.frombuffer(f.encoded, np.uint8), cv2.IMREAD_COLOR).shape[:2] for f in wide} == {(360, 640)}
    narrow = clip_from_file(hugging, info, Sending(width=320)).frames.frames[0]  # --width
    assert cv2.imdecode(np.frombuffer(narrow.encoded, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (180, 320)
    warnings: list[str] = []
    answer = classify(server, wrestling, Sending(tell=warnings.append), top_k=3)
    assert warnings == []
    still = VIDEOS / "basketball1.png"  # a photo: one pose, held still for the whole window
    photo = classify(server, still, Sending(tell=warnings.append))
    assert photo["windows"] == 1 and photo["frames_seen"] == 1
    assert warnings == [
        f"{still}: the person is seen in 1 model frame of the 32 a window holds:"
        " the answer is about a pose more than a motion"
    ]
    # about the person seen longest (two people, one posed a frame): 4 s of the 10, in 4 windows
    assert answer["model"] == "sports2d" and answer["windows"] >= 2 and len(answer["labels"]) == 3
    assert answer["label"] == answer["labels"][0]["label"] and 0 < answer["score"] <= 1
    assert answer["end_ms"] - answer["start_ms"] > 2000 and answer["frames_seen"] > 16  # over half a window

    enrolled = enroll(server, "wrestle", [wrestling], "cli")
    assert (enrolled["action"], enrolled["action_set"], enrolled["examples"]) == ("wrestle", "cli", 1)
    enroll(server, "hug", [hugging], "cli")
    for path, action in ((wrestling, "wrestle"), (hugging, "hug")):
        answer = classify(server, path, action_set="cli", top_k=2)
        assert answer["custom_labels"][0]["label"] == action and answer["custom_labels"][0]["score"] > 0.99
    assert [(a["action_set"], a["action"]) for a in list_actions(server, "cli", "")] == [
        ("cli", "hug"),
        ("cli", "wrestle"),
    ]
    # the same through the command line: one line an action, JSON with --json
    assert main(["actions", "list", "--server", address, "--set", "cli", "--json"]) == 0
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == ["hug", "wrestle"]
    assert main(["classify", str(hugging), "--server", address, "--action-set", "cli"]) == 0
    assert capsys.readouterr().out.startswith(f"{hugging}: person ")
    assert delete_action(server, "hug", "cli", "")["action"] == "hug"
    assert [a["action"] for a in list_actions(server, "cli", "")] == ["wrestle"]
    with pytest.raises(InputError, match=f"^{address}: NOT_FOUND: no action 'hug' in set 'cli'"):
        delete_action(server, "hug", "cli", "")
    # an action asked for in the wrong set is told where one of its name is
    with pytest.raises(InputError, match="no action 'wrestle' in set 'gym' .*there is one in set 'cli' for model"):
        delete_action(server, "wrestle", "gym", "")

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    for call in (
        lambda: classify(server, text),
        lambda: enroll(server, "x", [wrestling, text], "cli"),  # every file is read before sending
    ):
        with pytest.raises(InputError, match="notes.mp4: (not a readable video|a text file, not a video)"):
            call()
    assert [a["action"] for a in list_actions(server, "cli", "")] == ["wrestle"]
    with pytest.raises(InputError, match=f"^{address}: NOT_FOUND: action set 'nope' has no actions"):
        classify(server, wrestling, action_set="nope")


def test_clip_files_the_server_refuses_are_named_and_the_others_still_answered(
    address: str, tmp_path: Path, capsys
) -> None:
    """A clip with nobody in it among others: `classify` reports it by file and answers the rest
    (exit 2, an error record with --json); `enroll` names the file, not the example's number."""
    nobody, wrestling = _blank_video(tmp_path / "empty_room.avi"), VIDEOS / "arm_wrestling.mp4"
    assert main(["classify", str(nobody), str(wrestling), "--server", address, "--json"]) == 2
    captured = capsys.readouterr()
    first, second = map(json.loads, captured.out.splitlines())
    assert (
        first["clip"] == str(nobody) and "INVALID_ARGUMENT: " in first["error"] and "no person found" in first["error"]
    )
    assert second["clip"] == str(wrestling) and second["labels"]
    assert captured.err.splitlines() == [f"actionrec classify: error: {first['error']}"]
    server = Server(address)
    with pytest.raises(InputError, match=rf"INVALID_ARGUMENT: {nobody}: no person found in the clip's 10 frames"):
        enroll(server, "wave", [wrestling, nobody], "cli-errors", Sending(tell=lambda message: None))
    assert list_actions(server, "cli-errors", "") == []


def test_classify_refuses_what_would_fail_every_clip_once(address: str, tmp_path: Path, capsys) -> None:
    """An action set name or a people count the server refuses for any clip ends `classify` with
    one error before a clip is read, not one error a clip (each clip sent in vain)."""
    wrestling, hugging = VIDEOS / "arm_wrestling.mp4", VIDEOS / "hugging_ntu_style.mp4"
    for flags, message in [
        (["--action-set", "gym "], "action set name 'gym ' must be 1 to 64 printable characters"),
        (["--max-people", "9"], "--max-people 9 is over the server's limit of 4"),
    ]:
        assert main(["classify", str(wrestling), str(hugging), "--server", address, *flags]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("error") == 1 and message in captured.err, captured.err


def test_clip_files_are_checked_before_anything_is_sent(tmp_path: Path) -> None:
    """What the server would refuse for a whole call is refused here first, naming the files:
    too long a clip, too many bytes for one call, a file twice, a bad name, too many clips. The
    server address is closed: a check made only after a call would fail on the connection."""
    server = Server(f"127.0.0.1:{free_port()}")
    wrestling = VIDEOS / "arm_wrestling.mp4"
    # the limits a server says it has in GetModelInfo, not only its defaults
    short = pb.ModelInfo(frame_rate=15.0, pose_width=640, max_clip_frames=20)
    with pytest.raises(InputError, match=r"longer than a clip may be \(20 frames at the model's 15 fps, 1 s\)"):
        clip_from_file(wrestling, short)
    small = pb.ModelInfo(frame_rate=15.0, pose_width=640, max_message_bytes=1 << 20)
    clip = pb.ClassifyClipRequest(clip=clip_from_file(wrestling, small))
    with pytest.raises(InputError, match=rf"^{wrestling}: 3 MiB of frames, over the 1 MiB one call may carry"):
        check_size(clip, [wrestling], small)
    check_size(clip, [wrestling], pb.ModelInfo(frame_rate=15.0))  # a server that does not say: its defaults
    for action, paths, message in [
        ("wave", [wrestling, VIDEOS / ".." / "videos" / "arm_wrestling.mp4"], "arm_wrestling.mp4: given twice"),
        ("x" * 65, [wrestling], "action name 'x+' must be 1 to 64 printable characters"),
        ("wave", [wrestling] * 33, "33 example clips; at most 32 a call"),
    ]:
        with pytest.raises(InputError, match=message):
            enroll(server, action, paths, "gym")


def test_a_clip_file_cut_short_is_sent_with_a_warning(tmp_path: Path) -> None:
    original = VIDEOS / "eye_makeup_closeup.avi"
    cut = tmp_path / "cut.avi"
    cut.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
    warnings: list[str] = []
    model = pb.ModelInfo(frame_rate=15.0, pose_width=640)
    clip = clip_from_file(cut, model, Sending(tell=warnings.append))
    assert clip.frames.frames and warnings == [
        f"{cut}: the video ended after 77 of the 164 frames its file declares (cut short?)"
    ]
    warnings.clear()
    clip_from_file(original, model, Sending(tell=warnings.append))
    assert warnings == []


def test_the_model_listing_reads_the_servers_models_folder_without_torch(models_dir: Path) -> None:
    """The container has no torch and its models elsewhere (ACTIONREC_MODELS_DIR): `actionrec
    models` lists what `serve` would load there."""
    no_torch = "import sys; sys.modules['torch'] = None; from actionrec.cli import main; sys.exit(main())"
    listing = subprocess.run(
        [sys.executable, "-c", no_torch, "models", "--json"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "ACTIONREC_MODELS_DIR": str(models_dir)},
    )
    assert listing.returncode == 0, listing.stderr
    cards = json.loads(listing.stdout.splitlines()[-1])
    assert sorted(Path(card["file"]).name for card in cards) == ["daily3d.onnx", "sports2d.onnx"]


def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`actionrec models --json | head -0`: no traceback, the status of a broken pipe."""
    process = subprocess.Popen(
        [sys.executable, "-m", "actionrec.cli", "models", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # before the command writes anything
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 141 and b"Traceback" not in err, err
