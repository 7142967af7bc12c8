"""Security: TLS with a real certificate chain, token auth that leaves no trace of the token in
the logs, and the request size limits (message, image bytes, pixels, clip length).

Token refusal and a plaintext client against a TLS server are tests in
tests/test_service_operations.py; these go further: a client that trusts another certificate
authority, the logs of a server process at debug level, and every size limit at once.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.channels import call_metadata, make_channel
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.server import SERVICE_NAME
from service.testing import (
    VIDEOS,
    ServerProcess,
    TlsFiles,
    assert_still_serving,
    encoded_frames,
    frame_requests,
    make_tls_files,
    running_server,
    skeleton_frames,
    skeleton_requests,
    waving_person,
)

from .conftest import TIMEOUT

TOKEN = secrets.token_urlsafe(24)
AUTH = call_metadata(TOKEN)
# Small limits, so that requests over them are cheap to make.
MAX_MESSAGE = 256 << 10
MAX_IMAGE_BYTES = 64 << 10
MAX_PIXELS = 160 * 120
MAX_CLIP_FRAMES = 8


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(make_config, tls: TlsFiles) -> Iterator:
    """TLS, a token and small request limits, all at once."""
    config = make_config(
        tls_cert=tls.cert,
        tls_key=tls.key,
        auth_token=TOKEN,
        max_message_bytes=MAX_MESSAGE,
        max_image_bytes=MAX_IMAGE_BYTES,
        max_image_pixels=MAX_PIXELS,
        max_clip_frames=MAX_CLIP_FRAMES,
    )
    with running_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def channel(server, tls: TlsFiles) -> Iterator[grpc.Channel]:
    with make_channel(f"localhost:{server.port}", tls_ca=tls.ca) as channel:
        yield channel


@pytest.fixture(scope="module")
def api(channel) -> pb_grpc.ActionRecognitionStub:
    return pb_grpc.ActionRecognitionStub(channel)


def _code(run) -> tuple[grpc.StatusCode, str]:
    try:
        run()
    except grpc.RpcError as e:
        return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


# ---------------------------------------------------------------- TLS


def test_a_client_trusting_the_servers_ca_gets_in_by_name_and_by_address(server, tls: TlsFiles) -> None:
    for host in ("localhost", "127.0.0.1"):  # both are in the certificate's subject alternative names
        with make_channel(f"{host}:{server.port}", tls_ca=tls.ca) as channel:
            assert_still_serving(channel, metadata=AUTH)


def test_a_client_trusting_another_ca_is_refused(server, tmp_path: Path) -> None:
    stranger = make_tls_files(tmp_path / "another-ca")
    with make_channel(f"localhost:{server.port}", tls_ca=stranger.ca) as channel:
        api = pb_grpc.ActionRecognitionStub(channel)
        code, _ = _code(lambda: api.GetModelInfo(pb.GetModelInfoRequest(), metadata=AUTH, timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE  # the handshake fails: a right token does not help
        health = health_pb2_grpc.HealthStub(channel)
        code, _ = _code(lambda: health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5))
        assert code == grpc.StatusCode.UNAVAILABLE


def test_a_server_presenting_another_cas_certificate_is_refused(make_config, tls: TlsFiles, tmp_path: Path) -> None:
    """The other way round: a client that trusts our CA does not talk to an impostor."""
    impostor = make_tls_files(tmp_path / "impostor")
    with running_server(make_config(tls_cert=impostor.cert, tls_key=impostor.key)) as other:
        with make_channel(f"localhost:{other.port}", tls_ca=tls.ca) as channel:
            code, _ = _code(
                lambda: pb_grpc.ActionRecognitionStub(channel).ListModels(pb.ListModelsRequest(), timeout=5)
            )
    assert code == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------- the token stays out of the logs


def _statuses(api, metadata: tuple) -> list[grpc.StatusCode]:
    """A call, a stream and a call refused for its content, made with ``metadata``."""
    times = np.arange(60) * 33
    frames = skeleton_frames([waving_person("mediapipe33", times)], times)
    config = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="logged"))
    calls = (
        lambda: api.GetModelInfo(pb.GetModelInfoRequest(), metadata=metadata, timeout=TIMEOUT),
        lambda: list(api.StreamSkeletons(skeleton_requests(config, frames), metadata=metadata, timeout=TIMEOUT)),
        lambda: api.GetModelInfo(pb.GetModelInfoRequest(model="nope"), metadata=metadata, timeout=TIMEOUT),
    )
    return [_code(call)[0] for call in calls]


def test_no_token_reaches_the_logs_at_debug_level(models_dir: Path, tmp_path: Path) -> None:
    """A server process with its token from the environment (as a container gets it), logging at
    debug level; calls with the token, a wrong one and none; then neither token is in its output."""
    token, wrong = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    server = ServerProcess(models_dir, tmp_path, "--log-level", "debug", env={"ACTIONREC_AUTH_TOKEN": token})
    try:
        with grpc.insecure_channel(server.address) as channel:
            api = pb_grpc.ActionRecognitionStub(channel)
            ok, refused = grpc.StatusCode, [grpc.StatusCode.UNAUTHENTICATED] * 3
            assert _statuses(api, call_metadata(token)) == [ok.OK, ok.OK, ok.NOT_FOUND]
            assert _statuses(api, call_metadata(wrong)) == refused
            assert _statuses(api, ()) == refused
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(TIMEOUT) == 0
    finally:
        server.stop()
    output = "".join(server.output)
    assert "stream opened" in output and "stopped" in output  # the logs are all there
    assert token not in output and wrong not in output


# ---------------------------------------------------------------- request size limits


def _clip(frames: list[pb.Frame]) -> pb.Clip:
    return pb.Clip(frames=pb.FrameClip(frames=frames))


def _skeleton_clip(count: int) -> pb.Clip:
    times = np.arange(count) * 33
    return pb.Clip(skeletons=pb.SkeletonClip(frames=skeleton_frames([waving_person("mediapipe33", times)], times)))


@pytest.fixture(scope="module")
def footage() -> list[tuple[bytes, int]]:
    return encoded_frames(VIDEOS / "arm_wrestling.mp4", 4)  # 340 x 256: over the pixel limit


def _classify(api, clip: pb.Clip) -> Callable[[], object]:
    return partial(api.ClassifyClip, pb.ClassifyClipRequest(clip=clip), metadata=AUTH, timeout=TIMEOUT)


def _stream(api, frames: list[tuple[bytes, int]]) -> Callable[[], object]:
    return lambda: list(api.StreamFrames(frame_requests(pb.StreamConfig(), frames), metadata=AUTH, timeout=TIMEOUT))


def _limit_cases(api, footage) -> dict[str, tuple[Callable[[], object], grpc.StatusCode, str]]:
    """name: (the call, its status, words of its message)."""
    png = (VIDEOS / "basketball1.png").read_bytes()  # a real image of 130 KiB: over the byte limit
    jpeg, _ = footage[0]
    raw = pb.Frame(raw=pb.RawImage(rgb=bytes(161 * 120 * 3), width=161, height=120))
    huge = png + bytes(MAX_MESSAGE)
    enroll = pb.EnrollActionRequest(action="long", examples=[_skeleton_clip(MAX_CLIP_FRAMES + 1)])
    over = grpc.StatusCode.RESOURCE_EXHAUSTED
    bad = grpc.StatusCode.INVALID_ARGUMENT
    return {
        "message over the limit (call)": (_classify(api, _clip([pb.Frame(encoded=huge)])), over, ""),
        "message over the limit (stream)": (_stream(api, [(huge, 0)]), over, ""),
        "image bytes over the limit": (
            _classify(api, _clip([pb.Frame(encoded=png)])),
            bad,
            f"over the limit of {MAX_IMAGE_BYTES}",
        ),
        "encoded pixels over the limit": (
            _stream(api, [(jpeg, 0)]),
            bad,
            f"340x256 pixels is empty or over the limit of {MAX_PIXELS}",
        ),
        "raw pixels over the limit": (
            _classify(api, _clip([raw])),
            bad,
            f"161x120 pixels is empty or over the limit of {MAX_PIXELS}",
        ),
        "clip over the limit": (
            _classify(api, _skeleton_clip(MAX_CLIP_FRAMES + 1)),
            bad,
            f"{MAX_CLIP_FRAMES + 1} frames, over the limit of {MAX_CLIP_FRAMES}",
        ),
        "example clip over the limit": (
            partial(api.EnrollAction, enroll, metadata=AUTH, timeout=TIMEOUT),
            bad,
            f"over the limit of {MAX_CLIP_FRAMES}",
        ),
    }


def test_requests_over_the_size_limits_are_refused(api, channel, footage) -> None:
    for name, (call, status, words) in _limit_cases(api, footage).items():
        code, details = _code(call)
        assert (code, words in details) == (status, True), (name, code, details)
    # and within the limits the same calls go through
    answer = api.ClassifyClip(pb.ClassifyClipRequest(clip=_skeleton_clip(MAX_CLIP_FRAMES)), metadata=AUTH, timeout=30)
    assert answer.windows >= 1
    assert_still_serving(channel, metadata=AUTH)
