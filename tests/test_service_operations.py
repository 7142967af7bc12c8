"""Operating the service: token auth, TLS, Prometheus metrics, the client CLI, SIGTERM drain
and two replicas behind client-side round-robin load balancing (real server processes)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from actionrec.cli import main
from service.channels import make_channel
from service.config import ServerConfig
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.loadgen import frame_stream, run_streams
from service.server import REPLICA_HEADER, SERVICE_NAME
from service.testing import (
    VIDEOS,
    ServerProcess,
    TlsFiles,
    encoded_frames,
    make_tls_files,
    models_for_development,
    running_server,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return models_for_development(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secured(models_dir: Path, tls_files, tmp_path_factory) -> Iterator:
    """A server with TLS, a token and metrics, all at once."""
    config = ServerConfig(
        models_dir=models_dir,
        actions_file=tmp_path_factory.mktemp("state") / "actions.json",
        tls_cert=tls_files.cert,
        tls_key=tls_files.key,
        auth_token=TOKEN,
        metrics_port=0,
    )
    with running_server(config) as server:
        yield server


def _secure_stub(server, ca: Path) -> pb_grpc.ActionRecognitionStub:
    return pb_grpc.ActionRecognitionStub(make_channel(f"127.0.0.1:{server.port}", tls_ca=ca))


def test_token_auth_refuses_missing_and_wrong_tokens_but_not_health(secured, tls_files) -> None:
    api = _secure_stub(secured, tls_files.ca)
    request = pb.GetModelInfoRequest()
    for metadata, message in (((), "missing authorization"), ((("authorization", "Bearer nope"),), "wrong token")):
        with pytest.raises(grpc.RpcError) as error:
            api.GetModelInfo(request, metadata=metadata, timeout=TIMEOUT)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED and message in error.value.details()
    with pytest.raises(grpc.RpcError) as error:  # streams too
        list(api.StreamSkeletons(iter([pb.StreamSkeletonsRequest(config=pb.SkeletonStreamConfig())]), timeout=5))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = api.GetModelInfo(request, metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=TIMEOUT)
    assert info.name == "sports2d"
    health = health_pb2_grpc.HealthStub(make_channel(f"127.0.0.1:{secured.port}", tls_ca=tls_files.ca))
    answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_tls_server_refuses_a_plaintext_client(secured) -> None:
    plain = pb_grpc.ActionRecognitionStub(grpc.insecure_channel(f"127.0.0.1:{secured.port}"))
    with pytest.raises(grpc.RpcError) as error:
        plain.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


def test_metrics_count_frames_streams_and_batches(secured, tls_files) -> None:
    api = _secure_stub(secured, tls_files.ca)
    frames = encoded_frames(VIDEOS / "arm_wrestling.mp4", 56)

    def requests():
        yield pb.StreamFramesRequest(config=pb.StreamConfig(lossless=True, window_stride=4))
        for data, timestamp in frames:
            yield pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=timestamp, encoded=data))

    responses = list(api.StreamFrames(requests(), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=TIMEOUT))
    final = responses[-1].stats
    text = urllib.request.urlopen(f"http://127.0.0.1:{secured.metrics_port}/metrics", timeout=10).read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines() if line and not line.startswith("#")
    }
    assert values['actionrec_frames_received_total{kind="frames"}'] == 56
    assert values['actionrec_frames_processed_total{kind="frames"}'] == final.frames_processed
    assert values["actionrec_frames_skipped_total"] == final.frames_skipped
    assert values['actionrec_active_streams{kind="frames"}'] == 0
    assert values['actionrec_stage_seconds_count{stage="pose"}'] == final.frames_processed
    assert values['actionrec_batch_size_count{model="sports2d"}'] >= 1


# ---------------------------------------------------------------- the client CLI


@pytest.fixture(scope="module")
def plain_server(models_dir: Path, tmp_path_factory) -> Iterator:
    config = ServerConfig(models_dir=models_dir, actions_file=tmp_path_factory.mktemp("state") / "actions.json")
    with running_server(config) as server:
        yield server


def test_client_prints_json_events_and_writes_the_annotated_video(plain_server, tmp_path: Path, capsys) -> None:
    out = tmp_path / "annotated.mp4"
    video = VIDEOS / "arm_wrestling.mp4"
    argv = ["client", str(video), "--server", f"127.0.0.1:{plain_server.port}", "--json", "--fast"]
    assert main(argv + ["--out", str(out), "--max-frames", "112", "--stride", "8"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert events
    labels = set(plain_server.runtime.models.get().card.labels)
    for event in events:
        assert {"label", "score", "track_id", "start_ms", "end_ms"} <= set(event)
        assert event["label"] in labels and 0 < event["score"] <= 1 and event["start_ms"] < event["end_ms"]
    # Only the frames the 15 fps model uses were sent, and the server skipped none of them.
    received = int(re.search(r"(\d+) received", captured.err).group(1))
    not_sent = int(re.search(r"(\d+) frames not sent", captured.err).group(1))
    assert received + not_sent == 112 and 55 <= received <= 65
    assert " 0 skipped" in captured.err and "dropped: none" in captured.err
    capture = cv2.VideoCapture(str(out))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 112
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (340, 256)
    original = cv2.VideoCapture(str(video))
    changed = 0
    for _ in range(112):  # skeletons were drawn on the frames where people were posed
        ok_a, drawn = capture.read()
        ok_b, plain = original.read()
        assert ok_a and ok_b
        changed += np.abs(drawn.astype(int) - plain.astype(int)).max() > 100
    capture.release()
    original.release()
    assert changed >= 10


def test_client_streams_at_the_sources_own_frame_rate(plain_server, capsys) -> None:
    started = time.monotonic()
    argv = ["client", str(VIDEOS / "arm_wrestling.mp4"), "--server", f"127.0.0.1:{plain_server.port}"]
    assert main(argv + ["--max-frames", "42", "--all-frames"]) == 0
    assert time.monotonic() - started >= 41 / 28  # 42 frames of a 28 fps video take 1.5 s to happen
    err = capsys.readouterr().err
    assert "42 received" in err and "not sent" not in err
    skipped = int(re.search(r"(\d+) skipped", err).group(1))
    assert 18 <= skipped <= 22  # the server's gate: 15 of 28 frames a second


def test_client_reports_a_missing_source_and_a_refused_call(plain_server, tmp_path: Path, capsys) -> None:
    assert main(["client", str(tmp_path / "nothing.mp4"), "--server", f"127.0.0.1:{plain_server.port}"]) == 2
    assert "no such file" in capsys.readouterr().err
    argv = ["client", str(VIDEOS / "arm_wrestling.mp4"), "--server", f"127.0.0.1:{plain_server.port}"]
    assert main(argv + ["--model", "nope", "--max-frames", "2"]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err


# ---------------------------------------------------------------- server processes


@pytest.fixture
def replicas(models_dir: Path, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started = []
    try:
        for i in range(2):
            (tmp_path / str(i)).mkdir()
            started.append(ServerProcess(models_dir, tmp_path / str(i)))
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_a_server_process_keeps_serving_past_a_pipes_worth_of_logs(models_dir: Path, tmp_path: Path) -> None:
    # Each stream opened makes the server (and MediaPipe) log a few lines; a stderr pipe nobody
    # reads holds 64 KiB, after which the next line blocks a pose worker and its streams hang.
    frames = encoded_frames(VIDEOS / "arm_wrestling.mp4", 8)
    with ServerProcess(models_dir, tmp_path) as server:
        opened = 0
        while sum(map(len, server.output)) < 96 * 1024:
            results, _ = run_streams(
                server.address, lambda r: frame_stream(frames, pb.StreamConfig(), r), 8, deadline_s=TIMEOUT
            )
            assert all(r.final is not None for r in results), [r.error for r in results]
            opened += len(results)
            assert opened <= 400, "the server logs less than expected per stream"


def test_two_replicas_share_the_calls_with_round_robin(replicas: list[ServerProcess]) -> None:
    target = "ipv4:" + ",".join(r.address for r in replicas)
    channel = make_channel(target, lb_policy="round_robin")
    api = pb_grpc.ActionRecognitionStub(channel)

    def replica() -> str:
        _, call = api.GetModelInfo.with_call(pb.GetModelInfoRequest(), timeout=TIMEOUT)
        return dict(call.trailing_metadata())[REPLICA_HEADER]

    # round_robin uses the addresses whose connections are up; the second may still be connecting
    seen, deadline = set(), time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.add(replica())
    answered = [replica() for _ in range(6)]
    assert len(set(answered)) == 2 and answered[:2] * 3 == answered  # strictly alternating
    # long-lived streams are spread too: each new call goes to the next replica
    skeletons = [pb.StreamSkeletonsRequest(config=pb.SkeletonStreamConfig())]
    stream_replicas = set()
    for _ in range(2):
        call = api.StreamSkeletons(iter(skeletons), timeout=TIMEOUT)
        list(call)
        stream_replicas.add(dict(call.trailing_metadata())[REPLICA_HEADER])
    assert stream_replicas == set(answered)
    channel.close()


def test_sigterm_drains_open_streams_then_exits(models_dir: Path, tmp_path: Path) -> None:
    server = ServerProcess(models_dir, tmp_path, env={"ACTIONREC_DRAIN_SECONDS": "20"})
    try:
        channel = grpc.insecure_channel(server.address)
        health_updates: list[int] = []
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        watcher = threading.Thread(target=lambda: [health_updates.append(r.status) for r in _quietly(watch)])
        watcher.start()
        frames = encoded_frames(VIDEOS / "arm_wrestling.mp4", 140)
        sent = threading.Event()

        def requests():
            yield pb.StreamFramesRequest(config=pb.StreamConfig(stream_id="draining", lossless=True))
            for index, (data, timestamp) in enumerate(frames):
                if index == 100:
                    sent.set()
                yield pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=timestamp, encoded=data))
                time.sleep(0.01)

        call = pb_grpc.ActionRecognitionStub(channel).StreamFrames(requests(), timeout=TIMEOUT)
        responses = []
        reader = threading.Thread(target=lambda: responses.extend(_quietly(call)))
        reader.start()
        assert sent.wait(TIMEOUT)
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        reader.join(TIMEOUT)
        assert server.process.wait(TIMEOUT) == 0
        assert time.monotonic() - signalled < 10  # the open health watch does not hold the exit up
        watcher.join(TIMEOUT)
    finally:
        server.stop()
    assert call.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in call.details()
    final = responses[-1].stats
    assert final.final and final.frames_pending == 0 and not final.frames_dropped
    assert 20 <= final.frames_received < 140  # it stopped taking frames, and finished those it had
    assert final.frames_processed + final.frames_skipped == final.frames_received
    assert any(r.WhichOneof("kind") == "event" for r in responses)
    assert health_updates[0] == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in health_updates
    messages = [entry["message"] for entry in server.logs]
    assert messages.index("draining") < messages.index("stream closed") < messages.index("stopped")


def _quietly(call) -> Iterator:
    """A call's responses until it ends, however it ends."""
    try:
        yield from call
    except grpc.RpcError:
        return


def test_serve_refuses_a_bad_configuration(models_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "actionrec", "serve", "--port", "0", "--models-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no .onnx file" in result.stderr
    env = {**os.environ, "ACTIONREC_MAX_STREAMS": "many"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2 and "--max-streams" in result.stderr
    assert replace(ServerConfig(), max_streams=3).max_streams == 3
