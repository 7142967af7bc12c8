"""Online subcommands: ``serve``, ``client``, ``classify``, ``actions`` and ``health``.

Every ``serve`` flag has an environment variable (``ACTIONREC_<FLAG>``, as a container
orchestrator sets them); a flag on the command line wins over the variable. An empty variable
counts as unset (compose writes ``VAR=`` for a variable it has no value for).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skeleton.errors import InputError

if TYPE_CHECKING:  # the client modules load grpc and OpenCV: only the commands that call a server import them
    from service.clip_calls import Server

ENV_PREFIX = "ACTIONREC_"
LOG_LEVELS = ("debug", "info", "warning", "error")
UINT32_MAX = 2**32 - 1
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class _FromEnv:
    """A flag's default taken from its environment variable. It is parsed when its subcommand
    runs (``read_env``), not while the parser is built, so that a bad variable for ``serve``
    does not stop ``health`` or ``client``."""

    env: str
    flag: str
    text: str
    parse: Callable[[str], object]

    def __str__(self) -> str:  # as argparse shows a default
        return self.text

    def value(self) -> object:
        try:
            return self.parse(self.text)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise InputError(f"{self.flag} (from {self.env}): {e}") from None


def quiet_library_logs() -> None:
    """The client commands say what went wrong in one line of their own; gRPC core's log lines (a
    TLS handshake that failed, an unknown load-balancing policy) and OpenCV's (a camera index with
    no camera) would come before it. Before grpc and cv2 are imported; a GRPC_VERBOSITY or
    OPENCV_LOG_LEVEL the user set wins."""
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")


def read_env(args: argparse.Namespace) -> dict[str, str]:
    """Parse the values ``args`` took from environment variables (in place); returns which
    settings came from which variable, so that a setting refused later names its variable."""
    sources = {}
    for name, value in list(vars(args).items()):
        if isinstance(value, _FromEnv):
            setattr(args, name, value.value())
            sources[name] = value.env
    return sources


def _boolean(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is neither true ({', '.join(_TRUE)}) nor false ({', '.join(_FALSE)})")


def _whole(text: str) -> int:
    """A whole number the protocol's unsigned fields can carry (0 to 2**32 - 1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= UINT32_MAX:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0 to {UINT32_MAX})")
    return value


# Narrower frames leave pose nothing to find (a person a few pixels tall): a typo, not a choice.
MIN_SEND_WIDTH = 64


def _send_width(text: str) -> int:
    """``--width``: 0 (frames as read) or at least ``MIN_SEND_WIDTH`` pixels."""
    value = _whole(text)
    if 0 < value < MIN_SEND_WIDTH:
        raise argparse.ArgumentTypeError(f"{value} pixels is too narrow to pose (0, or at least {MIN_SEND_WIDTH})")
    return value


def _env_parser(kwargs: dict) -> Callable[[str], object]:
    """How an environment variable's text becomes the value the flag would give."""
    if kwargs.get("action") is argparse.BooleanOptionalAction:
        return _boolean
    if kwargs.get("nargs") == "*":
        return lambda text: [item.strip() for item in text.split(",") if item.strip()]
    convert, choices = kwargs.get("type", str), kwargs.get("choices")

    def parse(text: str) -> object:
        try:
            value = convert(text)
        except (ValueError, TypeError):
            raise argparse.ArgumentTypeError(f"invalid {convert.__name__} value: {text!r}") from None
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(choices)})")
        return value

    return parse


