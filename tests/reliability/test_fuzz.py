"""Property-based fuzzing: every call of the service with random and hostile requests, against a
running server, and the frame decoder on its own.

Whatever a client sends, the server answers within the call's deadline with a status that
docs/service.md documents for that call (INTERNAL or UNKNOWN would be a bug), a stream that
ends well accounts for every frame it took, and the server keeps serving afterwards. The cases
start from real footage (frames of ``arm_wrestling.mp4``, ``basketball1.png``) and mutate it,
next to pure garbage, raw pixels of any size, timestamps anywhere in int64, skeletons of every
layout with NaN, infinite, huge and wrongly counted values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import grpc
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from service.actions import ActionStore
from service.frames import FrameLimits, check_frame, decode_frame
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.testing import (
    VIDEOS,
    assert_still_serving,
    encoded_frames,
    frame_requests,
    running_server,
    skeleton_requests,
    wait_until,
)
from skeleton.errors import InputError
from skeleton.layouts import LAYOUTS
from skeleton.pose.video import shrunk_size

from .conftest import CASES, STATUSES, TIMEOUT, fuzz_settings

INT64 = (-(2**63), 2**63 - 1)
UINT32_MAX = 2**32 - 1
# Small limits, so that requests over them are cheap to make.
LIMITS = FrameLimits(max_image_bytes=256 << 10, max_image_pixels=1 << 20)
MAX_CLIP_FRAMES = 48
MAX_SKELETON_PEOPLE = 16
NAMES = ("wave", "jump", "fuzz-set", "default", "sports2d", "daily3d")  # often valid, so OK paths get hit

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
# The statuses docs/service.md documents for each call, given a well-formed server (no auth, no
# drain, one call at a time, so no stream limit). DEADLINE_EXCEEDED is documented only for a
# clip the server could not finish within the call's deadline (see ``assert_documented``).
DOCUMENTED = {
    "StreamFrames": {OK, INVALID, NOT_FOUND},
    "StreamSkeletons": {OK, INVALID, NOT_FOUND},
    "ClassifyClip": {OK, INVALID, NOT_FOUND},
    "EnrollAction": {OK, INVALID, NOT_FOUND},
    "ListActions": {OK},
    "DeleteAction": {OK, NOT_FOUND},
    "GetModelInfo": {OK, NOT_FOUND},
    "ListModels": {OK},
}
CLIP_CALLS = {"ClassifyClip", "EnrollAction"}


def assert_documented(method: str, code: grpc.StatusCode, details: str) -> None:
    STATUSES[method, code.name] += 1
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and method in CLIP_CALLS:
        assert "the call's deadline" in details, f"{method} hung: the client's deadline passed ({details})"
        return
    assert code in DOCUMENTED[method], f"{method} answered {code.name}: {details!r}"
    if code != OK:
        assert details, f"{method} answered {code.name} without saying why"


@dataclass
class Answer:
    code: grpc.StatusCode
    details: str
    value: object = None


def answer(run: Callable[[], object]) -> Answer:
    try:
        return Answer(OK, "", run())
    except grpc.RpcError as e:
        return Answer(e.code(), e.details() or "")


# ---------------------------------------------------------------- the server under test


@pytest.fixture(scope="module")
def server(make_config):
    config = make_config(
        max_image_bytes=LIMITS.max_image_bytes,
        max_image_pixels=LIMITS.max_image_pixels,
        max_clip_frames=MAX_CLIP_FRAMES,
        max_skeleton_people=MAX_SKELETON_PEOPLE,
    )
    with running_server(config) as server:
        yield server


@pytest.fixture(scope="module")
def channel(server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def api(channel) -> pb_grpc.ActionRecognitionStub:
    return pb_grpc.ActionRecognitionStub(channel)


@pytest.fixture(scope="module")
def footage() -> list[tuple[bytes, int]]:
    """Real frames (JPEG) of a two-person clip, with their timestamps."""
    return encoded_frames(VIDEOS / "arm_wrestling.mp4", 42)


@pytest.fixture(scope="module")
def real_images(footage) -> list[bytes]:
    return [data for data, _ in footage[::6]] + [(VIDEOS / "basketball1.png").read_bytes()]


# Warnings the service gives about a caller's own input, for its operator, once a stream (the
# caller sees the same in its stream's stats): fuzzed input may rightly cause them.
INPUT_DIAGNOSTICS = ("stream has more tracks than it keeps",)


def assert_unharmed(server, channel, warnings: list[logging.LogRecord]) -> None:
    """Nothing logged as a warning or an error (an exception the caller never saw) but the
    diagnostics of a caller's input, no stream left open, health SERVING, and a good stream
    still gets its events."""
    faults = [r for r in warnings if not r.getMessage().startswith(INPUT_DIAGNOSTICS)]
    assert not faults, [f"{r.name}: {r.getMessage()}" for r in faults[:3]]
    assert wait_until(lambda: not server.sessions and server.runtime.slots.open == 0), "a stream was left open"
    assert_still_serving(channel)


# ---------------------------------------------------------------- strategies: images and frames


class Blob(bytes):
    """Image bytes that print as their size and first bytes, so a failing case stays readable."""

    def __repr__(self) -> str:
        return f"Blob({len(self)} bytes: {bytes(self[:12])!r}...)"


@dataclass(frozen=True)
class Raw:
    """Raw RGB pixels: ``pattern`` repeated to ``length`` bytes, declared ``width`` x ``height``."""

    width: int
    height: int
    length: int
    pattern: bytes = b"\x00"

    def message(self) -> pb.RawImage:
        rgb = (self.pattern * (self.length // len(self.pattern) + 1))[: self.length]
        return pb.RawImage(rgb=rgb, width=self.width, height=self.height)


@dataclass(frozen=True)
class FrameSpec:
    timestamp_ms: int
    picture: Blob | Raw | None  # encoded bytes, raw pixels, or no image at all

    def message(self) -> pb.Frame:
        frame = pb.Frame(timestamp_ms=self.timestamp_ms)
        if isinstance(self.picture, Raw):
            frame.raw.CopyFrom(self.picture.message())
        elif self.picture is not None:
            frame.encoded = self.picture
        return frame


def mostly(usual: st.SearchStrategy, unusual: st.SearchStrategy, odds: int = 9) -> st.SearchStrategy:
    """``usual`` about ``odds`` times as often as ``unusual``: most cases well formed, so that they
    reach deep into the server before something is off."""
    # sampled_from keeps the odds; one_of would not (hypothesis favours its later, larger branches)
    return st.sampled_from([True] * odds + [False]).flatmap(lambda usually: usual if usually else unusual)


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """JPEG or PNG bytes whose header claims another size (the pixels stay as they were)."""
    data = bytearray(data)
    if data.startswith(b"\x89PNG"):
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:
        sof = data.find(b"\xff\xc0")
        if sof > 0:
            data[sof + 5 : sof + 9] = (height & 0xFFFF).to_bytes(2, "big") + (width & 0xFFFF).to_bytes(2, "big")
    return bytes(data)


@st.composite
def mutated(draw, originals: list[bytes]) -> bytes:
    """A real image with bytes changed (mostly in its headers), cut short, or both; a cut keeps
    the end marker half of the time, so the damage reaches the decoder."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, min(len(data), 1024) - 1) | st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.none() | st.integers(0, len(data)))
    if cut is not None:
        data = data[:cut] + (data[-32:] if draw(st.booleans()) else b"")
    return bytes(data)


