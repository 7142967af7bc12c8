"""Helpers for the service's tests and benchmarks: models, servers, frames and skeletons.

``models_for_development`` puts the shipped models (``models/NAME.onnx``) where they exist and
the stand-ins of ``service.devmodel`` where they do not, so the same tests run against both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.config import DEFAULT_MODELS_DIR, ServerConfig
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from skeleton.layouts import get_layout
from skeleton.pose.estimator import PersonPose
from skeleton.pose.video import read_frames

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
VIDEOS = DATA / "videos"


def models_for_development(folder: Path) -> Path:
    """``folder`` with ``sports2d.onnx`` (2-D) and ``daily3d.onnx`` (3-D): the shipped files
    where present, else the development stand-ins."""
    from service.devmodel import build_model, daily3d_card, sports2d_card

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, card in (("sports2d", sports2d_card()), ("daily3d", daily3d_card())):
        shipped = DEFAULT_MODELS_DIR / f"{name}.onnx"
        if shipped.is_file():
            shutil.copyfile(shipped, folder / shipped.name)
        else:
            build_model(folder / f"{name}.onnx", card)
    return folder


@contextmanager
def running_server(config: ServerConfig, estimator_factory=None) -> Iterator:
    """An ``ActionServer`` started and loaded on 127.0.0.1 (any free port); always stopped."""
    from service.server import ActionServer

    server = ActionServer(replace(config, host="127.0.0.1", port=0), estimator_factory)
    server.start()
    try:
        server.load()
        yield server
    finally:
        server.stop()


def stub(address: str, **channel_options) -> pb_grpc.ActionRecognitionStub:
    return pb_grpc.ActionRecognitionStub(grpc.insecure_channel(address, **channel_options))


def encoded_frames(video: Path, count: int, quality: int = 90, every: int = 1) -> list[tuple[bytes, int]]:
    """The first ``count`` frames (every ``every``-th) of a real video as JPEG bytes with timestamps."""
    frames = []
    for index, (rgb, timestamp) in enumerate(read_frames(Path(video))):
        if index % every:
            continue
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        frames.append((jpeg.tobytes(), timestamp))
        if len(frames) == count:
            break
    return frames


def frame_requests(config: pb.StreamConfig, frames: list[tuple[bytes, int]]) -> Iterator[pb.StreamFramesRequest]:
    yield pb.StreamFramesRequest(config=config)
    for data, timestamp in frames:
        yield pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=timestamp, encoded=data))


def skeleton_requests(config: pb.SkeletonStreamConfig, frames) -> Iterator[pb.StreamSkeletonsRequest]:
    yield pb.StreamSkeletonsRequest(config=config)
    for frame in frames:
        yield pb.StreamSkeletonsRequest(frame=frame)


def wait_until(condition, seconds: float = 10.0) -> bool:
    """Poll ``condition()`` until it holds (True) or ``seconds`` have passed (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def free_port() -> int:
    """A loopback port nothing listens on (bound and let go: free, unless someone takes it now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class HeldRequests:
    """A stream's requests: ``messages``, then nothing until ``release`` is set (no half-close),
    so that the stream stays open for as long as a test needs it."""

    messages: list
    release: threading.Event = field(default_factory=threading.Event)
    seconds: float = 60.0  # released by then whatever happens, so that a failed test cannot hang

    def __iter__(self) -> Iterator:
        yield from self.messages
        self.release.wait(self.seconds)


@dataclass
class NobodyPose:
    """A pose estimator that finds nobody, taking ``seconds`` a frame; ``posed`` lists the
    timestamps it was given (a server's estimator factory can share one list between them)."""

    seconds: float = 0.0
    posed: list = field(default_factory=list)

    def estimate(self, rgb, timestamp_ms, size=None) -> list:
        self.posed.append(timestamp_ms)
        time.sleep(self.seconds)
        return []

    def close(self) -> None:
        pass


@dataclass
class StillPerson:
    """A pose estimator that finds one person standing still, taking ``seconds`` a frame."""

    seconds: float

    def estimate(self, rgb, timestamp_ms, size=None) -> list[PersonPose]:
        time.sleep(self.seconds)
        xy = np.stack([np.full(33, 32.0), np.linspace(8.0, 56.0, 33)], axis=1).astype(np.float32)
        world = np.concatenate([xy / 64.0, np.zeros((33, 1), np.float32)], axis=1)
        return [PersonPose(image_xy=xy, world_xyz=world, visibility=np.ones(33, np.float32))]

    def close(self) -> None:
        pass


BLANK = pb.RawImage(rgb=bytes(64 * 64 * 3), width=64, height=64)  # a frame for the pose stand-ins


def assert_still_serving(channel: grpc.Channel, metadata: tuple = (), seconds: float = 60.0) -> None:
    """Health says SERVING and a good skeleton stream gets its events and final statistics: what
    came before harmed no one."""
    from service.server import SERVICE_NAME

    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=seconds)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    times = [round(i * 1000 / 30) for i in range(90)]
    frames = skeleton_frames([waving_person("mediapipe33", np.asarray(times))], times)
    config = pb.SkeletonStreamConfig(stream=pb.StreamConfig(stream_id="still-serving"))
    call = pb_grpc.ActionRecognitionStub(channel).StreamSkeletons(
        skeleton_requests(config, frames), timeout=seconds, metadata=metadata
    )
    responses = list(call)
    assert any(r.WhichOneof("kind") == "event" for r in responses)
    final = responses[-1].stats
    assert final.final and final.frames_processed == len(frames)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the certificate authority a client trusts
    cert: Path  # the server's certificate, signed by ``ca``, for localhost and 127.0.0.1
    key: Path  # its private key


def make_tls_files(folder: Path) -> TlsFiles:
    """A throwaway certificate authority and a server certificate it signed (openssl, EC keys,
    valid for a day), in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca_key = folder / "ca-key.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
    commands = [
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", files.ca, "-subj", f"/CN=actionrec test CA {folder.name}"]
        + ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"],
        ["req", "-x509", *ec, "-CA", files.ca, "-CAkey", ca_key, "-keyout", files.key, "-out", files.cert]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        + ["-addext", "basicConstraints=critical,CA:FALSE"],
    ]
    for arguments in commands:
        subprocess.run(["openssl", *map(str, arguments)], check=True, capture_output=True, timeout=60)
    return files


# A stick figure in the vocabulary's joint names (x right, y down, in torso lengths): every other
# joint sits at the named joint it is nearest to (eyes, ears and mouth at the nose, and so on).
_FIGURE = {
    "nose": (0.0, -1.5),
    "neck": (0.0, -1.1),
    "head": (0.0, -1.5),
    "left_shoulder": (0.25, -1.0),
    "right_shoulder": (-0.25, -1.0),
    "left_elbow": (0.45, -0.6),
    "right_elbow": (-0.45, -0.6),
    "left_wrist": (0.55, -0.2),
    "right_wrist": (-0.55, -0.2),
    "left_hip": (0.15, 0.0),
    "right_hip": (-0.15, 0.0),
    "left_knee": (0.17, 0.5),
    "right_knee": (-0.17, 0.5),
    "left_ankle": (0.18, 1.0),
    "right_ankle": (-0.18, 1.0),
}


def _anchor(name: str) -> str:
    if name in _FIGURE:
        return name
    side = "left" if "left" in name else "right"
    for part, anchor in (("heel", "ankle"), ("foot", "ankle"), ("pinky", "wrist"), ("index", "wrist")):
        if part in name:
            return f"{side}_{anchor}"
    for part in ("thumb", "hand"):
        if part in name:
            return f"{side}_wrist"
    if name in ("pelvis", "spine", "chest", "upper_chest"):
        return "left_hip" if name == "pelvis" else "neck"
    return "nose"


def waving_person(
    layout: str, timestamps_ms: np.ndarray, speed: float = 1.0, offset=(320.0, 240.0), scale: float = 100.0
) -> np.ndarray:
    """(T, joints, 2) image pixels of a person waving their right arm ``speed`` times a second."""
    names = get_layout(layout).joints
    base = np.array([_FIGURE[_anchor(n)] for n in names], dtype=np.float32)
    frames = np.repeat(base[None], len(timestamps_ms), axis=0)
    angle = np.sin(2 * np.pi * speed * np.asarray(timestamps_ms) / 1000.0)
    for i, name in enumerate(names):
        if name.startswith("right_") and _anchor(name) in ("right_wrist", "right_elbow"):
            frames[:, i, 1] -= (0.8 if _anchor(name) == "right_wrist" else 0.4) * (1 + angle)
    return frames * scale + np.asarray(offset, dtype=np.float32)


def skeleton_frames(people: list[np.ndarray], timestamps_ms, with_ids: bool = False) -> list[pb.SkeletonFrame]:
    """``people[p]`` (T, joints, dims) as SkeletonFrames. NaN marks what a sensor did not see: a
    joint sent with confidence 0, and a person with no joint seen is not in that frame."""
    frames = []
    for t, timestamp in enumerate(timestamps_ms):
        skeletons = []
        for p, person in enumerate(people):
            seen = np.isfinite(person[t]).all(axis=-1)
            if not seen.any():
                continue
            skeleton = pb.Skeleton(coords=np.nan_to_num(person[t], nan=0.0).ravel().tolist())
            if not seen.all():  # no confidences means every joint is seen
                skeleton.confidence.extend(seen.astype(np.float32).tolist())
            if with_ids:
                skeleton.track_id = p
            skeletons.append(skeleton)
        frames.append(pb.SkeletonFrame(timestamp_ms=int(timestamp), people=skeletons))
    return frames


def rss_mib(pid: int | str = "self") -> float:
    """A process's resident memory in MiB (this process's by default)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class ServerProcess:
    """``actionrec serve`` in its own process on a free loopback port, its JSON logs collected.

    Its stderr is read all the time it runs: a pipe nobody reads fills up (64 KiB), and then the
    server's next log line (MediaPipe writes a few for every stream it opens) blocks whichever
    thread writes it, a pose worker included, and every stream on that worker hangs.

    ``prefix`` goes before the command (``["taskset", "-c", "0"]`` pins it to one core)."""

    def __init__(
        self, models_dir: Path, state: Path, *extra: str, prefix: Sequence[str] = (), env: dict | None = None
    ) -> None:
        command = [*prefix, sys.executable, "-m", "actionrec", "serve", "--host", "127.0.0.1", "--port", "0"]
        command += ["--models-dir", str(models_dir), "--actions-file", str(Path(state) / "actions.json"), *extra]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.logs: list[dict] = []
        self.output: list[str] = []  # every stderr line, JSON or not
        self._reader: threading.Thread | None = None
        self.port = int(self._wait_for("listening")["address"].rsplit(":", 1)[1])
        self._wait_for("serving")
        self.address = f"127.0.0.1:{self.port}"
        self._reader = threading.Thread(target=self._read_until_exit, name="server-stderr", daemon=True)
        self._reader.start()

    def _take(self, line: str) -> dict | None:
        self.output.append(line)
        if not line.startswith("{"):
            return None
        entry = json.loads(line)
        self.logs.append(entry)
        return entry

    def _read_until_exit(self) -> None:
        for line in self.process.stderr:
            self._take(line)

    def _wait_for(self, message: str, seconds: float = 120) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                raise RuntimeError(f"the server exited ({self.process.poll()}) before {message!r}: {self.logs}")
            entry = self._take(line)
            if entry is not None and entry["message"] == message:
                return entry
        raise RuntimeError(f"no {message!r} from the server within {seconds} s")

    def wait_for_log(self, message: str, seconds: float = 60) -> dict | None:
        """The first log entry with ``message``, once the server has logged it; None if it has not
        within ``seconds``."""

        def entry() -> dict | None:
            return next((e for e in list(self.logs) if e.get("message") == message), None)

        wait_until(lambda: entry() is not None, seconds)
        return entry()

    def rss_mib(self) -> float:
        """The server's resident memory."""
        return rss_mib(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far, all its threads, user and system."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def stop(self) -> None:
        """Kill it if it still runs; keep the rest of its logs."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        if self._reader is not None:
            self._reader.join(30)  # the rest of its stderr, up to the end the exit closed
        self.process.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