def _env_option(
    parser: argparse.ArgumentParser, flag: str, help: str, default=None, secret: bool = False, **kwargs
) -> None:
    """A flag whose default comes from ``ACTIONREC_<FLAG>`` when that is set; a ``secret`` one's
    value (a token) is never shown in the help."""
    env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
    text = os.environ.get(env, "")
    if text:
        default = _FromEnv(env, flag, text, _env_parser(kwargs))
    shown = str(default).replace("%", "%%")  # argparse formats help with %
    # BooleanOptionalAction shows its default itself
    if secret or default in (None, [], "") or kwargs.get("action") is argparse.BooleanOptionalAction:
        help = f"{help} [env {env}]"
    else:
        help = f"{help} [env {env}; default {shown}]"
    parser.add_argument(flag, default=default, help=help, **kwargs)


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
        serve,
        "--models",
        "models to load: names in --models-dir or .onnx paths (default: all there; the variable separates them"
        " with commas)",
        [],
        nargs="*",
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
    _env_option(
        serve,
        "--pin-workers",
        "each pose worker on a core of its own; --no-pin-workers lets them run on any core"
        f" (the variable: {'/'.join(_TRUE)} or {'/'.join(_FALSE)})",
        defaults["pin_workers"].default,
        action=argparse.BooleanOptionalAction,
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
        "--max-pose-load",
        "a camera stream is admitted while its pose worker's streams want at most this many cores of pose time"
        " with it; past 1.5 times this the worker ends its newest stream (0: admit all; 0 to 4)",
        str(defaults["max_pose_load"].default),
        type=float,
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
        "how long a window may wait for a fuller batch (0 to 1000)",
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
        serve,
        "--auth-token",
        "require 'authorization: Bearer TOKEN' on every call but health (empty: no auth)",
        secret=True,
    )
    _env_option(
        serve, "--metrics-port", "serve Prometheus metrics on this port (default: off; 0: any free port)", type=int
    )
    _env_option(
        serve,
        "--drain-seconds",
        "on SIGTERM, time for open streams to finish (a second SIGTERM stops at once)",
        "30",
        type=float,
    )
    _env_option(serve, "--log-level", "how much to log", "info", type=str.lower, choices=LOG_LEVELS)
    serve.set_defaults(handler=_serve)

    models = subcommands.add_parser(
        "models",
        help="list the models in the models folder with their metadata",
        description="List the models a server would load from its models folder, with their metadata. Each file"
        " there that is not a usable model is named on stderr with the reason, the others are still listed, and the"
        " exit status is then 2: `serve` without --models loads every file there and would refuse to start.",
    )
    _env_option(models, "--models-dir", "the models folder", str(DEFAULT_MODELS_DIR), type=Path)
    models.add_argument("--json", action="store_true", help="end with one line of JSON")
    models.set_defaults(handler=_models)

    client = subcommands.add_parser(
        "client",
        help="stream a video, camera or RTSP source to a server and print its events",
        description="Stream a source to an actionrec server at its own frame rate and print the action events.",
    )
    client.add_argument("source", metavar="VIDEO|CAMERA_INDEX|RTSP_URL")
    _server_options(
        client, "HOST:PORT (or a gRPC target such as ipv4:HOST:P1,HOST:P2)", "one JSON object per event per line"
    )
    client.add_argument("--out", type=Path, help="write the video with skeletons and labels drawn")
    client.add_argument("--fast", action="store_true", help="send a file as fast as the server takes it")
    client.add_argument("--model", default="", help="the model to use (default: the server's)")
    client.add_argument("--max-people", type=_whole, default=0, help="people posed per frame (default: 1)")
    client.add_argument("--top-k", type=_whole, default=0, help="labels per event (default: 3)")
    client.add_argument(
        "--stride", type=_whole, default=0, help="model frames between windows (default: half a window)"
    )
    client.add_argument("--action-set", default="", help="also match this set of enrolled custom actions")
    client.add_argument("--stream-id", default="", help="the stream's name in events (default: the source's)")
    _width_option(client, " and --out's video (default for --out: the source's size)")
    client.add_argument("--max-frames", type=_whole, default=0, help="read at most this many frames of the source")
    client.add_argument(
        "--all-frames", action="store_true", help="also send the frames beyond the model's frame rate (it skips them)"
    )
    client.add_argument("--lb", default="", help="client-side load balancing policy, e.g. round_robin")
    client.add_argument(
        "--reconnect",
        action="store_true",
        help="a camera or network stream: when the server ends the stream because it went away, is full or"
        " does not answer (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED: a restart, a drain, a rolling"
        " update, a frozen server), keep the source open and open a new stream, waiting 1 s, then 2, 4, ... up"
        " to 30 s between tries",
    )
    client.set_defaults(handler=_client)

    _register_clip_calls(subcommands)

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


def _server_options(
    parser: argparse.ArgumentParser, server_help: str = "HOST:PORT", json_help: str = "one JSON object per line"
) -> None:
    """Where a command's calls go and how it prints: the flags of every command that calls a server."""
    _env_option(parser, "--server", server_help, "localhost:50051")
    _env_option(parser, "--token", "auth token (sent as 'authorization: Bearer TOKEN')", secret=True)
    _env_option(parser, "--tls-ca", "CA certificate (PEM) to verify a TLS server with", type=Path)
    parser.add_argument("--json", action="store_true", help=json_help)