def encoded_images(originals: list[bytes]) -> st.SearchStrategy[Blob]:
    signatures = st.sampled_from([b"\xff\xd8", b"\xff\xd8\xff\xc0\x00\x11\x08", b"\x89PNG\r\n\x1a\n"])
    trailers = st.sampled_from([b"", b"\xff\xd9", b"\x00\x00\x00\x00IEND\xaeB`\x82"])
    sizes = st.integers(0, 70_000) | st.sampled_from([0, 1, 1 << 16, UINT32_MAX])
    return st.one_of(
        st.sampled_from(originals),
        mutated(originals),
        st.builds(with_declared_size, st.sampled_from(originals), sizes, sizes),
        st.builds(lambda s, b, t: s + b + t, signatures, st.binary(max_size=256), trailers),
        st.binary(max_size=512),
        st.just(bytes(LIMITS.max_image_bytes + 1)),  # one byte over the limit
    ).map(Blob)


@st.composite
def raw_images(draw) -> Raw:
    """Raw RGB of any declared size, with the right number of bytes or not."""
    side = st.integers(0, 64) | st.sampled_from([1, 2, 640, 1023, 1024, 1025, 4096, 65_535, UINT32_MAX])
    width, height = draw(side), draw(side)
    needed = width * height * 3
    kind = draw(st.sampled_from(["exact", "exact", "off_by_one", "garbage"]))
    if kind == "exact" and needed <= 3 << 20:
        return Raw(width, height, needed, draw(st.binary(min_size=1, max_size=48)))
    if kind == "off_by_one" and 0 < needed <= 3 << 20:
        return Raw(width, height, needed + draw(st.sampled_from([-1, 1])))
    return Raw(width, height, draw(st.integers(0, 64)), draw(st.binary(min_size=1, max_size=8)))


