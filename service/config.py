"""The server's configuration: one frozen dataclass, checked once, passed to everything."""

from __future__ import annotations

import math
import os
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from skeleton.errors import InputError
from skeleton.resample import MAX_INTERPOLATED_GAP_MS
from skeleton.windows import MIN_WINDOW_PRESENCE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_MODEL = "sports2d"
MAX_STREAM_ID = 128  # characters of a stream's id (it is logged and echoed in every event)
# A batch that waits longer than a second for company adds more latency than any batch saves.
MAX_QUEUE_DELAY_MS = 1000.0
# Waits (the drain, a stream's configuration) end within a day: a bigger or infinite time would
# overflow the platform's timeouts and leave a stopping server hanging.
MAX_WAIT_SECONDS = 24 * 3600.0
MAX_GAP_MS = 60_000.0  # a person unseen for a minute is gone, whatever the setting
# A pose worker is one thread: a limit of a few cores is already no limit (0 turns admission off).
MAX_POSE_LOAD = 4.0


class SettingError(InputError):
    """A bad setting, reported as its flag (``--max-streams`` for ``max_streams``) and what is wrong."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(self.describe())

    def describe(self, source: str | None = None) -> str:
        """The message; ``source`` names where the value came from (an environment variable)."""
        flag = "--" + self.setting.replace("_", "-")
        return f"{flag} (from {source}) {self.problem}" if source else f"{flag} {self.problem}"


def default_actions_file() -> Path:
    """Enrolled actions live with the user's state, not in the source tree."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "actionrec" / "actions.json"


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def token_problem(token: str) -> str | None:
    """What makes ``token`` unusable, or None: both sides check it, so that a server never starts
    with a token no client can send and a client never sends one gRPC would refuse."""
    if not token.strip():
        return "is empty"
    if token != token.strip():
        return "starts or ends with white space (a newline left in a secret?)"
    if not all(" " <= c <= "~" for c in token):
        return "has characters other than printable ASCII (gRPC metadata values are)"
    return None