def _width_option(parser: argparse.ArgumentParser, also: str = "") -> None:
    parser.add_argument(
        "--width",
        type=_send_width,
        default=None,
        help="shrink frames to this width before sending (0: as they are; default: to the width the server"
        f" poses at, or 640 if more, for frames at least twice that wide){also}",
    )


def _clip_options(parser: argparse.ArgumentParser) -> None:
    """How clip files are sent (``service.clip_calls.Sending``)."""
    parser.add_argument("--max-people", type=_whole, default=0, help="people posed per frame (default: 1)")
    _width_option(parser)


def _register_clip_calls(subcommands: argparse._SubParsersAction) -> None:
    classify = subcommands.add_parser(
        "classify",
        help="ask a server what a short video clip (or image) shows",
        description="Send a clip file to a server (the frames its model uses) and print the answer about the"
        " person seen longest, with enrolled custom actions too when --action-set names a set.",
    )
    classify.add_argument("clips", nargs="+", type=Path, metavar="CLIP", help="video or image files, one answer each")
    _server_options(classify)
    classify.add_argument("--model", default="", help="the model to use (default: the server's)")
    classify.add_argument("--action-set", default="", help="also match this set of enrolled custom actions")
    classify.add_argument("--top-k", type=_whole, default=0, help="labels per answer (default: 3)")
    _clip_options(classify)
    classify.set_defaults(handler=_classify)

    actions = subcommands.add_parser(
        "actions",
        help="enrol, list or delete custom actions on a server",
        description="Few-shot custom actions: enrol a new action from a few clips of one person doing it (the"
        " server recognises it from then on in streams and clips that name its set), list them, delete one.",
    )
    verbs = actions.add_subparsers(dest="verb", required=True, metavar="VERB")
    enroll = verbs.add_parser("enroll", help="enrol an action from example clips (added to earlier ones)")
    enroll.add_argument("action", metavar="ACTION", help="the action's name")
    enroll.add_argument("clips", nargs="+", type=Path, metavar="CLIP", help="video or image files of one person")
    listing = verbs.add_parser("list", help="list the enrolled actions")
    delete = verbs.add_parser("delete", help="delete an enrolled action")
    delete.add_argument("action", metavar="ACTION", help="the action's name")
    for verb in (enroll, listing, delete):
        _server_options(verb)
        everything = verb is listing
        verb.add_argument(
            "--set",
            default="",
            dest="action_set",
            help="the action set (default: every set)" if everything else "the action set (default: 'default')",
        )
        verb.add_argument(
            "--model",
            default="",
            help="whose embeddings (default: every model)"
            if everything
            else "whose embeddings (default: the server's default model)",
        )
    _clip_options(enroll)
    enroll.set_defaults(handler=_enroll)
    listing.set_defaults(handler=_list_actions)
    delete.set_defaults(handler=_delete_action)


def _server(args: argparse.Namespace) -> Server:
    """The server a clip or actions command calls, from its flags (and their variables)."""
    quiet_library_logs()
    from service.clip_calls import Server

    read_env(args)
    return Server(args.server, args.token, args.tls_ca)


def _classify(args: argparse.Namespace) -> int:
    """One answer a clip file. A clip the server or the file itself refuses (nobody in it, too
    long) is reported and the next one goes on; the exit status is then 2. A failure of the call
    itself (the server, the model, the action set) ends the command: the next would fare no better."""
    import json

    from service.clip_calls import (
        CallFailed,
        Sending,
        check_classify_call,
        check_clip_files,
        classify,
        classify_line,
        print_result,
    )

    server = _server(args)
    check_clip_files(args.clips)  # a bad file is told before the first call, not after the others' answers
    sending = Sending(args.model, args.max_people, args.width)
    check_classify_call(server, sending, args.action_set)
    refused = 0
    for clip in args.clips:
        try:
            answer = classify(server, clip, sending, args.action_set, args.top_k)
        except InputError as e:
            if isinstance(e, CallFailed) and e.code != "INVALID_ARGUMENT":
                raise
            refused += 1
            print(f"actionrec classify: error: {e}", file=sys.stderr, flush=True)
            if args.json:
                print(json.dumps({"clip": str(clip), "error": str(e)}), flush=True)
            continue
        print_result(answer, args.json, classify_line, sys.stdout)
    return 2 if refused else 0