timestamps_anywhere = st.integers(*INT64) | st.sampled_from([INT64[0], -1, 0, 2**53, 2**53 + 1, 2**62, INT64[1]])


@st.composite
def timestamp_lists(draw, count: int, glitches: bool = True) -> list[int]:
    """``count`` timestamps a camera would send (steps of 20 to 70 ms) from any start, with at
    most one glitch: a repeat, a step back, or a jump anywhere in int64 (clamped to it)."""
    start = draw(mostly(st.integers(-1000, 10**6), timestamps_anywhere if glitches else st.integers(0, 2**40)))
    glitch_at = draw(mostly(st.none(), st.integers(1, max(1, count - 1)), odds=2)) if glitches else None
    if glitch_at is not None:
        glitch = draw(st.integers(-5, 0) | st.integers(1, 2**62) | st.sampled_from([2**53, INT64[1]]))
    stamps = [start]
    for i in range(1, count):
        step = glitch if i == glitch_at else draw(st.integers(20, 70))
        stamps.append(min(INT64[1], max(INT64[0], stamps[-1] + step)))
    return stamps


@st.composite
def frames_with(draw, originals: list[bytes], count: int) -> list[FrameSpec]:
    """``count`` frames with camera-like timestamps: real footage only (so that pose runs) half
    of the time, else each frame's picture any encoded bytes, raw pixels or no image at all."""
    real = st.sampled_from(originals).map(Blob)
    pictures = mostly(real, encoded_images(originals) | raw_images() | st.none(), odds=2)
    chosen = draw(st.lists(draw(st.sampled_from([real, pictures])), min_size=count, max_size=count))
    return list(map(FrameSpec, draw(timestamp_lists(count)), chosen))


texts = st.text(max_size=140)
bad_names = st.sampled_from(["", " wave", "x" * 65, "tab\there", "\x00"]) | texts
names = mostly(st.sampled_from(NAMES), bad_names)
models = mostly(st.sampled_from(["", "sports2d", "daily3d"]), st.text(max_size=20))
action_sets = mostly(st.just(""), st.just("fuzz-set") | names)
# Few names, so that enrolments, matches and deletions meet the same actions.
set_names = mostly(st.sampled_from(["", "fuzz-set"]), names)
action_names = mostly(st.sampled_from(["wave", "jump"]), names)


@st.composite
def stream_configs(draw) -> pb.StreamConfig:
    """A well-formed configuration with free choices, and at most one field set to anything."""
    config = pb.StreamConfig(
        stream_id=draw(texts),
        model=draw(st.sampled_from(["", "sports2d", "daily3d"])),
        frame_rate_hint=draw(st.sampled_from([0.0, 15.0, 28.0, 30.0]) | st.floats(0, 1000, width=32)),
        max_people=draw(st.integers(0, 2)),
        top_k=draw(st.integers(0, 20) | st.integers(0, UINT32_MAX)),
        window_stride=draw(st.integers(0, 128)),
        include_embedding=draw(st.booleans()),
        include_poses=draw(st.booleans()),
        stats_interval_ms=draw(mostly(st.just(0), st.integers(50, 500))),
        lossless=draw(st.booleans()),
    )
    faults = {
        "model": st.text(max_size=20),
        "frame_rate_hint": st.floats(width=32),
        "max_people": st.integers(0, UINT32_MAX),
        "window_stride": st.integers(0, UINT32_MAX),
        "action_set": action_sets,
        "stats_interval_ms": st.integers(0, UINT32_MAX),
        "stream_id": st.text(min_size=120, max_size=200),
    }
    fault = draw(mostly(st.none(), st.sampled_from(sorted(faults)), odds=2))
    if fault is not None:
        setattr(config, fault, draw(faults[fault]))
    return config


