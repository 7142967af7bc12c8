"""``actionrec classify`` and ``actionrec actions``: the unary calls, from video files.

A clip file (video or still image) becomes one ``Clip`` of JPEG frames: only the frames the
model uses (the server's own frame-rate gate, on the model's rate from ``GetModelInfo``), a
frame much wider than the server poses shrunk before sending (``service.outgoing``), so that a
few seconds of video are a few hundred kilobytes. ``classify`` answers one clip; ``actions
enroll`` sends a few clips of one person doing a new action and the server recognises it from
then on in the streams and clips that name its action set (``actionrec client --action-set
SET``); ``list`` and ``delete`` manage them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import grpc
from google.protobuf.json_format import MessageToDict

from service.actions import DEFAULT_SET, MAX_EXAMPLES, check_name
from service.channels import CALL_TIMEOUT_S, MAX_MESSAGE_BYTES, CallFailed, call_metadata, make_channel
from service.config import ServerConfig
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.outgoing import check_people, encode_to_send, width_to_send
from service.printed import scores_json, scores_text
from service.windowing import FrameGate
from skeleton.errors import InputError
from skeleton.pose.video import cut_short, probe_video, quiet_ffmpeg_log, read_frames
from skeleton.windows import MIN_WINDOW_PRESENCE

# The server gives a clip call up to two minutes (service.server.MAX_CALL_SECONDS); a few clips of
# a few seconds are posed in well under that.
CLIP_CALL_TIMEOUT_S = 120.0
# A person seen this long has made a motion, even where it fills under half a window: the shipped
# models' training clips last a second or more (nine in ten of NW-UCLA's and Penn Action's), and a
# model with long windows (daily3d's hold 4.1 s) learnt most of its actions from clips that fill
# only part of one.
MOTION_S = 1.0


def to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Server:
    """Where the calls go, and how: the ``--server``, ``--token`` and ``--tls-ca`` flags."""

    target: str
    token: str | None = None
    tls_ca: Path | None = None

    def call(self, method: Callable[[pb_grpc.ActionRecognitionStub], Callable], request, timeout_s: float):
        """``method(stub)(request)``; a failed call is one line naming the server and the status."""
        with make_channel(self.target, self.tls_ca) as channel:
            try:
                return method(pb_grpc.ActionRecognitionStub(channel))(
                    request, metadata=call_metadata(self.token), timeout=timeout_s
                )
            except grpc.RpcError as e:
                raise CallFailed(self.target, e.code().name, e.details()) from None


@dataclass(frozen=True)
class Sending:
    """How clip files are sent: for which model (the server's default for ""), with how many people
    posed a frame (0: the server's default), shrunk to what width (None: as ``service.outgoing``
    decides from the width the server poses at; 0: as they are), and where what is said about a
    file goes (warnings, and an enrolment's progress)."""

    model: str = ""
    max_people: int = 0
    width: int | None = None
    tell: Callable[[str], None] = to_stderr


def model_info(server: Server, model: str) -> pb.ModelInfo:
    """What the server says of the model (its default for ""): its name, frame rate, window, and
    how it takes frames (pose width, clip length, message size)."""
    return server.call(lambda api: api.GetModelInfo, pb.GetModelInfoRequest(model=model), CALL_TIMEOUT_S)


def clip_limits(info: pb.ModelInfo) -> tuple[int, int]:
    """The most frames a clip and bytes a call may carry to the server: what it says, else its
    defaults."""
    return (
        info.max_clip_frames or ServerConfig.max_clip_frames,
        min(info.max_message_bytes or MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES),  # our channel's own cap too
    )


def check_clip_files(paths: list[Path]) -> None:
    """An InputError, before any call, for a file that is not a readable video or image, or one
    given twice (its examples would count twice)."""
    quiet_ffmpeg_log()
    seen: set[Path] = set()
    for path in paths:
        probe_video(path)
        if path.resolve() in seen:
            raise InputError(f"{path}: given twice")
        seen.add(path.resolve())


def clip_from_file(path: Path, model: pb.ModelInfo, sending: Sending = Sending()) -> pb.Clip:
    """A video or image file as a clip of the JPEG frames ``model`` uses, sized for its server;
    ``sending.tell`` hears of a file that ends well before the frames it declares."""
    quiet_ffmpeg_log()
    info = probe_video(path)
    frame_rate = model.frame_rate
    gate = FrameGate(frame_rate, info.fps) if frame_rate > 0 else None
    max_frames = clip_limits(model)[0]
    clip = pb.FrameClip(max_people=sending.max_people)
    read = 0
    for rgb, timestamp in read_frames(path):
        read += 1
        if gate is not None and not gate.admit(timestamp):
            continue
        if len(clip.frames) == max_frames:
            seconds = max_frames / frame_rate if frame_rate > 0 else 0
            raise InputError(
                f"{path}: longer than a clip may be ({max_frames} frames at the model's"
                f" {frame_rate:g} fps, {seconds:.0f} s): cut out the part with the action"
            )
        width = width_to_send(rgb.shape[1], model.pose_width, sending.width)
        jpeg, _ = encode_to_send(rgb, width, f"{path}: frame at {timestamp} ms", rgb=True)
        clip.frames.append(pb.Frame(timestamp_ms=timestamp, encoded=jpeg))
    if not clip.frames:
        raise InputError(f"{path}: no frame could be read")
    if warning := cut_short(read, info.frame_count):
        sending.tell(f"{path}: {warning}")
    return pb.Clip(frames=clip)


def check_size(request, paths: list[Path], model: pb.ModelInfo) -> None:
    """An InputError naming the files when ``request`` is more than one call to ``model``'s server
    may carry: gRPC would refuse it only once sent, in its own words."""
    size, limit = request.ByteSize(), clip_limits(model)[1]
    if size > limit:
        what = f"{paths[0]}" if len(paths) == 1 else f"the {len(paths)} clips ({', '.join(map(str, paths))})"
        raise InputError(
            f"{what}: {size / 2**20:.0f} MiB of frames, over the {limit / 2**20:.0f} MiB one call may"
            " carry: cut out the part with the action" + (", or send fewer clips a call" if len(paths) > 1 else "")
        )


def _as_json(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def check_classify_call(server: Server, sending: Sending, action_set: str) -> None:
    """What would fail every clip's call alike, refused once before any clip is read: the action
    set's name, the token and CA certificate (by asking for the model), the model, and the people
    per frame over the server's limit."""
    if action_set:
        check_name("action set", action_set)
    check_people(sending.max_people, model_info(server, sending.model).max_people)


def classify(server: Server, path: Path, sending: Sending = Sending(), action_set: str = "", top_k: int = 0) -> dict:
    """One clip file's answer, as the JSON object ``--json`` prints; a refusal names the file."""
    info = model_info(server, sending.model)
    request = pb.ClassifyClipRequest(
        model=info.name, clip=clip_from_file(path, info, sending), top_k=top_k, action_set=action_set
    )
    check_size(request, [path], info)
    try:
        answer = server.call(lambda api: api.ClassifyClip, request, CLIP_CALL_TIMEOUT_S)
    except CallFailed as e:
        raise e.about(str(path)) if e.code == "INVALID_ARGUMENT" else e from None
    if warning := brief_answer(answer, info):
        sending.tell(f"{path}: {warning}")
    best = answer.labels[0] if answer.labels else pb.LabelScore()
    return {
        "clip": str(path),
        "label": best.label,
        "score": round(best.score, 4),
        "labels": scores_json(answer.labels),
        "custom_labels": scores_json(answer.custom_labels),
        "track_id": answer.track_id,
        "start_ms": answer.start_ms,
        "end_ms": answer.end_ms,
        "windows": answer.windows,
        "frames_seen": answer.frames_seen,
        "model": answer.model,
    }


def brief_answer(answer: pb.ClassifyClipResponse, info: pb.ModelInfo) -> str:
    """A warning when the person the answer is about was seen for under ``MIN_WINDOW_PRESENCE`` of a
    window, or under ``MOTION_S`` where that is less (a still image, a person passing by), else "":
    the model then sees a pose held still, and its answer says more about that pose than about a
    motion."""
    if not info.window_length:
        return ""
    enough = MIN_WINDOW_PRESENCE * info.window_length
    if info.frame_rate > 0:
        enough = min(enough, MOTION_S * info.frame_rate)
    if answer.frames_seen >= enough:
        return ""
    return (
        f"the person is seen in {_count(answer.frames_seen, 'model frame')} of the {info.window_length} a window holds:"
        " the answer is about a pose more than a motion"
    )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def classify_line(answer: dict) -> str:
    custom = scores_text(answer["custom_labels"])
    return (
        f"{answer['clip']}: person {answer['track_id']}, {answer['start_ms'] / 1000:.2f}-{answer['end_ms'] / 1000:.2f}"
        f" s, {_count(answer['windows'], 'window')}: {scores_text(answer['labels'])}"
        + (f"  | custom: {custom}" if custom else "")
    )


def enroll(server: Server, action: str, paths: list[Path], action_set: str = "", sending: Sending = Sending()) -> dict:
    """Enrol ``action`` from the clip files. What the server would refuse for the call as a whole
    (names, the number of clips, their size) is refused before anything is sent."""
    check_name("action set", action_set or DEFAULT_SET)
    check_name("action", action)
    if len(paths) > MAX_EXAMPLES:
        raise InputError(f"{len(paths)} example clips; at most {MAX_EXAMPLES} a call (enrol the rest in another)")
    check_clip_files(paths)
    info = model_info(server, sending.model)
    check_people(sending.max_people, info.max_people)
    examples = []
    for path in paths:
        examples.append(clip_from_file(path, info, sending))
        # an enrolment of many clips takes minutes: say what is being sent
        sending.tell(f"{path}: {len(examples[-1].frames.frames)} frames at {info.frame_rate:g} fps")
    request = pb.EnrollActionRequest(action_set=action_set, action=action, model=info.name, examples=examples)
    check_size(request, paths, info)
    try:
        response = server.call(lambda api: api.EnrollAction, request, CLIP_CALL_TIMEOUT_S)
    except CallFailed as e:
        # The server numbers the examples it refuses; the caller knows them by file.
        refused = re.match(r"example (\d+): (.*)", e.details, re.DOTALL)
        if refused and int(refused[1]) < len(paths):
            raise e.about(str(paths[int(refused[1])]), refused[2]) from None
        raise
    return {**_as_json(response.action), "self_similarity": round(response.self_similarity, 4)}


def enroll_line(enrolled: dict) -> str:
    return (
        f"enrolled {action_line(enrolled)}; its examples' similarity to their mean: {enrolled['self_similarity']:.2f}"
    )


def list_actions(server: Server, action_set: str, model: str) -> list[dict]:
    request = pb.ListActionsRequest(action_set=action_set, model=model)
    actions = [_as_json(a) for a in server.call(lambda api: api.ListActions, request, CALL_TIMEOUT_S).actions]
    return sorted(actions, key=lambda a: (a["action_set"], a["action"], a["model"]))  # as each line begins


def delete_action(server: Server, action: str, action_set: str, model: str) -> dict:
    request = pb.DeleteActionRequest(action_set=action_set, action=action, model=model)
    return _as_json(server.call(lambda api: api.DeleteAction, request, CALL_TIMEOUT_S).action)


def action_line(action: dict) -> str:
    return (
        f"{action['action_set']}/{action['action']}: model {action['model']} (version {action['model_version']}),"
        f" {_count(action['examples'], 'example')}, updated {action['updated']}"
    )


def print_result(result: dict | list[dict], as_json: bool, line: Callable[[dict], str], out: TextIO) -> None:
    """One line a result: its JSON object with ``--json``, else ``line(result)``."""
    for item in result if isinstance(result, list) else [result]:
        print(json.dumps(item) if as_json else line(item), file=out, flush=True)