def _enroll(args: argparse.Namespace) -> int:
    from service.clip_calls import Sending, enroll, enroll_line, print_result

    server = _server(args)
    enrolled = enroll(
        server, args.action, args.clips, args.action_set, Sending(args.model, args.max_people, args.width)
    )
    print_result(enrolled, args.json, enroll_line, sys.stdout)
    return 0


def _list_actions(args: argparse.Namespace) -> int:
    from service.clip_calls import action_line, list_actions, print_result

    actions = list_actions(_server(args), args.action_set, args.model)
    print_result(actions, args.json, action_line, sys.stdout)
    if not actions and not args.json:
        print("no enrolled actions", file=sys.stderr)
    return 0


def _delete_action(args: argparse.Namespace) -> int:
    from service.clip_calls import action_line, delete_action, print_result

    deleted = delete_action(_server(args), args.action, args.action_set, args.model)
    print_result(deleted, args.json, lambda action: f"deleted {action_line(action)}", sys.stdout)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import signal

    from service import logs
    from service.config import ServerConfig, SettingError, available_cores, default_actions_file
    from service.server import ActionServer

    sources = read_env(args)
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            models=tuple(m for m in args.models if m),
            models_dir=args.models_dir,
            default_model=args.default_model,
            pose_model=args.pose_model,
            max_streams=args.max_streams,
            max_clip_calls=args.max_clip_calls,
            workers=available_cores() if args.workers is None else args.workers,
            pin_workers=args.pin_workers,
            max_people=args.max_people,
            max_pending_frames=args.max_pending_frames,
            max_pose_load=args.max_pose_load,
            pose_width=args.pose_width,
            max_batch=args.max_batch,
            max_queue_delay_ms=args.max_queue_delay_ms,
            onnx_threads=args.onnx_threads,
            actions_file=args.actions_file or default_actions_file(),
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            auth_token=args.auth_token or None,  # an empty token means no auth
            metrics_port=args.metrics_port,
            drain_seconds=args.drain_seconds,
        )
        logs.configure(args.log_level)
        server = ActionServer(config)
        signals = []

        def on_signal(*_) -> None:
            signals.append(1)
            if len(signals) == 1:
                server.stopping.set()  # drain (or, while loading, stop without serving)
            elif len(signals) == 2:  # an operator who signals again does not want to wait for the drain
                raise KeyboardInterrupt

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)
        server.start()
    except SettingError as e:
        raise InputError(e.describe(sources.get(e.setting))) from None
    try:
        server.load()
        server.stopping.wait()
        server.drain()
    except BaseException:
        server.stop()
        raise
    return 0


def _models(args: argparse.Namespace) -> int:
    import json

    from service.config import PROJECT_ROOT
    from skeleton.artifact import base_model_file, model_listing

    read_env(args)
    cards, problems = model_listing(args.models_dir, relative_to=PROJECT_ROOT)
    if not cards and not problems:
        raise InputError(f"{args.models_dir}: no .onnx models there")
    for card in cards:
        window = card["window"]
        accuracy = ", ".join(f"{k} {v:.1%}" for k, v in card["accuracy"].items()) or "not scored"
        # A variant listed alone (NAME.int8.onnx) keeps its model's name in its card.
        was_renamed = base_model_file(Path(card["file"])).stem != card["name"]
        renamed = f"  (its card calls it {card['name']})" if was_renamed else ""
        print(
            f"{card['served_as']:<10} {window['dims']}-D {window['layout']:<10} "
            f"{window['length']} frames @ {window['fps']:g} fps  {len(card['labels'])} classes  "
            f"{accuracy}  ({card['file']}){renamed}"
        )
        # The rest of the card, indented under its model (--json has it all, labels included).
        print(
            f"{'':<10} {card['input_space']} coordinates, normalised {window['normalization']}, embedding"
            f" {card['embedding_size']}; trained on {card['training_data']}; {card['protocol']}; source commit"
            f" {card['source_commit']}; variants {', '.join(card['variants']) or 'none'}"
        )
    for problem in problems:
        print(f"actionrec models: error: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps(cards))
    return 2 if problems else 0


def _health(args: argparse.Namespace) -> int:
    quiet_library_logs()
    from service.channels import wait_until_serving

    read_env(args)
    status = wait_until_serving(args.server, args.wait, args.tls_ca, args.service)
    print(status)
    return 0 if status == "SERVING" else 1


def _client(args: argparse.Namespace) -> int:
    quiet_library_logs()
    from service.client import ClientOptions, run_client

    read_env(args)
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
            reconnect=args.reconnect,
        )
    )