# ---------------------------------------------------------------- strategies: skeletons

LAYOUT_NAMES = sorted(LAYOUTS)
POISON = [float("nan"), float("inf"), -float("inf"), 3.4e38, -3.4e38, 1e30, 1e6, 1.0000001e6, -0.0, 1e-45]
# What can be wrong with one person of one frame (``people``); a stream has at most one of them.
SKELETON_FAULTS = (
    "too_many_people",
    "values_short",
    "values_long",
    "no_values",
    "poisoned",
    "huge",
    "confidences_short",
    "confidences_out_of_range",
    "track_id_missing",
    "track_id_repeated",
)


@st.composite
def people(draw, joints: int, dims: int, with_ids: bool, fault: str | None, least: int = 0) -> list[pb.Skeleton]:
    """A frame's skeletons (``least`` or more): plausible coordinates from a seeded generator (cheap
    to make), in pixels, metres or normalised units, confidences or none, ``fault`` in the first."""
    least = max(least, 1 if fault else 0)
    count = MAX_SKELETON_PEOPLE + 1 if fault == "too_many_people" else draw(st.integers(least, 3))
    rng = np.random.default_rng(draw(st.integers(0, UINT32_MAX)))
    scale = 1e30 if fault == "huge" else draw(st.sampled_from([1e-3, 1.0, 300.0, 1e6]))
    length = joints * dims + {"values_short": -1, "values_long": 1, "no_values": -joints * dims}.get(fault, 0)
    first_id = draw(st.integers(-(2**31), 2**31 - 1 - count))
    skeletons = []
    for p in range(count):
        coords = (rng.random(length if p == 0 else joints * dims) * scale).astype(np.float32).tolist()
        if fault == "poisoned" and p == 0:
            coords[draw(st.integers(0, len(coords) - 1))] = draw(st.sampled_from(POISON))
        skeleton = pb.Skeleton(coords=coords)
        if draw(st.booleans()):
            skeleton.confidence.extend(rng.random(joints).round(2).tolist())
        if p == 0 and fault == "confidences_short":
            skeleton.confidence[:] = [1.0] * (joints - 1)
        elif p == 0 and fault == "confidences_out_of_range":
            skeleton.confidence[:] = [draw(st.sampled_from([-0.5, 1.5, float("nan")]))] * joints
        if with_ids and not (p == 0 and fault == "track_id_missing"):
            skeleton.track_id = first_id if fault == "track_id_repeated" else first_id + p
        skeletons.append(skeleton)
    return skeletons


@st.composite
def skeleton_streams(
    draw, min_frames: int, max_frames: int, clean: bool = False
) -> tuple[pb.SkeletonFormat, list[pb.SkeletonFrame]]:
    """A declared format (mostly the defaults, else any layout, dims and space) and frames of
    people shaped by it, with at most one fault, in one frame; ``clean``: the defaults, no fault."""
    layout, dims, space = "", 0, ""
    if not clean:
        layout = draw(mostly(st.just(""), st.sampled_from(LAYOUT_NAMES) | st.text(max_size=12), odds=3))
        dims = draw(mostly(st.just(0), st.sampled_from([2, 3]) | st.integers(0, UINT32_MAX), odds=3))
        space = draw(mostly(st.just(""), st.sampled_from(["image", "camera", "world"]) | st.text(max_size=8), odds=3))
    fmt = pb.SkeletonFormat(layout=layout, dims=dims, coordinate_space=space)
    joints = LAYOUTS[layout or "mediapipe33"].num_joints if (layout or "mediapipe33") in LAYOUTS else 20
    shape_dims = dims if dims in (2, 3) else 2
    count = draw(st.integers(min_frames, max_frames))
    stamps = draw(timestamp_lists(count, glitches=not clean)) if count else []
    fault = None if clean else draw(mostly(st.none(), st.sampled_from(SKELETON_FAULTS), odds=2))
    fault_at = draw(st.integers(0, max(0, count - 1)))
    with_ids = draw(st.booleans())
    frames = [
        pb.SkeletonFrame(
            timestamp_ms=t,
            people=draw(people(joints, shape_dims, with_ids, fault if i == fault_at else None, least=int(clean))),
        )
        for i, t in enumerate(stamps)
    ]
    return fmt, frames


# ---------------------------------------------------------------- the frame decoder on its own


