"""``actionrec classify`` and ``actionrec actions``: the unary calls, from video files.

A clip file (video or still image) becomes one ``Clip`` of JPEG frames: only the frames the
model uses (the server's own frame-rate gate, on the model's rate from ``GetModelInfo``),
shrunk to the server's default pose width, so that a few seconds of video are a few hundred
kilobytes. ``classify`` answers one clip; ``actions enroll`` sends a few clips of one person
doing a new action and the server recognises it from then on in the streams and clips that
name its action set (``actionrec client --action-set SET``); ``list`` and ``delete`` manage them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import cv2
import grpc
from google.protobuf.json_format import MessageToDict

from service.channels import CALL_TIMEOUT_S, call_metadata, make_channel
from service.client import scores_json
from service.config import ServerConfig
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.windowing import FrameGate
from skeleton.errors import InputError
from skeleton.pose.video import probe_video, quiet_ffmpeg_log, read_frames, resize_to_width

# A server's defaults: the most frames a clip may have, and the width it poses frames at (wider
# frames would only cost bandwidth).
MAX_CLIP_FRAMES = ServerConfig.max_clip_frames
CLIP_WIDTH = ServerConfig.pose_width
JPEG_QUALITY = 90
# The server gives a clip call up to two minutes (service.server.MAX_CALL_SECONDS); a few clips of
# a few seconds are posed in well under that.
CLIP_CALL_TIMEOUT_S = 120.0


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
                raise InputError(f"{self.target}: {e.code().name}: {e.details()}") from None


def model_frame_rate(server: Server, model: str) -> tuple[str, float]:
    """The model's name (the server's default for "") and frame rate."""
    info = server.call(lambda api: api.GetModelInfo, pb.GetModelInfoRequest(model=model), CALL_TIMEOUT_S)
    return info.name, info.frame_rate


def check_clip_files(paths: list[Path]) -> None:
    """An InputError, before any call, for a file that is not a readable video or image."""
    quiet_ffmpeg_log()
    for path in paths:
        probe_video(path)


def clip_from_file(path: Path, frame_rate: float, max_people: int = 0) -> pb.Clip:
    """A video or image file as a clip of the JPEG frames a model at ``frame_rate`` uses."""
    check_clip_files([path])
    info = probe_video(path)
    gate = FrameGate(frame_rate, info.fps) if frame_rate > 0 else None
    clip = pb.FrameClip(max_people=max_people)
    for rgb, timestamp in read_frames(path):
        if gate is not None and not gate.admit(timestamp):
            continue
        if len(clip.frames) == MAX_CLIP_FRAMES:
            seconds = MAX_CLIP_FRAMES / frame_rate if frame_rate > 0 else 0
            raise InputError(
                f"{path}: longer than a clip may be ({MAX_CLIP_FRAMES} frames at the model's"
                f" {frame_rate:g} fps, {seconds:.0f} s): cut out the part with the action"
            )
        bgr = cv2.cvtColor(resize_to_width(rgb, CLIP_WIDTH), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise InputError(f"{path}: frame at {timestamp} ms could not be encoded")
        clip.frames.append(pb.Frame(timestamp_ms=timestamp, encoded=jpeg.tobytes()))
    if not clip.frames:
        raise InputError(f"{path}: no frame could be read")
    return pb.Clip(frames=clip)


def _as_json(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def classify(server: Server, path: Path, model: str, action_set: str, top_k: int, max_people: int) -> dict:
    """One clip file's answer, as the JSON object ``--json`` prints."""
    check_clip_files([path])
    name, frame_rate = model_frame_rate(server, model)
    request = pb.ClassifyClipRequest(
        model=name, clip=clip_from_file(path, frame_rate, max_people), top_k=top_k, action_set=action_set
    )
    answer = server.call(lambda api: api.ClassifyClip, request, CLIP_CALL_TIMEOUT_S)
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
        "model": answer.model,
    }


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" + ("" if n == 1 else "s")


def _scores_text(scores: list[dict]) -> str:
    return ", ".join(f"{s['label']} {s['score']:.2f}" for s in scores)


def classify_line(answer: dict) -> str:
    custom = _scores_text(answer["custom_labels"])
    return (
        f"{answer['clip']}: person {answer['track_id']}, {answer['start_ms'] / 1000:.2f}-{answer['end_ms'] / 1000:.2f}"
        f" s, {answer['windows']} windows: {_scores_text(answer['labels'])}"
        + (f"  | custom: {custom}" if custom else "")
    )


def enroll(server: Server, action: str, paths: list[Path], action_set: str, model: str, max_people: int) -> dict:
    """Enrol ``action`` from the clip files (every file is read before anything is sent)."""
    check_clip_files(paths)
    name, frame_rate = model_frame_rate(server, model)
    examples = [clip_from_file(path, frame_rate, max_people) for path in paths]
    request = pb.EnrollActionRequest(action_set=action_set, action=action, model=name, examples=examples)
    response = server.call(lambda api: api.EnrollAction, request, CLIP_CALL_TIMEOUT_S)
    return {**_as_json(response.action), "self_similarity": round(response.self_similarity, 4)}


def enroll_line(enrolled: dict) -> str:
    return (
        f"enrolled {action_line(enrolled)}; its examples' similarity to their mean: {enrolled['self_similarity']:.2f}"
    )


def list_actions(server: Server, action_set: str, model: str) -> list[dict]:
    request = pb.ListActionsRequest(action_set=action_set, model=model)
    return [_as_json(a) for a in server.call(lambda api: api.ListActions, request, CALL_TIMEOUT_S).actions]


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
