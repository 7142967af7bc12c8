"""Online subcommands: ``serve`` and ``client``.

Every ``serve`` flag has an environment variable (``ACTIONREC_<FLAG>``, as a container
orchestrator sets them); a flag on the command line wins over the variable.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV_PREFIX = "ACTIONREC_"


def _env_option(parser: argparse.ArgumentParser, flag: str, help: str, default=None, **kwargs) -> None:
    """A flag whose default comes from ``ACTIONREC_<FLAG>`` when that is set."""
    env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
    value = os.environ.get(env)
    if value is not None:
        # argparse runs a string default through ``type``, so a bad variable is reported like a bad flag
        default = value.split(",") if kwargs.get("nargs") == "*" else value
    shown = f"; default {default}" if default not in (None, [], "") and env not in ("ACTIONREC_AUTH_TOKEN",) else ""
    parser.add_argument(flag, default=default, help=f"{help} [env {env}{shown}]", **kwargs)


def register(subcommands: argparse._SubParsersAction) -> None:
    from service.config import DEFAULT_MODEL, DEFAULT_MODELS_DIR, ServerConfig

    defaults = ServerConfig.__dataclass_fields__
    serve = subcommands.add_parser(
        "serve",
        help="run the gRPC action recognition service",
        description="Serve action recognition over gRPC (health, reflection, optional TLS, token auth and"
        " Prometheus metrics). SIGTERM drains: open streams finish their windows, then the server exits.",
    )
    _env_option(serve, "--host", "address to listen on", "0.0.0.0")
    _env_option(serve, "--port", "port to listen on (0: any free port)", "50051", type=int)
    _env_option(
        serve, "--models", "models to load: names in --models-dir or .onnx paths (default: all there)", [], nargs="*"
    )
    _env_option(serve, "--models-dir", "where model names are looked up", str(DEFAULT_MODELS_DIR), type=Path)
    _env_option(serve, "--default-model", "the model of streams that name none", DEFAULT_MODEL)
    _env_option(serve, "--pose-model", "MediaPipe pose landmarker .task (default: the shipped full model)", type=Path)
    _env_option(serve, "--max-streams", "open streams at most; more get RESOURCE_EXHAUSTED", "8", type=int)
    _env_option(
        serve,
        "--max-clip-calls",
        "ClassifyClip and EnrollAction calls at once; more get RESOURCE_EXHAUSTED",
        str(defaults["max_clip_calls"].default),
        type=int,
    )
    _env_option(serve, "--workers", "pose worker threads (default: the cores available)", type=int)
    serve.add_argument(
        "--no-pin-workers",
        dest="pin_workers",
        action="store_false",
        default=os.environ.get("ACTIONREC_PIN_WORKERS", "1") not in ("0", "false", "no"),
        help="let pose workers run on any core (default: one core each) [env ACTIONREC_PIN_WORKERS=0]",
    )
    _env_option(serve, "--max-people", "the most people a stream may ask to pose per frame", "4", type=int)
    _env_option(
        serve,
        "--max-pending-frames",
        "frames a stream may have waiting for pose; beyond, the oldest is dropped",
        str(defaults["max_pending_frames"].default),
        type=int,
    )
    _env_option(
        serve,
        "--pose-width",
        "frames wider than this are shrunk to it before pose (0: posed as they come)",
        str(defaults["pose_width"].default),
        type=int,
    )
    _env_option(serve, "--max-batch", "windows per model call at most", str(defaults["max_batch"].default), type=int)
    _env_option(
        serve,
        "--max-queue-delay-ms",
        "how long a window may wait for a fuller batch",
        str(defaults["max_queue_delay_ms"].default),
        type=float,
    )
    _env_option(
        serve,
        "--onnx-threads",
        "onnxruntime intra-op threads per model",
        str(defaults["onnx_threads"].default),
        type=int,
    )
    _env_option(serve, "--actions-file", "where enrolled custom actions are kept (default: user state dir)", type=Path)
    _env_option(serve, "--tls-cert", "TLS certificate chain (PEM); with --tls-key", type=Path)
    _env_option(serve, "--tls-key", "TLS private key (PEM)", type=Path)
    _env_option(
        serve, "--auth-token", "require 'authorization: Bearer TOKEN' on every call but health (empty: no auth)"
    )
    _env_option(serve, "--metrics-port", "serve Prometheus metrics on this port (default: off)", type=int)
    _env_option(serve, "--drain-seconds", "on SIGTERM, time for open streams to finish", "30", type=float)
    _env_option(serve, "--log-level", "debug, info, warning or error", "info")
    serve.set_defaults(handler=_serve)

    client = subcommands.add_parser(
        "client",
        help="stream a video, camera or RTSP source to a server and print its events",
        description="Stream a source to an actionrec server at its own frame rate and print the action events.",
    )
    client.add_argument("source", metavar="VIDEO|CAMERA_INDEX|RTSP_URL")
    _env_option(client, "--server", "HOST:PORT (or a gRPC target such as ipv4:HOST:P1,HOST:P2)", "localhost:50051")
    client.add_argument("--json", action="store_true", help="one JSON object per event per line")
    client.add_argument("--out", type=Path, help="write the video with skeletons and labels drawn")
    client.add_argument("--fast", action="store_true", help="send a file as fast as the server takes it")
    client.add_argument("--model", default="", help="the model to use (default: the server's)")
    client.add_argument("--max-people", type=int, default=0, help="people posed per frame (default: 1)")
    client.add_argument("--top-k", type=int, default=0, help="labels per event (default: 3)")
    client.add_argument("--stride", type=int, default=0, help="model frames between windows (default: half a window)")
    client.add_argument("--action-set", default="", help="also match this set of enrolled custom actions")
    client.add_argument("--stream-id", default="", help="the stream's name in events (default: the source's)")
    client.add_argument("--width", type=int, default=0, help="shrink frames to this width before sending")
    client.add_argument("--max-frames", type=int, default=0, help="read at most this many frames of the source")
    client.add_argument(
        "--all-frames", action="store_true", help="also send the frames beyond the model's frame rate (it skips them)"
    )
    _env_option(client, "--token", "auth token (sent as 'authorization: Bearer TOKEN')")
    _env_option(client, "--tls-ca", "CA certificate (PEM) to verify a TLS server with", type=Path)
    client.add_argument("--lb", default="", help="client-side load balancing policy, e.g. round_robin")
    client.set_defaults(handler=_client)

    health = subcommands.add_parser(
        "health",
        help="ask a server's standard health service whether it is SERVING (exit 0) or not (exit 1)",
        description="Check a server with grpc.health.v1 (a container's HEALTHCHECK, a start-up script's wait)."
        " Prints the status; exits 0 when SERVING, 1 otherwise.",
    )
    _env_option(health, "--server", "HOST:PORT", "localhost:50051")
    _env_option(health, "--tls-ca", "CA certificate (PEM) to verify a TLS server with", type=Path)
    health.add_argument("--service", default="", help="a service's name (default: the whole server)")
    health.add_argument("--wait", type=float, default=0.0, help="keep asking this many seconds until SERVING")
    health.set_defaults(handler=_health)


def _serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from service import logs
    from service.config import ServerConfig, available_cores, default_actions_file
    from service.server import ActionServer

    logs.configure(args.log_level)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        models=tuple(m for m in args.models if m),
        models_dir=args.models_dir,
        default_model=args.default_model,
        pose_model=args.pose_model,
        max_streams=args.max_streams,
        max_clip_calls=args.max_clip_calls,
        workers=args.workers or available_cores(),
        pin_workers=args.pin_workers,
        max_people=args.max_people,
        max_pending_frames=args.max_pending_frames,
        pose_width=args.pose_width,
        max_batch=args.max_batch,
        max_queue_delay_ms=args.max_queue_delay_ms,
        onnx_threads=args.onnx_threads,
        actions_file=args.actions_file or default_actions_file(),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        auth_token=args.auth_token or None,  # an empty variable (compose's default) means no auth
        metrics_port=args.metrics_port,
        drain_seconds=args.drain_seconds,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = ActionServer(config)
    server.start()
    try:
        server.load()
    except BaseException:
        server.stop()
        raise
    stop.wait()
    server.drain()
    return 0


def _health(args: argparse.Namespace) -> int:
    from service.channels import wait_until_serving

    status = wait_until_serving(args.server, args.wait, args.tls_ca, args.service)
    print(status)
    return 0 if status == "SERVING" else 1


def _client(args: argparse.Namespace) -> int:
    from service.client import ClientOptions, run_client

    return run_client(
        ClientOptions(
            source=args.source,
            server=args.server,
            json=args.json,
            out=args.out,
            fast=args.fast,
            model=args.model,
            max_people=args.max_people,
            top_k=args.top_k,
            stride=args.stride,
            action_set=args.action_set,
            stream_id=args.stream_id,
            token=args.token,
            tls_ca=args.tls_ca,
            lb_policy=args.lb,
            width=args.width,
            max_frames=args.max_frames,
            all_frames=args.all_frames,
        )
    )