def test_frame_decoder_takes_any_bytes(real_images) -> None:
    """check_frame, then decode_frame in full and shrunk to a pose width (which decodes a JPEG
    scaled): images of the size the header claims (and that size shrunk), or InputError; a frame
    that decodes in full decodes shrunk too."""

    @fuzz_settings(short=300, full=4000)
    @given(
        picture=encoded_images(real_images) | raw_images(),
        timestamp=timestamps_anywhere,
        width=st.sampled_from([1, 7, 64]),
    )
    def case(picture: Blob | Raw, timestamp: int, width: int) -> None:
        CASES["decoder"] += 1
        try:
            incoming = check_frame(FrameSpec(timestamp, picture).message(), 0, LIMITS)
            rgb = decode_frame(incoming)
        except InputError as e:
            assert str(e).startswith("frame 0 "), f"the message does not name the frame: {e}"
            return
        assert incoming.width * incoming.height <= LIMITS.max_image_pixels
        assert rgb.dtype == np.uint8 and rgb.shape == (incoming.height, incoming.width, 3)
        shrunk = decode_frame(incoming, width)
        assert shrunk.dtype == np.uint8 and shrunk.shape[2] == 3
        assert (shrunk.shape[1], shrunk.shape[0]) == shrunk_size((incoming.width, incoming.height), width)

    case()


# ---------------------------------------------------------------- clips, actions, models


@dataclass(frozen=True)
class FrameClipSpec:
    frames: list[FrameSpec]
    max_people: int

    def message(self) -> pb.Clip:
        return pb.Clip(frames=pb.FrameClip(frames=[f.message() for f in self.frames], max_people=self.max_people))


@st.composite
def clips(draw, real_images: list[bytes]) -> pb.Clip | FrameClipSpec:
    """Skeleton clips mostly (cheap; well formed or with a fault), frame clips of real, mutated
    or garbage images, empty clips and clips one frame over the limit."""
    kinds = st.sampled_from(["clean", "skeletons", "skeletons", "frames"])
    kind = draw(mostly(kinds, st.sampled_from(["empty", "too_long"])))
    if kind == "frames":
        count = draw(st.integers(1, 4))
        return FrameClipSpec(draw(frames_with(real_images, count)), draw(st.integers(0, 3)))
    if kind == "empty":
        return draw(st.sampled_from([pb.Clip(), pb.Clip(skeletons=pb.SkeletonClip()), pb.Clip(frames=pb.FrameClip())]))
    if kind == "too_long":
        frame = pb.SkeletonFrame(people=[pb.Skeleton(coords=[1.0] * 66)])
        frames = [pb.SkeletonFrame(timestamp_ms=40 * i, people=frame.people) for i in range(MAX_CLIP_FRAMES + 1)]
        return pb.Clip(skeletons=pb.SkeletonClip(frames=frames))
    fmt, frames = draw(skeleton_streams(min_frames=1, max_frames=24, clean=kind == "clean"))
    return pb.Clip(skeletons=pb.SkeletonClip(format=fmt, frames=frames))


def _and_delete(enrol: pb.EnrollActionRequest) -> list[tuple[str, object]]:
    delete = pb.DeleteActionRequest(action_set=enrol.action_set, action=enrol.action, model=enrol.model)
    return [("EnrollAction", enrol), ("DeleteAction", delete)]


def action_requests(clip: st.SearchStrategy) -> st.SearchStrategy[list[tuple[str, object]]]:
    """[(method, request)] for the calls about enrolled actions and models: one call, or an
    enrolment and the deletion of what it enrolled."""
    clean = skeleton_streams(min_frames=1, max_frames=24, clean=True).map(
        lambda shaped: pb.Clip(skeletons=pb.SkeletonClip(format=shaped[0], frames=shaped[1]))
    )
    examples = mostly(
        st.lists(clean, min_size=1, max_size=3),
        st.lists(clip, min_size=1, max_size=3) | st.just([]) | clip.map(lambda c: [c] * 33),
        odds=1,
    )
    model = mostly(st.sampled_from(["", "sports2d"]), models)
    requests = {
        "EnrollAction": st.builds(
            pb.EnrollActionRequest, action_set=set_names, action=action_names, model=model, examples=examples
        ),
        "DeleteAction": st.builds(pb.DeleteActionRequest, action_set=set_names, action=action_names, model=model),
        "ListActions": st.builds(pb.ListActionsRequest, action_set=set_names, model=model),
        "GetModelInfo": st.builds(pb.GetModelInfoRequest, model=models),
        "ListModels": st.just(pb.ListModelsRequest()),
    }
    one = st.sampled_from(sorted(requests)).flatmap(lambda method: requests[method].map(lambda r: [(method, r)]))
    return mostly(one, requests["EnrollAction"].map(_and_delete), odds=3)