@dataclass(frozen=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 50051  # 0: any free port (the bound one is logged)
    models: tuple[str, ...] = ()  # names in models_dir or paths to .onnx files; () = every models_dir/*.onnx
    models_dir: Path = DEFAULT_MODELS_DIR
    default_model: str = DEFAULT_MODEL  # streams that name no model get this one (or the only one loaded)
    pose_model: Path | None = None  # MediaPipe .task; None = the shipped full model
    max_streams: int = 8
    max_clip_calls: int = 4  # ClassifyClip / EnrollAction calls at once (each holds a handler thread)
    config_seconds: float = 10.0  # a stream that sends no configuration within this ends (DEADLINE_EXCEEDED)
    workers: int = field(default_factory=available_cores)  # pose threads
    pin_workers: bool = True  # each pose thread (and its streams' MediaPipe threads) on its own core
    max_people: int = 4  # the most people a stream may ask to pose per frame
    pose_width: int = 640  # frames are shrunk to this width before pose (0: as they come)
    # The batcher in front of each model (Triton's dynamic batching: size cap and delay cap).
    max_batch: int = 16
    # 0: a batch runs as soon as the model is free, with the windows that queued while it was busy
    # (no added latency when idle, full batches under load); more: Triton's wait for a fuller batch.
    max_queue_delay_ms: float = 0.0
    max_batch_queue: int = 256
    onnx_threads: int = 1  # intra-op threads per model; pose needs the cores more
    # Per stream: frames waiting for pose beyond this are dropped, oldest first (docs/service.md).
    # Eight frames (about 530 ms at 15 fps) absorb the stall of several streams opening at once on
    # a busy core (about 55 ms each for its landmarker: cameras reconnecting after a restart); a
    # stream that is behind for longer is behind for good, and dropping is right.
    max_pending_frames: int = 8
    # A camera stream is admitted while its pose worker's streams want at most this many cores of
    # pose time with it; past 1.5 times this, the worker sheds its newest (service.admission). 0: off.
    max_pose_load: float = 0.9
    max_pending_events: int = 256
    # Input limits (bad input gets INVALID_ARGUMENT, not a crash or an allocation bomb).
    max_image_bytes: int = 8 << 20
    max_image_pixels: int = 4096 * 4096
    max_message_bytes: int = 64 << 20
    max_clip_frames: int = 900
    max_skeleton_people: int = 16
    # Windowing: a person unseen for longer than max_gap_ms is missing, not interpolated; a window
    # is classified when the person is present in at least min_presence of its frames.
    max_gap_ms: float = MAX_INTERPOLATED_GAP_MS  # the limit training reads its data with
    min_presence: float = MIN_WINDOW_PRESENCE  # the floor training and evaluation use
    actions_file: Path = field(default_factory=default_actions_file)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_token: str | None = field(default=None, repr=False)
    metrics_port: int | None = None  # None: no metrics endpoint
    drain_seconds: float = 30.0  # on SIGTERM, how long open streams get to finish their windows
    replica_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        positive = {
            "max_streams": self.max_streams,
            "max_clip_calls": self.max_clip_calls,
            "workers": self.workers,
            "max_people": self.max_people,
            "max_batch": self.max_batch,
            "max_batch_queue": self.max_batch_queue,
            "onnx_threads": self.onnx_threads,
            "max_pending_frames": self.max_pending_frames,
            "max_pending_events": self.max_pending_events,
            "max_image_bytes": self.max_image_bytes,
            "max_image_pixels": self.max_image_pixels,
            "max_message_bytes": self.max_message_bytes,
            "max_clip_frames": self.max_clip_frames,
            "max_skeleton_people": self.max_skeleton_people,
        }
        for name, value in positive.items():
            if value < 1:
                raise SettingError(name, f"must be at least 1, not {value}")
        if self.pose_width < 0:
            raise SettingError("pose_width", f"must be at least 0, not {self.pose_width}")
        # (lowest, whether the lowest itself is allowed, highest); nan and inf are never in range
        ranges = {
            "max_queue_delay_ms": (0.0, True, MAX_QUEUE_DELAY_MS),
            "drain_seconds": (0.0, True, MAX_WAIT_SECONDS),
            "config_seconds": (0.0, False, MAX_WAIT_SECONDS),
            "max_gap_ms": (0.0, False, MAX_GAP_MS),
            "min_presence": (0.0, False, 1.0),
            "max_pose_load": (0.0, True, MAX_POSE_LOAD),
        }
        for name, (low, low_allowed, high) in ranges.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and (low <= value if low_allowed else low < value) and value <= high):
                bounds = f"from {low:g} to {high:g}" if low_allowed else f"above {low:g} and at most {high:g}"
                raise SettingError(name, f"must be a number {bounds}, not {value}")
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 65535:
                raise SettingError(name, f"{value} is out of range (0 to 65535)")
        if self.metrics_port and self.metrics_port == self.port:
            raise SettingError("metrics_port", f"{self.metrics_port} is the gRPC port (--port); give it its own")
        self._check_tls()
        if self.auth_token is not None:  # the token itself is never part of a message
            problem = token_problem(self.auth_token)
            if problem:
                raise SettingError("auth_token", problem)

    def _check_tls(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "tls_key" if self.tls_key is None else "tls_cert"
            raise SettingError(missing, "is missing: TLS needs both a certificate and its key")
        if self.tls_cert is None:
            return
        for name in ("tls_cert", "tls_key"):
            path = Path(getattr(self, name))
            if path.is_dir():
                raise SettingError(name, f"{path} is a folder, not a PEM file")
            if not path.is_file():
                raise SettingError(name, f"{path}: no such file")
        # gRPC would only say that it failed to bind; an encrypted key (which gRPC cannot use)
        # fails here too, as the empty password does not open it.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(self.tls_cert, self.tls_key, password=b"")
        except ssl.SSLError as e:
            raise SettingError(
                "tls_key", f"{self.tls_key}: the TLS certificate and key do not match, or are not PEM ({e})"
            ) from None
        except OSError as e:  # a file that is there but cannot be read
            raise SettingError("tls_key", f"{self.tls_key} or its certificate cannot be read ({e})") from None
