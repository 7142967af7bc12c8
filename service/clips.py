"""A short clip, one answer: ``ClassifyClip`` and the examples of ``EnrollAction``.

A clip goes through exactly what a stream does (frame-rate gate, pose and tracking, or the
skeleton parser; the windower; the batcher), then the windows of the person seen longest are
averaged: class probabilities and a unit-length embedding.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np

from service.actions import unit
from service.batcher import Batcher
from service.errors import DeadlineExceeded, Unavailable
from service.frames import IncomingFrame, check_frame
from service.lanes import Lane
from service.models import Classified, LoadedModel
from service.posing import FramePoser, pose_coordinate_space, start_estimator, stop_estimator
from service.runtime import Runtime
from service.session import queue_share, resolve_max_people
from service.skeletons import SkeletonParser, resolve_format
from service.windowing import FrameGate, StreamWindower
from skeleton.errors import InputError
from skeleton.windows import prepare_window

CALL_POLL_S = 0.1  # how soon a clip call notices that it ended (client gone, server stopping)


@dataclass(frozen=True)
class ClipAnswer:
    track_id: int
    start_ms: float
    end_ms: float
    windows: int
    frames_seen: int  # the most model frames of one of the windows the person is seen in
    probabilities: np.ndarray  # (classes,) mean over the windows
    embedding: np.ndarray  # (E,) unit length


Observations = list[tuple[int, dict[int, np.ndarray]]]  # (timestamp ms, {track id: model-space joints})


def _check_timestamps(timestamps: list[int]) -> None:
    for index in range(1, len(timestamps)):
        if timestamps[index] <= timestamps[index - 1]:
            raise InputError(
                f"frame {index}: timestamp {timestamps[index]} ms does not follow the previous frame's"
                f" {timestamps[index - 1]} ms (timestamps must increase strictly)"
            )


def _pose_frames(
    clip, model: LoadedModel, runtime: Runtime, deadline: float, active: Callable[[], bool]
) -> Observations:
    spec = model.card.window
    max_people = resolve_max_people(clip.max_people, runtime.config.max_people)
    frames = [check_frame(frame, i, runtime.limits) for i, frame in enumerate(clip.frames)]
    _check_timestamps([f.timestamp_ms for f in frames])
    gate = FrameGate(spec.fps)
    admitted = [f for f in frames if gate.admit(f.timestamp_ms)]
    worker, estimator = start_estimator(runtime.pose_workers, runtime.make_estimator, max_people)
    poser = FramePoser(estimator, spec, runtime.config.pose_width, runtime.metrics)
    observations: Observations = []
    failures: list[BaseException] = []
    done = threading.Event()

    def pose_one(frame: IncomingFrame) -> None:
        try:
            if not failures:
                observations.append((frame.timestamp_ms, poser.pose(frame).people()))
        except BaseException as e:
            failures.append(e)
        if len(observations) + len(failures) == len(admitted) or failures:
            done.set()

    # Like a stream's frames, a clip's go through a lane, one at a time, taking turns with the
    # streams' frames: a long clip does not hold a pose worker to itself.
    def closed() -> None:
        stop_estimator(poser, runtime.pose_workers, worker)

    def dropped(frame: IncomingFrame, reason: str) -> None:
        if reason == "shutdown":  # the pose workers stopped: the rest of the clip will never be posed
            failures.append(Unavailable("the server is shutting down; reconnect (to another replica)"))
            done.set()

    lane: Lane = Lane(worker.executor, pose_one, len(admitted), on_drop=dropped, on_closed=closed)
    for frame in admitted:
        lane.put(frame)
    # Checked every CALL_POLL_S: a call that ended (the client went away, the server stops) stops
    # posing its clip instead of holding a pose worker and a call slot until the deadline.
    while not (finished := done.wait(min(CALL_POLL_S, max(0.0, deadline - time.monotonic())))):
        if not active():
            lane.close("cancelled")
            raise Unavailable("the call ended before its clip was posed")
        if time.monotonic() >= deadline:
            break
    lane.close("deadline")
    if failures:
        raise failures[0]
    if not finished:
        raise DeadlineExceeded("posing the clip took longer than the call's deadline")
    return observations


def _parse_skeletons(clip, model: LoadedModel, runtime: Runtime) -> tuple[Observations, str]:
    fmt = resolve_format(clip.format, model.card.window)
    parser = SkeletonParser(fmt, model.card.window, runtime.config.max_skeleton_people)
    _check_timestamps([frame.timestamp_ms for frame in clip.frames])
    observations = [(frame.timestamp_ms, parser.parse(frame, i)) for i, frame in enumerate(clip.frames)]
    if parser.tracker.lone_person_stays and not parser.caller_ids:
        observations = _single_person_clip_as_one_track(observations)
    return observations, fmt.coordinate_space


def _single_person_clip_as_one_track(observations: Observations) -> Observations:
    """A depth sensor's skeleton clip in which no frame holds two people, as one person's. The
    sensor reports every body it tracks in each frame, so such a clip shows one person; the tracker
    keeps a lone skeleton that jumps from one frame to the next (``PersonTracker.lone_person_stays``),
    but not one back after a gap (the sensor lost it for over a second: 9 of MSR Action3D's 566
    clips), which a stream takes for a new person and a clip, one sample of an action, need not:
    the answer would be about the longer part of the clip only. Not for a pose estimator's layouts
    or posed frames: an estimator that finds one person a frame may find another in the next (two
    people wrestling)."""
    if any(len(people) > 1 for _, people in observations):
        return observations
    first = next((track for _, people in observations for track in people), 0)
    return [(timestamp, {first: next(iter(people.values()))} if people else {}) for timestamp, people in observations]


def _classify(windows: list[np.ndarray], batcher: Batcher, deadline: float) -> list[Classified]:
    """Every window's result by ``deadline``, holding no more of the model's queue at a time than
    a stream may (``queue_share``): a long clip's windows submitted at once (hundreds for a
    900-frame clip) would fill the queue every stream of the model shares."""
    share, results = queue_share(batcher), []
    for first in range(0, len(windows), share):
        futures = [batcher.submit(window) for window in windows[first : first + share]]
        try:
            results += [f.result(max(0.0, deadline - time.monotonic())) for f in futures]
        except FutureTimeout:
            raise DeadlineExceeded("classifying the clip took longer than the call's deadline") from None
    return results


def answer_clip(
    clip, model: LoadedModel, runtime: Runtime, deadline: float, active: Callable[[], bool] = lambda: True
) -> ClipAnswer:
    """Classify an ``actionrec.v1.Clip`` (InputError when it is bad or shows nobody) by
    ``deadline`` (``time.monotonic()``; the call's, shared by its clips and by posing and
    classifying each). ``active`` says whether the call still wants the answer (False once the
    client has gone)."""
    kind = clip.WhichOneof("kind")
    frames = getattr(clip, kind).frames if kind else []
    if not frames:
        raise InputError("the clip has no frames")
    if len(frames) > runtime.config.max_clip_frames:
        raise InputError(f"the clip has {len(frames)} frames, over the limit of {runtime.config.max_clip_frames}")
    spec = model.card.window
    if kind == "frames":
        observations, space = _pose_frames(clip.frames, model, runtime, deadline, active), pose_coordinate_space(spec)
    else:
        observations, space = _parse_skeletons(clip.skeletons, model, runtime)
    config = runtime.config
    max_people = config.max_people if kind == "frames" else config.max_skeleton_people
    windower = StreamWindower(spec, max(1, spec.length // 2), config.max_gap_ms, config.min_presence, max_people)
    windows = [w for timestamp, people in observations for w in windower.add(timestamp, people)]
    windows += windower.flush(min_samples=1)  # a clip with no other window keeps its best
    if not windows:
        frames = f"{len(observations)} frame" + ("" if len(observations) == 1 else "s")
        raise InputError(f"no person found in the clip's {frames}")
    seen = Counter(track for _, people in observations for track in people)
    track_id = max({w.track_id for w in windows}, key=lambda t: (seen[t], -t))
    mine = [w for w in windows if w.track_id == track_id]
    results = _classify([prepare_window(w.samples, spec, space) for w in mine], runtime.batchers[model.name], deadline)
    return ClipAnswer(
        track_id=track_id,
        start_ms=min(w.start_ms for w in mine),
        end_ms=max(w.end_ms for w in mine),
        windows=len(mine),
        frames_seen=max(w.present for w in mine),
        probabilities=np.mean([r.probabilities for r in results], axis=0),
        embedding=unit(np.mean([unit(r.embedding) for r in results], axis=0)),
    )