def test_action_and_model_calls_fuzz(api, server, channel, real_images, service_warnings) -> None:
    # Enrolled actions are cheap to make from skeletons; frame clips cost a pose model each.
    skeleton_clips = clips(real_images).filter(lambda c: not isinstance(c, FrameClipSpec))

    @fuzz_settings(short=120, full=1500)
    @given(calls=st.lists(action_requests(skeleton_clips), min_size=1, max_size=3).map(lambda c: sum(c, [])))
    def case(calls: list[tuple[str, object]]) -> None:
        CASES["actions and models"] += 1
        enrolled = None  # what the last good enrolment asked for: its deletion must succeed
        for method, request in calls:
            result = answer(partial(getattr(api, method), request, timeout=TIMEOUT))
            assert_documented(method, result.code, result.details)
            if method == "EnrollAction" and result.code == OK:
                assert result.value.action.action == request.action
                assert result.value.action.examples >= len(request.examples)
                enrolled = (request.action_set, request.action, request.model)
            elif method == "DeleteAction" and (request.action_set, request.action, request.model) == enrolled:
                assert result.code == OK, f"what was just enrolled could not be deleted: {result.details}"
                enrolled = None

    case()
    assert_unharmed(server, channel, service_warnings)
    # the store the fuzzing wrote reads back as it was
    reread = ActionStore(server.config.actions_file)
    assert [(a.action_set, a.action) for a in reread.list()] == [
        (a.action_set, a.action) for a in server.runtime.actions.list()
    ]


def _one_person_at(timestamps_ms: list[int]) -> list[pb.SkeletonFrame]:
    person = pb.Skeleton(coords=np.linspace(100, 400, 66).tolist())
    return [pb.SkeletonFrame(timestamp_ms=t, people=[person]) for t in timestamps_ms]


def _new_ids_every_frame(count: int, per_frame: int) -> list[pb.SkeletonFrame]:
    frames = _one_person_at([33 * i for i in range(count)])
    for i, frame in enumerate(frames):
        frame.people[0].track_id = per_frame * i
        frame.people.extend(
            pb.Skeleton(coords=frame.people[0].coords, track_id=per_frame * i + p) for p in range(1, per_frame)
        )
    return frames


def test_classify_clip_fuzz(api, server, channel, real_images, service_warnings) -> None:
    @fuzz_settings(short=100, full=1300)
    @given(
        clip=clips(real_images),
        model=models,
        top_k=mostly(st.integers(0, 20), st.integers(0, UINT32_MAX)),
        action_set=action_sets,
        include_embedding=st.booleans(),
    )
    @example(  # a window's end beyond int64 once read back from the windower's float64 times
        clip=pb.Clip(skeletons=pb.SkeletonClip(frames=_one_person_at([-213, INT64[1] - 213]))),
        model="",
        top_k=0,
        action_set="",
        include_embedding=False,
    )
    def case(clip: pb.Clip | FrameClipSpec, model: str, top_k: int, action_set: str, include_embedding: bool) -> None:
        CASES["ClassifyClip"] += 1
        clip = clip.message() if isinstance(clip, FrameClipSpec) else clip
        request = pb.ClassifyClipRequest(
            model=model, clip=clip, top_k=top_k, action_set=action_set, include_embedding=include_embedding
        )
        result = answer(lambda: api.ClassifyClip(request, timeout=TIMEOUT))
        assert_documented("ClassifyClip", result.code, result.details)
        if result.code == OK:
            response = result.value
            assert 1 <= len(response.labels) <= max(1, top_k or 3) and response.windows >= 1
            assert all(0 <= s.score <= 1 for s in response.labels), response.labels

    case()
    assert_unharmed(server, channel, service_warnings)


# ---------------------------------------------------------------- streams


def _stream_outcome(method: str, call, requests: list, frame_count: int | None) -> None:
    """Check a stream's answer: a documented status; when it ended well, its final statistics
    account for every frame it took."""
    responses: list[pb.StreamResponse] = []
    result = answer(lambda: responses.extend(call(iter(requests), timeout=TIMEOUT)))
    assert_documented(method, result.code, result.details)
    if result.code != OK or frame_count is None:
        return
    assert responses and responses[-1].stats.final, "a stream ended without its final statistics"
    final = responses[-1].stats
    assert final.frames_received == frame_count and final.frames_pending == 0
    accounted = final.frames_processed + final.frames_skipped + sum(final.frames_dropped.values())
    assert accounted == frame_count, final
    events = [r.event for r in responses if r.WhichOneof("kind") == "event"]
    assert len(events) == final.windows_classified
    assert all(0 <= s.score <= 1 for e in events for s in e.labels), "a score is not a probability"


def test_stream_frames_fuzz(api, server, channel, real_images, footage, service_warnings) -> None:
    @fuzz_settings(short=80, full=1000)
    @given(
        first=mostly(st.just("config"), st.sampled_from(["frame", "nothing"])),
        config=stream_configs().map(lambda c: pb.StreamFramesRequest(config=c)),
        frames=st.integers(0, 6).flatmap(lambda n: frames_with(real_images, n)),
        extra=mostly(st.none(), st.sampled_from(["config", "empty"])),
    )
    @example(  # raw pixels one row high and wider than the pose width
        first="config",
        config=pb.StreamFramesRequest(config=pb.StreamConfig()),
        frames=[FrameSpec(0, Raw(width=4096, height=1, length=4096 * 3))],
        extra=None,
    )
    @example(  # increasing in ms, but not once MediaPipe counts in microseconds
        first="config",
        config=pb.StreamFramesRequest(config=pb.StreamConfig()),
        frames=[FrameSpec(t, Blob(real_images[0])) for t in (0, 2**62)],
        extra=None,
    )
    def case(first: str, config, frames: list[FrameSpec], extra: str | None) -> None:
        CASES["StreamFrames"] += 1
        messages = [pb.StreamFramesRequest(frame=f.message()) for f in frames]
        if extra == "config":
            messages.insert(len(messages) // 2, config)
        elif extra == "empty":
            messages.append(pb.StreamFramesRequest())
        if first == "config":
            messages.insert(0, config)
        elif first == "nothing":
            messages = []
        configured = first == "config" and extra is None
        _stream_outcome("StreamFrames", api.StreamFrames, messages, len(frames) if configured else None)

    case()
    assert_unharmed(server, channel, service_warnings)
    # and real footage still gets its events through pose
    config = pb.StreamConfig(stream_id="after-fuzz", lossless=True, max_people=2)
    longer = encoded_frames(VIDEOS / "arm_wrestling.mp4", 140)  # someone is seen for half a window in it
    responses = list(api.StreamFrames(frame_requests(config, longer), timeout=TIMEOUT))
    assert any(r.WhichOneof("kind") == "event" for r in responses)
    assert responses[-1].stats.final and responses[-1].stats.frames_received == len(longer)


def test_stream_skeletons_fuzz(api, server, channel, service_warnings) -> None:
    @fuzz_settings(short=200, full=2500)
    @given(
        stream=stream_configs(),
        shaped=skeleton_streams(min_frames=0, max_frames=40),
        extra=mostly(st.none(), st.sampled_from(["config", "empty", "no_config"])),
    )
    @example(stream=pb.StreamConfig(), shaped=(pb.SkeletonFormat(), _one_person_at([0, INT64[1]])), extra=None)
    # Track ids new in every frame (a caller numbering its detections, not its people): more tracks
    # than the stream keeps within a window's span, which is the caller's to fix, not a fault.
    @example(stream=pb.StreamConfig(), shaped=(pb.SkeletonFormat(), _new_ids_every_frame(40, 3)), extra=None)
    def case(stream, shaped, extra: str | None) -> None:
        CASES["StreamSkeletons"] += 1
        fmt, frames = shaped
        config = pb.SkeletonStreamConfig(stream=stream, format=fmt)
        messages = list(skeleton_requests(config, frames))
        if extra == "config":
            messages.append(messages[0])
        elif extra == "empty":
            messages.append(pb.StreamSkeletonsRequest())
        elif extra == "no_config":
            messages = messages[1:]
        _stream_outcome("StreamSkeletons", api.StreamSkeletons, messages, None if extra else len(frames))

    case()
    assert_unharmed(server, channel, service_warnings)
