"""The service's parts on their own: frame checks, frame-rate gate, windower, lanes, batcher,
model registry and the enrolled-action store."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import itertools
import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from service import channels, client, draw, outgoing
from service.actions import ActionStore, StoreUnwritable, open_store
from service.batcher import Batcher
from service.channels import health_status, make_channel
from service.client import (
    ClientOptions,
    Source,
    ask_model,
    default_stream_id,
    model_frame_gate,
    open_source,
    run_client,
)
from service.clip_calls import brief_answer
from service.devmodel import build_model, sports2d_card
from service.draw import Annotator, Style, draw_people, label_origin
from service.errors import NotFound, Overloaded
from service.frames import FrameLimits, ImageHeader, check_frame, decode_frame, decode_scale, encoded_image_size
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.lanes import Lane
from service.loadgen import StreamResult, steady_rate, whole_run_rate
from service.models import ModelRegistry, load_model
from service.testing import ROOT, VIDEOS, free_port
from service.windowing import TRACKS_PER_PERSON, FrameGate, StreamWindower
from skeleton.errors import InputError
from skeleton.pose.video import probe_video, read_frames, resize_to, shrunk_size
from skeleton.resample import resample_to_fps
from skeleton.windows import WindowSpec

SPEC = WindowSpec(layout="penn13", dims=2, length=8, fps=10.0, normalization="centre-torso")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("models") / "sports2d.onnx", sports2d_card())


@pytest.fixture(scope="module")
def png_bytes() -> bytes:
    return (VIDEOS / "basketball1.png").read_bytes()


# ---------------------------------------------------------------- frames


def test_a_streams_outbox_keeps_half_its_room_for_events() -> None:
    """Pose messages may fill half of a stream's outbox, events all of it, and the control items
    that end a stream always get in: a client reading slowly loses poses before events."""
    from service.session import Outbox

    outbox = Outbox(4)
    assert [outbox.put(f"poses {k}", share=0.5) for k in range(3)] == [True, True, False]
    assert [outbox.put(f"event {k}") for k in range(3)] == [True, True, False]
    assert outbox.put("end", droppable=False)
    assert [outbox.get(0.0) for _ in range(6)] == ["poses 0", "poses 1", "event 0", "event 1", "end", None]


def test_real_png_and_jpeg_are_checked_and_decoded(png_bytes: bytes) -> None:
    assert encoded_image_size(png_bytes) == ImageHeader("png", 640, 480)
    frame = check_frame(pb.Frame(timestamp_ms=5, encoded=png_bytes), 0, FrameLimits())
    rgb = decode_frame(frame)
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert encoded_image_size(jpeg.tobytes()) == ImageHeader("jpeg", 640, 480)
    assert decode_frame(check_frame(pb.Frame(encoded=jpeg.tobytes()), 1, FrameLimits())).shape == (480, 640, 3)


def hd_frame() -> np.ndarray:
    """A 1920x1080 RGB frame of a real clip."""
    rgb, _ = next(read_frames(VIDEOS / "hugging_ntu_style.mp4"))
    assert rgb.shape == (1080, 1920, 3)
    return rgb


def jpeg_frame(rgb: np.ndarray) -> pb.Frame:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return pb.Frame(timestamp_ms=0, encoded=jpeg.tobytes())


@pytest.mark.parametrize(
    "width, pose_width, scale", [(1920, 640, 2), (1280, 640, 2), (2600, 640, 4), (768, 640, 1), (1920, 0, 1)]
)
def test_jpeg_is_decoded_scaled_and_shrunk_to_the_pose_width(width: int, pose_width: int, scale: int) -> None:
    rgb = cv2.resize(hd_frame(), (width, round(width * 9 / 16)), interpolation=cv2.INTER_AREA)
    frame = check_frame(jpeg_frame(rgb), 0, FrameLimits())
    assert decode_scale(frame, pose_width) == scale
    decoded = decode_frame(frame, pose_width)
    out_width = pose_width or width
    assert decoded.shape == (round(rgb.shape[0] * out_width / width), out_width, 3)
    # The same picture as a full decode shrunk by area averaging.
    shrunk = cv2.resize(rgb, decoded.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(decoded.astype(int) - shrunk).mean() < 4


def test_odd_sized_jpeg_scales_round_up_and_png_and_raw_are_shrunk_without_scaling(png_bytes: bytes) -> None:
    odd = hd_frame()[:723, :1283]
    frame = check_frame(jpeg_frame(odd), 0, FrameLimits())
    assert decode_scale(frame, 300) == 4  # decoded at 321 x 181 (rounded up), then shrunk
    assert decode_frame(frame, 300).shape == (169, 300, 3)
    png = check_frame(pb.Frame(encoded=png_bytes), 0, FrameLimits())
    assert decode_scale(png, 100) == 1 and decode_frame(png, 320).shape == (240, 320, 3)
    pixels = np.arange(2 * 640 * 3, dtype=np.uint8).reshape(2, 640, 3)
    raw = check_frame(pb.Frame(raw=pb.RawImage(width=640, height=2, rgb=pixels.tobytes())), 0, FrameLimits())
    assert decode_scale(raw, 100) == 1 and decode_frame(raw, 320).shape == (1, 320, 3)
    full = decode_frame(raw)
    assert full.flags.writeable and np.array_equal(full, pixels)


def exif_tiff(value: int, byte_order: str = ">") -> bytes:
    """EXIF's TIFF structure with one IFD that holds only an orientation tag."""
    tiff = (b"MM\x00*" if byte_order == ">" else b"II*\x00") + struct.pack(byte_order + "IH", 8, 1)
    return tiff + struct.pack(byte_order + "HHIHH", 0x0112, 3, 1, value, 0) + struct.pack(byte_order + "I", 0)


def app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_exif_orientation(jpeg: bytes, value: int, byte_order: str = ">") -> bytes:
    """``jpeg`` with an APP1 EXIF segment, right after the start marker, holding ``value``."""
    return jpeg[:2] + app1(b"Exif\x00\x00" + exif_tiff(value, byte_order)) + jpeg[2:]


def opencv_shown(data: bytes) -> np.ndarray:
    """The picture as OpenCV shows it (it reads the EXIF orientation itself), RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("orientation, byte_order", [(o, ">") for o in range(1, 9)] + [(3, "<"), (6, "<"), (8, "<")])
def test_a_jpeg_stored_on_its_side_is_sized_and_decoded_upright(orientation: int, byte_order: str) -> None:
    """A phone's portrait JPEG (EXIF orientation) is decoded as it is shown (as OpenCV shows
    it), and its size is the shown one: pose sees people standing, landmarks are in shown pixels."""
    stored = hd_frame()
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(stored, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    data = with_exif_orientation(jpeg.tobytes(), orientation, byte_order)
    frame = check_frame(pb.Frame(encoded=data), 0, FrameLimits())
    shown = opencv_shown(data)
    assert (frame.height, frame.width) == shown.shape[:2] == ((1080, 1920) if orientation < 5 else (1920, 1080))
    assert np.array_equal(decode_frame(frame), shown)
    # Scaled decoding turns it too (a 1/2 or 1/4-scale decode, then shrunk to 320 wide).
    assert decode_scale(frame, 320) == (2 if orientation >= 5 else 4)
    shrunk = decode_frame(frame, 320)
    assert (shrunk.shape[1], shrunk.shape[0]) == shrunk_size((frame.width, frame.height), 320)
    assert np.abs(shrunk.astype(int) - resize_to(shown, shrunk.shape[1::-1]).astype(int)).mean() < 3


def test_the_orientation_is_read_wherever_readers_find_it() -> None:
    """The first EXIF segment counts, also after the frame header, and a PNG's eXIf chunk
    counts too: such images are sized and decoded as shown, never refused as inconsistent."""
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[:5, :10] = (255, 0, 0)  # a mark in a corner shows how the picture was turned
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    jpeg = jpeg.tobytes()
    sof = jpeg.index(b"\xff\xc0")
    after_sof = sof + 2 + struct.unpack(">H", jpeg[sof + 2 : sof + 4])[0]
    exif6, exif1 = app1(b"Exif\x00\x00" + exif_tiff(6)), app1(b"Exif\x00\x00" + exif_tiff(1))
    xmp = app1(b"http://ns.adobe.com/xap/1.0/\x00<x/>")
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    png = png.tobytes()
    tiff = exif_tiff(6)
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + struct.pack(">I", zlib.crc32(b"eXIf" + tiff))
    ihdr_end = 8 + 12 + 13  # signature, then IHDR's length, type, 13 bytes of data and CRC
    cases = {
        "EXIF after the frame header": (jpeg[:after_sof] + exif6 + jpeg[after_sof:], (30, 50)),
        "XMP, then EXIF": (jpeg[:2] + xmp + exif6 + jpeg[2:], (30, 50)),
        "upright EXIF, then another on its side": (jpeg[:2] + exif1 + exif6 + jpeg[2:], (50, 30)),
        "a PNG's eXIf chunk": (png[:ihdr_end] + chunk + png[ihdr_end:], (30, 50)),
    }
    for name, (data, shown_size) in cases.items():
        frame = check_frame(pb.Frame(encoded=data), 0, FrameLimits())
        shown = opencv_shown(data)
        assert (frame.width, frame.height) == shown_size == shown.shape[1::-1], name
        assert np.abs(decode_frame(frame).astype(int) - shown.astype(int)).max() <= 8, name


def test_a_malformed_or_unknown_exif_orientation_is_taken_as_upright() -> None:
    ok, jpeg = cv2.imencode(".jpg", np.zeros((30, 50, 3), np.uint8))
    for data in (
        with_exif_orientation(jpeg.tobytes(), 9),  # not an orientation
        with_exif_orientation(jpeg.tobytes(), 0x0600, byte_order="<"),  # 6 in the wrong byte order
        jpeg.tobytes()[:2] + b"\xff\xe1\x00\x0cExif\x00\x00MM\x00*" + jpeg.tobytes()[2:],  # cut short
    ):
        frame = check_frame(pb.Frame(encoded=data), 0, FrameLimits())
        assert (frame.width, frame.height) == (50, 30) and decode_frame(frame).shape == (30, 50, 3)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b"", "empty image bytes"),
        (lambda b: b"GIF89a" + b[6:], "neither JPEG nor PNG"),
        (lambda b: b[: len(b) // 2], "truncated PNG"),
        (lambda b: b[:20], "truncated PNG"),
    ],
)
def test_bad_image_bytes_are_refused_on_arrival(png_bytes: bytes, damage, message: str) -> None:
    with pytest.raises(InputError, match=message) as error:
        check_frame(pb.Frame(timestamp_ms=7, encoded=damage(png_bytes)), 3, FrameLimits())
    assert str(error.value).startswith("frame 3 (t=7 ms): ")


def test_truncated_jpeg_and_oversized_images_are_refused(png_bytes: bytes) -> None:
    rgb = cv2.imdecode(np.frombuffer(png_bytes, np.uint8), cv2.IMREAD_COLOR)
    jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
    with pytest.raises(InputError, match="truncated JPEG"):
        check_frame(pb.Frame(encoded=jpeg[: len(jpeg) - 500]), 0, FrameLimits())
    with pytest.raises(InputError, match="over the limit"):
        check_frame(pb.Frame(encoded=png_bytes), 0, FrameLimits(max_image_bytes=1000))
    with pytest.raises(InputError, match="over the limit"):
        check_frame(pb.Frame(encoded=png_bytes), 0, FrameLimits(max_image_pixels=640 * 479))


def test_raw_frames_must_match_their_declared_size() -> None:
    good = pb.Frame(raw=pb.RawImage(rgb=bytes(4 * 3 * 3), width=4, height=3))
    assert decode_frame(check_frame(good, 0, FrameLimits())).shape == (3, 4, 3)
    with pytest.raises(InputError, match="needs 36 RGB bytes, got 35"):
        check_frame(pb.Frame(raw=pb.RawImage(rgb=bytes(35), width=4, height=3)), 0, FrameLimits())
    with pytest.raises(InputError, match="no image"):
        check_frame(pb.Frame(timestamp_ms=1), 0, FrameLimits())


# ---------------------------------------------------------------- the model's time grid


@pytest.mark.parametrize(
    "model_fps, camera_fps, expected",
    [(15.0, 30, 15), (15.0, 28, 15), (15.0, 25, 15), (15.0, 60, 15), (15.0, 10, 10), (15.0, 15, 15)]
    + [(7.5, 30, 7.5), (7.5, 25, 7.5)],
)
def test_gate_admits_the_models_frame_rate(model_fps: float, camera_fps: int, expected: float) -> None:
    for hint in (0.0, camera_fps):
        gate = FrameGate(model_fps, hint)
        admitted = [t for t in (round(i * 1000 / camera_fps) for i in range(camera_fps * 4)) if gate.admit(t)]
        assert abs(len(admitted) / 4 - expected) <= 0.5
        assert np.diff(admitted).max() <= 1000 / min(camera_fps, model_fps) * 1.5


def _people(value: float) -> dict[int, np.ndarray]:
    return {7: np.full((SPEC.num_joints, 2), value, dtype=np.float32)}


class _ModelInfoOnly:
    """A stub whose GetModelInfo reports ``frame_rate``."""

    def __init__(self, frame_rate: float) -> None:
        self.frame_rate = frame_rate

    def GetModelInfo(self, request, metadata=None, timeout=None) -> pb.ModelInfo:  # noqa: N802 (the gRPC method's name)
        return pb.ModelInfo(name="sports2d", frame_rate=self.frame_rate)


@pytest.mark.parametrize(
    "model_fps, camera_fps", [(15.0, 500 / 13), (29.97, 59.94), (10.0, 30.0), (20.0, 25.0), (7.5, 30.0), (7.5, 25.0)]
)
def test_the_clients_gate_sends_only_frames_the_servers_gate_admits(model_fps: float, camera_fps: float) -> None:
    """The client's gate runs on what the protocol carries (ModelInfo.frame_rate and the stream's
    frame_rate_hint, both float32), the server's on the model's own rate and the hint it got:
    fed only what the client sent, the server's gate admits every frame, from a jittery camera too."""
    rng = np.random.default_rng(0)
    timestamps = np.cumsum(np.round(1000 / camera_fps + rng.normal(0, 3, 3000)).clip(1)).astype(int)
    config = pb.StreamConfig(frame_rate_hint=camera_fps)
    options = ClientOptions(source="cam", server="x")
    client = model_frame_gate(ask_model(_ModelInfoOnly(model_fps), options, config), options, config.frame_rate_hint)
    server = FrameGate(model_fps, float(config.frame_rate_hint))  # as service.session builds it
    sent = [t for t in timestamps if client.admit(t)]
    assert config.model == "sports2d"  # the stream asks for the model the rate came from
    assert len(sent) < len(timestamps) and all(server.admit(t) for t in sent)
    assert model_frame_gate(ask_model(_ModelInfoOnly(0.0), options, config), options, camera_fps) is None
    # --all-frames sends every frame, but still asks the server (alive? which model?) and pins the model
    pinned = pb.StreamConfig(frame_rate_hint=camera_fps)
    every = ClientOptions(source="cam", server="x", all_frames=True)
    assert model_frame_gate(ask_model(_ModelInfoOnly(model_fps), every, pinned), every, camera_fps) is None
    assert pinned.model == "sports2d"


def test_a_clip_answer_is_called_a_pose_when_seen_under_half_a_window_or_a_second() -> None:
    """Half a window, or a second where that is less: a 4.1 s window is half filled by a 2 s
    action, as most of its model's training clips were."""
    long_window = pb.ModelInfo(window_length=32, frame_rate=7.5)
    assert brief_answer(pb.ClassifyClipResponse(frames_seen=8), long_window) == ""
    assert "a pose more than a motion" in brief_answer(pb.ClassifyClipResponse(frames_seen=7), long_window)
    short_window = pb.ModelInfo(window_length=16, frame_rate=15.0)
    assert brief_answer(pb.ClassifyClipResponse(frames_seen=8), short_window) == ""
    assert "seen in 7 model frames of the 16" in brief_answer(pb.ClassifyClipResponse(frames_seen=7), short_window)
    # a server that does not say its frame rate: half a window
    assert "pose" in brief_answer(pb.ClassifyClipResponse(frames_seen=15), pb.ModelInfo(window_length=32))


def test_windower_hands_out_full_windows_every_stride_at_the_models_rate() -> None:
    windower = StreamWindower(SPEC, stride=4, max_gap_ms=300)
    windows = []
    for i in range(60):  # 30 fps for 2 s: the windower resamples to 10 fps
        windows += windower.add(i * 1000 / 30, _people(float(i)))
    ends = [w.end_ms for w in windows]
    assert ends == pytest.approx([700, 1100, 1500, 1900])
    assert all(w.present == SPEC.length and w.track_id == 7 for w in windows)
    # Linear motion (value = frame index at 30 fps) read at 10 fps: steps of 3.
    assert np.diff(windows[0].samples[:, 0, 0]) == pytest.approx(np.full(SPEC.length - 1, 3.0))
    assert windower.flush() == []  # nothing new since the last window


def test_windower_leaves_gaps_missing_and_flushes_a_short_clip() -> None:
    windower = StreamWindower(SPEC, stride=4, max_gap_ms=150)
    for t in (0, 100, 200, 600):  # 400 ms unseen: longer than the allowed gap
        assert windower.add(t, _people(t)) == []
    (window,) = windower.flush()
    assert (window.start_ms, window.end_ms, window.present) == (0, 600, 4)
    # 7 grid steps held out to 8 by repeating the last; the gap stays missing, not invented
    assert window.samples[:, 0, 0].tolist()[:3] == [0, 100, 200] and window.samples[6:, 0, 0].tolist() == [600, 600]
    assert np.isnan(window.samples[3:6, 0, 0]).all()


def test_whole_millisecond_timestamps_fill_the_grid_times_they_round() -> None:
    """A 15 fps clip with timestamps in whole milliseconds (as the protocol carries them) for a
    7.5 fps model: every other frame is a grid time, some rounded down (1333 for 1333.33 ms).
    The window holds every grid time the clip spans, the last one included, with those frames'
    joints exactly: what resampling the clip at its exact times gives (how it was trained)."""
    spec = WindowSpec(layout="penn13", dims=2, length=32, fps=7.5, normalization="centre-torso")
    exact = np.arange(21) * 1000 / 15  # the last frame at 1333.33 ms, grid step 10
    coords = np.repeat(np.arange(21, dtype=np.float32)[:, None, None], spec.num_joints, axis=1).repeat(2, axis=2)
    expected, _ = resample_to_fps(coords, exact, spec.fps)
    for first_seen in (0, 4):  # a person first seen at a frame stamped 267 for the grid time 266.67
        windower = StreamWindower(spec, stride=16, max_gap_ms=300)
        for i, t in enumerate(np.round(exact)):
            assert windower.add(t, {7: coords[i]} if i >= first_seen else {}) == []
        (window,) = windower.flush(min_samples=1)
        assert window.present == len(expected) - first_seen // 2 and window.end_ms == pytest.approx(exact[-1])
        seen = window.samples[np.isfinite(window.samples[:, 0, 0]), 0, 0]
        assert np.unique(seen).tolist() == expected[first_seen // 2 :, 0, 0].tolist()


def test_a_person_missing_from_some_frames_is_read_at_every_grid_time_between_them() -> None:
    """A grid time that passes in a frame without the person is read from the frames around
    it when they are seen again within the gap: missing from every other or every third frame,
    they get the windows they get when those frames are not sent at all, each in the frame its
    end passes in (nothing waits for the person), less the last step where they were missed."""

    def windows_of(frames: list[tuple[float, dict]]) -> list:
        windower = StreamWindower(SPEC, stride=4, max_gap_ms=300)
        out = []
        for t, people in frames:
            out += windower.add(t, people)
        return out + windower.flush()

    times = [i * 1000 / 30 for i in range(90)]  # 30 fps for 3 s, the windower at 10 fps
    for every in (2, 3):
        seen = [(t, _people(float(i))) for i, t in enumerate(times) if i % every == 0]
        with_empty_frames = [(t, _people(float(i)) if i % every == 0 else {}) for i, t in enumerate(times)]
        alone, mixed = windows_of(seen), windows_of(with_empty_frames)
        assert len(alone) >= 5 and all(w.present == SPEC.length for w in alone[:-1])
        assert len(mixed) == len(alone)
        for a, b in zip(alone[:-1], mixed[:-1]):
            # A window handed out in a frame without the person lacks its last step (read at their
            # next frame, for the next window) and holds the one before still: nothing else differs.
            assert b.start_ms == a.start_ms and b.end_ms in (a.end_ms, a.end_ms - 100)
            assert b.present >= SPEC.length - 1
            assert np.allclose(b.samples[: b.present], a.samples[: b.present])


def test_a_window_with_nothing_new_is_not_handed_out() -> None:
    """A window every grid step (stride 1). A person missed at the steps where windows fall due
    gets none there (it would repeat their last one) and the next one, once seen, holds the
    steps between, read from the frames around them. A person who left gets no more windows,
    neither while the gap lasts nor when it has passed nor at the end."""
    windower = StreamWindower(SPEC, stride=1, max_gap_ms=300)
    missed = (1000, 1050, 1100, 1150)  # two grid steps (1000, 1100) pass without the person
    handed = [windower.add(t, {} if t in missed or t > 1500 else _people(t)) for t in range(0, 3000, 50)]
    handed.append(windower.flush())
    windows = [w for frame in handed for w in frame]
    assert [w.end_ms for w in windows] == pytest.approx([700, 800, 900, 1200, 1300, 1400, 1500])
    assert max(len(frame) for frame in handed) == 1  # on time: never a burst
    after_the_miss = windows[3]  # read again at 1000 and 1100, between the frames at 950 and 1200
    assert after_the_miss.present == SPEC.length and after_the_miss.samples[:, 0, 0] == pytest.approx(
        [500, 600, 700, 800, 900, 1000, 1100, 1200]
    )


def test_windower_keeps_a_bounded_number_of_tracks_when_ids_change_every_frame() -> None:
    """A caller whose track ids change every frame would leave a track per frame and person for
    a window's span. The windower keeps TRACKS_PER_PERSON per person, forgets the least recently
    seen past that, counts them, and never forgets someone in the current frame: a person who
    stays among the churn gets every window they get alone."""
    max_people = 3
    windower, alone = StreamWindower(SPEC, 4, 300, max_people=max_people), StreamWindower(SPEC, 4, 300)
    fresh = iter(range(1000, 10**6))
    mine, theirs = [], []
    for i in range(200):
        t = i * 100.0
        churn = {next(fresh): np.full((SPEC.num_joints, 2), -1.0, np.float32) for _ in range(max_people - 1)}
        mine += [w for w in windower.add(t, {**churn, **_people(t)}) if w.track_id == 7]
        theirs += alone.add(t, _people(t))
        assert windower.active_tracks <= TRACKS_PER_PERSON * max_people
    assert windower.forgotten_tracks == 200 * (max_people - 1) - (TRACKS_PER_PERSON * max_people - 1)
    assert [w.end_ms for w in mine] == [w.end_ms for w in theirs] and len(mine) == 49  # steps 7, 11, ..., 199
    assert all(np.array_equal(a.samples, b.samples) for a, b in zip(mine, theirs))
    # more people in one frame than the limit: all of them are kept for that frame
    crowd = {track: np.zeros((SPEC.num_joints, 2), np.float32) for track in range(50)}
    windower.add(20_000.0, crowd)
    assert windower.active_tracks == 50


def test_a_person_glimpsed_as_a_stream_ends_gets_no_window_but_a_clip_keeps_its_best() -> None:
    """Person 8 is seen in the last 2 of a window's 8 samples: a stream makes no claim about them
    (its windows need half); a clip's answer, which may have nothing else, takes that window."""
    glimpsed = []
    for min_samples in (None, 1):
        windower = StreamWindower(SPEC, stride=4, max_gap_ms=300)
        for t in range(0, 2000, 100):
            people = _people(t)
            if t >= 1800:
                people[8] = people[7] + 100.0
            windower.add(t, people)
        glimpsed.append([w.present for w in windower.flush(min_samples) if w.track_id == 8])
    assert glimpsed == [[], [2]]


def test_windower_survives_a_timestamp_far_in_the_future() -> None:
    windower = StreamWindower(SPEC, stride=4, max_gap_ms=300)
    for i in range(10):
        windower.add(i * 100, _people(i))
    started = time.monotonic()
    windows = windower.add(10**13, _people(0.0))
    assert time.monotonic() - started < 5.0  # not a step at a time up to the far timestamp
    # the one window still holding earlier samples (steps 4-9 of the one ending at step 11)
    assert [(w.end_ms, w.present) for w in windows] == [(900, 6)]


# ---------------------------------------------------------------- lanes


def test_lane_runs_one_item_at_a_time_in_order_and_drops_the_oldest_when_full() -> None:
    release = threading.Event()
    ran, dropped, active = [], [], []

    def process(item: int) -> None:
        active.append(item)
        assert len(active) == 1
        release.wait(5)
        ran.append(item)
        active.pop()

    closed_on = []  # the thread that closed the lane's resources
    with ThreadPoolExecutor(4, thread_name_prefix="pool") as pool:
        lane = Lane(
            pool,
            process,
            capacity=2,
            on_drop=lambda item, why: dropped.append((item, why)),
            on_closed=lambda: closed_on.append(threading.current_thread().name),
        )
        for item in range(6):
            lane.put(item)
        release.set()
        deadline = time.monotonic() + 5
        while lane.busy and time.monotonic() < deadline:
            time.sleep(0.01)
        lane.close("cancelled")
    assert ran == [0, 4, 5]  # 0 was running; 1, 2 and 3 were the oldest waiting when newer came
    assert dropped == [(1, "queue_full"), (2, "queue_full"), (3, "queue_full")]
    assert len(closed_on) == 1 and closed_on[0].startswith("pool") and not lane.put(9)


# ---------------------------------------------------------------- batcher and models


def test_a_model_that_onnxruntime_moves_to_the_cpu_says_so(model_path: Path, caplog) -> None:
    """onnxruntime retries a batch whose CUDA provider failed on the CPU and keeps the session
    there, saying so only on stdout: the model's providers now say it, and one warning does."""
    loaded = load_model(model_path)

    class MovedSession:  # the session as onnxruntime leaves it after such a fall-back
        def run(self, names, feeds):
            return loaded.session.run(names, feeds)

        def get_providers(self):
            return ["CPUExecutionProvider"]

    model = dataclasses.replace(loaded, providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    model = dataclasses.replace(model, session=MovedSession())
    window = np.zeros((2, *model.input_shape), dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="service.models"):
        for _ in range(3):
            assert len(model.run(window)) == 2
    assert model.running_on == ("CPUExecutionProvider",)
    warnings = [r for r in caplog.records if r.getMessage() == "model fell back to other execution providers"]
    assert len(warnings) == 1 and warnings[0].fields["now"] == ["CPUExecutionProvider"]
    assert loaded.running_on == loaded.providers  # a model that stayed where it was loaded


def test_batcher_gathers_windows_into_batches_and_refuses_beyond_its_queue(model_path: Path) -> None:
    model = load_model(model_path)
    window = np.zeros(model.input_shape, dtype=np.float32)
    sizes: list[int] = []  # of each batch run

    class Sizes:
        def observe_batch(self, model: str, size: int, waited_s: float, started: float) -> None:
            sizes.append(size)

    batcher = Batcher(model, max_batch=4, max_delay_ms=200, max_queue=6, metrics=Sizes())
    try:
        # The batcher's thread takes batches under the same lock: none is taken while the nine
        # windows come, so the first six queue and the last three are refused.
        with batcher._ready:
            futures = [batcher.submit(window) for _ in range(9)]
        refused = [f for f in futures if f.done() and isinstance(f.exception(), Overloaded)]
        assert refused == futures[6:]
        results = [f.result(30) for f in futures[:6]]
    finally:
        batcher.close()
    assert sizes == [4, 2]  # a full batch at once, the rest after the delay
    assert all(r.probabilities.shape == (len(model.card.labels),) for r in results)
    assert np.allclose([r.probabilities.sum() for r in results], 1.0, atol=1e-5)


def test_batcher_says_whether_it_has_room(model_path: Path) -> None:
    model = load_model(model_path)
    window = np.zeros(model.input_shape, dtype=np.float32)
    batcher = Batcher(model, max_batch=4, max_delay_ms=10_000, max_queue=2)
    try:
        assert batcher.has_room
        futures = [batcher.submit(window) for _ in range(2)]
        assert not batcher.has_room  # both wait for a fuller batch
    finally:
        batcher.close()
    assert not batcher.has_room  # closed
    assert all(f.result(5) for f in futures)  # closing ran what was queued


def test_batcher_sends_a_lonely_window_after_the_delay(model_path: Path) -> None:
    batcher = Batcher(load_model(model_path), max_batch=8, max_delay_ms=30, max_queue=8)
    try:
        started = time.monotonic()
        batcher.submit(np.zeros((32, 13, 2), dtype=np.float32)).result(30)
        assert 0.025 <= time.monotonic() - started < 5.0  # not held until more windows come (never)
    finally:
        batcher.close()


@pytest.mark.filterwarnings("ignore:Specified provider")  # onnxruntime's own words for the same
def test_a_model_says_what_it_runs_on_and_warns_when_a_provider_it_asked_for_is_missing(
    model_path: Path, monkeypatch, caplog
) -> None:
    """A GPU build of onnxruntime lists CUDA on a host without a usable GPU, and its session then
    runs on the CPU: the log says the providers the session has, and warns of the missing one."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.INFO, logger="service.models"):
        model = load_model(model_path)
    assert model.providers == ("CPUExecutionProvider",)
    logged = {r.message: r.fields for r in caplog.records}
    assert logged["model loaded"]["providers"] == ["CPUExecutionProvider"]
    assert logged["model runs without execution providers it asked for"]["missing"] == ["CUDAExecutionProvider"]


def test_registry_finds_models_by_name_or_path_and_picks_the_default(model_path: Path, tmp_path: Path) -> None:
    registry = ModelRegistry.load([], model_path.parent, default="sports2d")
    assert registry.names == ["sports2d"] and registry.get().name == "sports2d"
    other = build_model(tmp_path / "extra.onnx", sports2d_card(length=16), seed=3)
    both = ModelRegistry.load(["sports2d", str(other)], model_path.parent, default="sports2d")
    assert both.names == ["extra", "sports2d"] and both.get("extra").card.window.length == 16
    assert both.get("extra").version != both.get("sports2d").version
    with pytest.raises(NotFound, match="no model named 'nope'"):
        both.get("nope")
    with pytest.raises(InputError, match="default model 'daily3d'"):
        ModelRegistry.load(["sports2d", str(other)], model_path.parent, default="daily3d")


def test_registry_refuses_a_variant_unlike_the_model_served_beside_it(tmp_path: Path) -> None:
    card = sports2d_card()
    build_model(tmp_path / "m.onnx", card)
    build_model(tmp_path / "m.int8.onnx", sports2d_card(length=16), seed=1)  # another window: another model
    assert ModelRegistry.load(["m.int8"], tmp_path, default="m.int8").names == ["m.int8"]  # served alone: its own
    with pytest.raises(InputError, match=r"m\.int8\.onnx: its card differs from m\.onnx's in window"):
        ModelRegistry.load([], tmp_path, default="m")


def test_a_model_that_fails_its_warm_up_is_refused_naming_its_file(model_path: Path, monkeypatch) -> None:
    """A graph that passes every check and still fails a batch: refused at start-up in one line,
    not a traceback (or a failure in the first stream)."""
    import service.models

    def fails(self, batch):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got: 16 Expected: 1\nmore detail")

    monkeypatch.setattr(service.models.LoadedModel, "run", fails)
    with pytest.raises(InputError) as error:
        load_model(model_path, warmup_batches=(16,))
    assert str(error.value) == (
        f"{model_path}: a batch of 16 windows fails (RuntimeError: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT :"
        " Got: 16 Expected: 1)"
    )


# Loads shipped models as the server does (warmed up at its batch of 16) and prints how much
# resident memory that added, in MiB, while they are still loaded.
_LOAD_AND_MEASURE = """
import sys
from pathlib import Path
from service.models import ModelRegistry
from service.testing import rss_mib

import onnxruntime  # its own import is not the models' memory
before = rss_mib()
registry = ModelRegistry.load(sys.argv[1:], Path("models"), default=sys.argv[1], max_batch=16)
print(rss_mib() - before)
"""


def _cuda_listed() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(_cuda_listed(), reason="sessions on CUDA warm up in GPU memory, not the CPU arena")
def test_models_loaded_together_share_one_memory_arena() -> None:
    """Each session's own arena would keep its warm-up's peak: the three shipped models would hold
    about the sum of theirs (msr3d 280 MiB: three networks, daily3d 184, sports2d 49, measured).
    Sharing one, the three hold about what msr3d alone does, plus their weights."""

    def added_mib(*names: str) -> float:
        command = [sys.executable, "-c", _LOAD_AND_MEASURE, *names]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.split()[-1])

    largest_alone = added_mib("msr3d")
    together = added_mib("daily3d", "msr3d", "sports2d")
    assert largest_alone > 100  # the arena a batch of 16 needs, or this test measures nothing
    assert together - largest_alone < 60


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({}, "not an actionrec model"),
        ({**sports2d_card().to_metadata(), "actionrec.labels": '["a", "b"]'}, "scores has shape"),
        (
            {
                **sports2d_card().to_metadata(),
                "actionrec.window": sports2d_card(length=16).to_metadata()["actionrec.window"],
            },
            "skeleton has shape",
        ),
    ],
)
def test_registry_refuses_a_model_it_cannot_feed(tmp_path: Path, metadata: dict, message: str) -> None:
    path = build_model(tmp_path / "bad.onnx", sports2d_card(), metadata=metadata)
    with pytest.raises(InputError, match=message) as error:
        load_model(path)
    assert str(error.value).startswith(str(path))


def test_registry_refuses_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        ModelRegistry.load([], tmp_path, default="sports2d")
    with pytest.raises(InputError, match="no .onnx file"):
        ModelRegistry.load([], tmp_path / "empty", default="sports2d")


# ---------------------------------------------------------------- enrolled actions


def test_action_store_survives_a_restart_and_keys_actions_by_model_version(tmp_path: Path) -> None:
    path = tmp_path / "state" / "actions.json"
    store = ActionStore(path)
    rng = np.random.default_rng(0)
    wave, clap = rng.normal(size=(2, 16)), rng.normal(size=(3, 16))
    store.enroll("sports2d", "v1", "gym", "wave", wave)
    _, similarity = store.enroll("sports2d", "v1", "gym", "clap", clap)
    assert 0 < similarity <= 1
    store.enroll("sports2d", "v1", "gym", "wave", wave[:1])  # more examples of the same action
    assert not list(path.parent.glob("*.tmp"))  # written through a temporary file, renamed into place

    reopened = ActionStore(path)
    assert [(a.action, len(a.embeddings)) for a in reopened.list()] == [("clap", 3), ("wave", 3)]
    prototypes = reopened.prototypes("sports2d", "v1", "gym")
    assert prototypes.match(wave[0] + 0.01, 1)[0][0] == "wave"
    assert reopened.prototypes("sports2d", "v2", "gym") is None
    with pytest.raises(NotFound, match="another version"):
        reopened.require("sports2d", "v2", "gym")
    reopened.delete("sports2d", "gym", "wave")
    with pytest.raises(NotFound):
        reopened.delete("sports2d", "gym", "wave")
    assert [a.action for a in ActionStore(path).list()] == ["clap"]
    assert json.loads(path.read_text())["format"] == "actionrec-actions"


def test_an_action_store_write_that_fails_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    """Disk full while storing: the call fails with UNAVAILABLE and a message naming the file,
    and memory, cached prototypes and the file all keep the state before the call."""
    path = tmp_path / "actions.json"
    store = ActionStore(path)
    rng = np.random.default_rng(1)
    wave = rng.normal(size=(2, 16))
    store.enroll("sports2d", "v1", "gym", "wave", wave)
    before = path.read_bytes()
    assert store.prototypes("sports2d", "v1", "gym").match(wave[0], 1)[0][0] == "wave"  # cached now

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    for change in (
        lambda: store.enroll("sports2d", "v1", "gym", "clap", rng.normal(size=(2, 16))),
        lambda: store.delete("sports2d", "gym", "wave"),
    ):
        with pytest.raises(StoreUnwritable, match="No space left on device") as error:
            change()
        assert error.value.code == "UNAVAILABLE" and str(path) in str(error.value)
        assert [a.action for a in store.list()] == ["wave"]
        assert store.prototypes("sports2d", "v1", "gym").names == ("wave",)
        assert path.read_bytes() == before and not list(tmp_path.glob("*.tmp"))
    monkeypatch.undo()
    store.delete("sports2d", "gym", "wave")  # and once the disk has room, changes go through
    assert ActionStore(path).list() == []


def test_readers_of_the_action_store_do_not_wait_for_a_change_being_written(tmp_path: Path, monkeypatch) -> None:
    """Events are matched against the prototypes while an enrolment's file is being synced: they
    get the state before it, at once, and the state after it once it is stored."""
    store = ActionStore(tmp_path / "actions.json")
    rng = np.random.default_rng(2)
    store.enroll("sports2d", "v1", "gym", "wave", rng.normal(size=(2, 16)))
    syncing, release = threading.Event(), threading.Event()
    fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        syncing.set()
        release.wait(10)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    writer = threading.Thread(target=store.enroll, args=("sports2d", "v1", "gym", "clap", rng.normal(size=(2, 16))))
    writer.start()
    try:
        assert syncing.wait(10)
        started = time.monotonic()
        assert store.prototypes("sports2d", "v1", "gym").names == ("wave",)
        assert [a.action for a in store.list()] == ["wave"]
        assert time.monotonic() - started < 1.0
    finally:
        release.set()
        writer.join(10)
    assert store.prototypes("sports2d", "v1", "gym").names == ("clap", "wave")


def test_a_damaged_action_store_is_refused_by_the_store_and_set_aside_at_start_up(tmp_path: Path, caplog) -> None:
    path = tmp_path / "actions.json"
    damaged = ['{"format": "actionrec-actions", "version": 1, "actions": [{"model": 1}]}', '{"format": "actionrec-']
    path.write_text(damaged[0])
    with pytest.raises(InputError, match="unreadable enrolled actions"):
        ActionStore(path)
    for content in damaged:  # twice, most likely within one second: two backups all the same
        path.write_text(content)
        with caplog.at_level(logging.WARNING, logger="service.actions"):
            assert open_store(path).list() == []
        assert not path.exists()
    backups = sorted(tmp_path.glob("actions.json.corrupt-*"))
    assert sorted(b.read_text() for b in backups) == sorted(damaged)
    assert [r.message for r in caplog.records].count(
        "enrolled actions file damaged: set aside, starting with no enrolled actions"
    ) == 2
    open_store(path).enroll("sports2d", "v1", "gym", "wave", np.ones((1, 4)))  # a fresh file
    assert [a.action for a in ActionStore(path).list()] == ["wave"]
    assert sorted(b.read_text() for b in tmp_path.glob("actions.json.corrupt-*")) == sorted(damaged)


def test_action_store_bounds_examples_and_actions(tmp_path: Path, monkeypatch) -> None:
    """Examples pile up across enrolments and every change rewrites the file: both are bounded,
    and a call past a bound is refused, saying which, with the store unchanged."""
    import service.actions

    monkeypatch.setattr(service.actions, "MAX_EXAMPLES_PER_ACTION", 4)
    monkeypatch.setattr(service.actions, "MAX_ACTIONS", 2)
    store = ActionStore(tmp_path / "actions.json")
    store.enroll("m", "v1", "set", "wave", np.ones((3, 4)))
    with pytest.raises(InputError, match="action 'wave' has 3 examples; 2 more would pass the limit of 4"):
        store.enroll("m", "v1", "set", "wave", np.ones((2, 4)))
    store.enroll("m", "v2", "set", "wave", np.ones((4, 4)))  # a new model version starts it afresh
    store.enroll("m", "v2", "set", "clap", np.ones((1, 4)))
    with pytest.raises(InputError, match="the store holds 2 actions, its limit: delete some before enrolling 'bow'"):
        store.enroll("m", "v2", "set", "bow", np.ones((1, 4)))
    assert [(a.action, len(a.embeddings)) for a in ActionStore(tmp_path / "actions.json").list()] == [
        ("clap", 1),
        ("wave", 4),
    ]


def test_action_store_refuses_bad_names(tmp_path: Path) -> None:
    store = ActionStore(tmp_path / "fresh.json")
    for bad in ("", " padded", "x" * 65, "tab\there"):
        with pytest.raises(InputError, match="must be 1 to 64 printable"):
            store.enroll("m", "v", "set", bad, np.ones((1, 4)))


# ---------------------------------------------------------------- load generation


def _progress(start: float, end: float, rate: float, warmup: float) -> StreamResult:
    """A stream that reports every 0.1 s, processes nothing for ``warmup`` s, then ``rate`` frames/s."""
    result = StreamResult(final=pb.StreamStats(final=True))
    for t in np.arange(start, end + 1e-9, 0.1):
        done = max(0.0, t - start - warmup) * rate
        result.progress.append((float(t), round(done), round(done / 2)))
    return result


def test_steady_rate_counts_only_while_every_stream_runs() -> None:
    # The second stream starts late and ends early; the first's slow start is left out.
    results = [_progress(0.0, 10.0, 100.0, warmup=1.0), _progress(2.0, 8.0, 50.0, warmup=0.5)]
    assert steady_rate(results, "frames") == pytest.approx(150.0, rel=0.02)
    assert steady_rate(results, "windows") == pytest.approx(75.0, rel=0.03)
    # Over the whole run instead: the slow start and the idle ends count too.
    assert whole_run_rate(results, 10.0, "frames") == pytest.approx((900 + 275) / 10.0, rel=0.01)
    # Too short to have two reports inside, or a stream without its final statistics: no rate.
    assert np.isnan(steady_rate([_progress(0.0, 10.0, 100.0, 1.0), _progress(9.9, 10.0, 50.0, 0.0)]))
    assert np.isnan(steady_rate([StreamResult()]))


@pytest.mark.parametrize(
    "source, stream_id",
    [
        ("../shared/data/videos/arm_wrestling.mp4", "arm_wrestling.mp4"),
        ("0", "camera-0"),
        ("rtsp://admin:secret@192.168.1.10:8554/live/1?user=admin&password=secret", "192.168.1.10:8554/live/1"),
        ("rtsp://admin:secret@cam.local/stream", "cam.local/stream"),
        ("http://cam/" + "x" * 300, ("cam/" + "x" * 300)[:128]),
    ],
)
def test_the_clients_default_stream_id_never_carries_credentials(source: str, stream_id: str) -> None:
    assert default_stream_id(source) == stream_id
    assert "secret" not in default_stream_id(source) and len(default_stream_id(source)) <= 128


# ---------------------------------------------------------------- the client's failures


def _short_video(path: Path, frames: int = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


class _FakeService(pb_grpc.ActionRecognitionServicer):
    """Says the model has no frame rate (so the client sends every frame), counts the stream's
    frames, then ends the stream with ``refusal`` after ``refuse_after`` of them (None: reads on,
    saying nothing), once ``refuse_when`` is set if given."""

    def __init__(
        self,
        refuse_after: int | None,
        refusal: tuple[grpc.StatusCode, str] = (grpc.StatusCode.INVALID_ARGUMENT, "max_people 99 is over the limit"),
        refuse_when: threading.Event | None = None,
    ) -> None:
        self.refuse_after = refuse_after
        self.refusal = refusal
        self.refuse_when = refuse_when
        self.frames = 0
        self.streaming = threading.Event()

    def GetModelInfo(self, request, context):
        return pb.ModelInfo(name="sports2d")

    def StreamFrames(self, request_iterator, context):
        for request in request_iterator:
            if request.HasField("frame"):
                self.frames += 1
                self.streaming.set()
                if self.refuse_after is not None and self.frames >= self.refuse_after:
                    if self.refuse_when is not None:
                        self.refuse_when.wait(30)
                    context.abort(*self.refusal)
        return iter(())


@contextlib.contextmanager
def _fake_server(service: _FakeService) -> Iterator[int]:
    server = grpc.server(ThreadPoolExecutor(4))
    pb_grpc.add_ActionRecognitionServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(0)


def _camera(state: dict, frames: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
    """A live source whose every read takes a while, as OpenCV's does (endless, or ``frames``
    long); ``state`` says whether a read is under way and whether the source was closed."""
    try:
        for index in itertools.count() if frames is None else range(frames):
            state["reading"] = True
            time.sleep(0.2)
            state["reading"] = False
            yield np.zeros((48, 64, 3), np.uint8), index * 33
    finally:
        state["closed"] = True


@pytest.mark.parametrize(
    "name, message",
    [
        ("annotated.txt", "not a video file name"),
        ("", "is a folder"),  # the folder itself
        ("folder.mp4", "is a folder"),
        ("/proc/annotated.mp4", "cannot write a file in /proc"),
    ],
)
def test_the_clients_output_is_refused_before_anything_is_sent(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "folder.mp4").mkdir()
    video = _short_video(tmp_path / "clip.mp4")
    # a closed port: an output checked only once connected would fail on the server instead
    options = ClientOptions(source=str(video), server=f"127.0.0.1:{free_port()}", out=tmp_path / name)
    with pytest.raises(InputError, match=message):
        run_client(options, out=io.StringIO(), err=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "folder.mp4"]


def test_a_new_stream_draws_nothing_of_the_last_ones_people(tmp_path: Path, monkeypatch) -> None:
    """The server numbers a new stream's people afresh: person 2's label from before a reconnect
    is not drawn on whoever is person 2 after it."""
    drawn: list[dict] = []
    monkeypatch.setattr(draw, "draw_people", lambda bgr, people, labels: drawn.append(dict(labels)))
    annotator = Annotator(tmp_path / "annotated.mp4", 30.0)
    annotator.set_label(2, "squat 0.90")
    annotator.add_frame(0, np.zeros((48, 64, 3), np.uint8))
    annotator.new_stream()
    annotator.add_frame(33, np.zeros((48, 64, 3), np.uint8))
    annotator.close()
    assert drawn == [{2: "squat 0.90"}, {}] and annotator.written == 2


class _AnswersAtTheEnd(pb_grpc.ActionRecognitionServicer):
    """A server that reads a whole stream before answering (frozen, then back): the poses of
    every frame come after the last frame was sent. ``before_answering`` runs in between."""

    def __init__(self, before_answering=lambda: None) -> None:
        self.before_answering = before_answering

    def GetModelInfo(self, request, context):
        return pb.ModelInfo(name="sports2d")

    def StreamFrames(self, request_iterator, context):
        stamps = [r.frame.timestamp_ms for r in request_iterator if r.HasField("frame")]
        self.before_answering()
        person = pb.TrackedPose(track_id=1, image_xy=[10.0, 10.0] * 33, visibility=[1.0] * 33)
        for stamp in stamps:
            yield pb.StreamResponse(poses=pb.FramePoses(timestamp_ms=stamp, people=[person]))


class _StopsReading(pb_grpc.ActionRecognitionServicer):
    """Takes ``reads`` frames of a stream, then ends it with its final statistics (as a drain
    does), leaving the frames still on their way unread; its model takes at most 2 people."""

    def __init__(self, reads: int) -> None:
        self.reads = reads

    def GetModelInfo(self, request, context):
        return pb.ModelInfo(name="sports2d", max_people=2)

    def StreamFrames(self, request_iterator, context):
        taken = sum(1 for _, r in zip(range(self.reads + 1), request_iterator) if r.HasField("frame"))
        time.sleep(0.5)  # the client sends the rest meanwhile
        yield pb.StreamResponse(stats=pb.StreamStats(final=True, frames_received=taken, frames_processed=taken))


def test_frames_sent_after_the_server_stopped_reading_are_told(tmp_path: Path) -> None:
    video = _short_video(tmp_path / "clip.mp4", frames=10)
    err = io.StringIO()
    with _fake_server(_StopsReading(reads=3)) as port:
        options = ClientOptions(source=str(video), server=f"127.0.0.1:{port}", fast=True)
        assert run_client(options, out=io.StringIO(), err=err) == 0
    assert "7 frames sent after the server stopped taking this stream's frames: not posed" in err.getvalue()


class _InterruptsItsClient(pb_grpc.ActionRecognitionServicer):
    """Sends the client (this process) SIGINT once it has a few frames, as a user's Ctrl-C, then
    answers when the client closes its side: one event and the final statistics."""

    def GetModelInfo(self, request, context):
        return pb.ModelInfo(name="sports2d")

    def StreamFrames(self, request_iterator, context):
        received = 0
        for request in request_iterator:
            received += request.HasField("frame")
            if received == 3:
                os.kill(os.getpid(), signal.SIGINT)
        yield pb.StreamResponse(event=pb.ActionEvent(track_id=1, labels=[pb.LabelScore(label="squat", score=0.9)]))
        stats = pb.StreamStats(final=True, frames_received=received, frames_processed=received, windows_classified=1)
        yield pb.StreamResponse(stats=stats)


def test_ctrl_c_closes_the_stream_and_still_tells_its_events_and_final_statistics() -> None:
    """Ctrl-C (or SIGTERM) on a camera: the client stops sending and closes its side of the stream,
    as at a source's end, so that what the server still has to say comes; then it ends interrupted."""
    state: dict = {}
    out, err = io.StringIO(), io.StringIO()
    # Ctrl-C's own handler, whatever the test run was started with (a background job ignores
    # SIGINT); a camera of 50 frames (10 s), so that a lost signal fails the test, not hangs it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _fake_server(_InterruptsItsClient()) as port:
            options = ClientOptions(source="0", server=f"127.0.0.1:{port}")
            run = client.ClientRun(options, client.Source(_camera(state, frames=50), 5.0, live=True), out, err)
            with pytest.raises(KeyboardInterrupt):
                run.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "interrupted: closing the stream" in err.getvalue()
    assert "person 1: squat 0.90" in out.getvalue()
    received = int(re.search(r"frames: (\d+) received", err.getvalue())[1])
    assert received >= 3 and received == run.frames_sent and state["closed"]


def test_a_camera_that_gives_no_more_frames_is_a_failure_not_a_finished_run(tmp_path: Path) -> None:
    """systemd's Restart=on-failure (or any supervisor) must see a camera that went dead."""

    def three_frames() -> Iterator[tuple[np.ndarray, int]]:
        for index in range(3):
            yield np.zeros((48, 64, 3), np.uint8), index * 33

    err = io.StringIO()
    with _fake_server(_StopsReading(reads=10)) as port:
        options = ClientOptions(source="0", server=f"127.0.0.1:{port}")
        run = client.ClientRun(options, client.Source(three_frames(), 30.0, live=True), io.StringIO(), err)
        assert run.run() == client.SOURCE_ENDED_STATUS != 0
    assert "0: the camera or stream gave no more frames" in err.getvalue()


def test_a_file_url_is_sent_as_a_file_and_fast_is_refused_for_a_camera(tmp_path: Path, monkeypatch) -> None:
    video = _short_video(tmp_path / "my clip.mp4", frames=5)
    url = f"file://{str(video).replace(' ', '%20')}"
    source = client.open_source(url)
    assert not source.live and source.declared_frames == 5
    source.frames.close()
    assert client.default_stream_id(url) == "my clip.mp4"
    with pytest.raises(InputError, match="a file on another host"):
        client.open_source("file://server/share/clip.mp4")
    monkeypatch.setattr(client, "open_source", lambda name: client.Source((f for f in ()), 30.0, live=True))
    with pytest.raises(InputError, match="--fast is for files"):
        run_client(ClientOptions(source="rtsp://cam/1", server="127.0.0.1:1", fast=True))


def test_people_over_the_servers_limit_are_refused_before_the_stream(tmp_path: Path) -> None:
    video = _short_video(tmp_path / "clip.mp4")
    with _fake_server(_StopsReading(reads=3)) as port:
        options = ClientOptions(source=str(video), server=f"127.0.0.1:{port}", max_people=3)
        with pytest.raises(InputError, match="--max-people 3 is over the server's limit of 2"):
            run_client(options, out=io.StringIO(), err=io.StringIO())


def test_a_source_that_fails_mid_stream_is_reported_in_its_own_words(caplog) -> None:
    """A source that fails in gRPC's sending thread (a file gone, a frame that cannot be encoded)
    ends the client with its own message, not the server's UNKNOWN "Exception iterating requests!"."""

    def failing() -> Iterator[tuple[np.ndarray, int]]:
        yield np.zeros((48, 64, 3), np.uint8), 0
        raise InputError("camera.mp4: the file is gone")

    err = io.StringIO()
    with _fake_server(_AnswersAtTheEnd()) as port:
        options = ClientOptions(source="camera.mp4", server=f"127.0.0.1:{port}", fast=True)
        run = client.ClientRun(options, client.Source(failing(), 30.0, live=False), io.StringIO(), err)
        with pytest.raises(InputError, match="the file is gone"):
            run.run()
    assert "Exception iterating requests" not in caplog.text + err.getvalue()


def test_frames_waiting_for_a_silent_servers_poses_are_bounded_in_bytes(tmp_path: Path, monkeypatch) -> None:
    """--out keeps each frame until its poses come; a server that says nothing for a while must
    not make the client hold every frame read (1080p frames are 6 MB each). Past the bound the
    oldest are written with the poses known so far, and none is lost from the video. A file's
    sender waits for the poses once (1 s here), not again for every frame while none come."""
    frame_bytes = 48 * 64 * 3
    monkeypatch.setattr(draw, "MAX_BUFFERED_BYTES", 3 * frame_bytes)  # waiting for their poses
    monkeypatch.setattr(draw, "MAX_UNWRITTEN_BYTES", frame_bytes)  # and waiting for the video writer
    monkeypatch.setattr(client, "ANNOTATOR_PATIENCE_S", 1.0)
    draw_people = draw.draw_people
    monkeypatch.setattr(draw, "draw_people", lambda *args: time.sleep(0.02) or draw_people(*args))  # a slow writer
    annotators: list[Annotator] = []
    init = Annotator.__init__
    monkeypatch.setattr(Annotator, "__init__", lambda self, *a, **kw: annotators.append(self) or init(self, *a, **kw))
    held_when_all_were_sent: list[tuple[int, int]] = []
    server = _AnswersAtTheEnd(lambda: held_when_all_were_sent.append((annotators[0].buffered, annotators[0].written)))
    with _fake_server(server) as port:
        options = ClientOptions(
            source=str(_short_video(tmp_path / "clip.mp4", frames=12)),
            server=f"127.0.0.1:{port}",
            out=tmp_path / "out.mp4",
            fast=True,
        )
        started = time.monotonic()
        assert run_client(options, out=io.StringIO(), err=io.StringIO()) == 0
    assert time.monotonic() - started < 5  # 9 frames past the bound: 9 s if each waited
    # all 12 frames were sent and not one answered: at most 3 + 1 frames held, the rest written
    ((frames, held), written) = held_when_all_were_sent[0]
    assert held <= 4 * frame_bytes and frames <= 4 and written >= 8
    written = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert written.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    written.release()


class _PosesAtTheTimestamp(pb_grpc.ActionRecognitionServicer):
    """Answers each frame at once with one person whose landmarks all lie at x = its timestamp."""

    def GetModelInfo(self, request, context):
        return pb.ModelInfo(name="sports2d")

    def StreamFrames(self, request_iterator, context):
        for request in request_iterator:
            if request.HasField("frame"):
                stamp = request.frame.timestamp_ms
                person = pb.TrackedPose(track_id=1, image_xy=[float(stamp), 0.0] * 33, visibility=[1.0] * 33)
                yield pb.StreamResponse(poses=pb.FramePoses(timestamp_ms=stamp, people=[person]))


def test_a_files_frames_past_the_bound_wait_for_their_own_poses(tmp_path: Path, monkeypatch) -> None:
    """A file sent as fast as the server takes it runs ahead of the poses coming back; past the
    bound its sender waits for them (a file loses nothing by waiting), so every frame of the video
    is drawn with its own pose, not an older one."""
    monkeypatch.setattr(draw, "MAX_BUFFERED_BYTES", 1)  # one frame held at a time
    drawn: list[float] = []
    monkeypatch.setattr(draw, "draw_people", lambda bgr, people, labels: drawn.append(people[0][1][0, 0]))
    with _fake_server(_PosesAtTheTimestamp()) as port:
        options = ClientOptions(
            source=str(_short_video(tmp_path / "clip.mp4", frames=12)),
            server=f"127.0.0.1:{port}",
            out=tmp_path / "out.mp4",
            fast=True,
        )
        assert run_client(options, out=io.StringIO(), err=io.StringIO()) == 0
    assert drawn == [round(i * 1000 / 30) for i in range(12)]


def test_a_video_that_cannot_be_written_mid_stream_ends_the_client_with_that_error(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The video is written as frames are sent; a writer that will not open then is the client's
    error, in its own words, raised once: not a cancelled call, nor an error in gRPC's thread."""

    class Unopened:
        def __init__(self, *args) -> None:
            pass

        def isOpened(self) -> bool:
            return False

    video = _short_video(tmp_path / "clip.mp4")
    monkeypatch.setattr(cv2, "VideoWriter", Unopened)
    monkeypatch.setattr(draw, "MAX_BUFFERED_BYTES", 1)  # the first frame to wait for its poses is written
    with _fake_server(_AnswersAtTheEnd()) as port:
        options = ClientOptions(source=str(video), server=f"127.0.0.1:{port}", out=tmp_path / "out.mp4", fast=True)
        with pytest.raises(InputError, match="cannot write a video there") as raised:
            run_client(options, out=io.StringIO(), err=io.StringIO())
    assert raised.value.__context__ is None
    assert "Exception iterating requests" not in caplog.text


def test_sigterm_ends_a_client_as_ctrl_c_does() -> None:
    """systemd and `docker stop` send SIGTERM: the client then closes its stream and finishes
    --out's video as on Ctrl-C, instead of dying with the video unreadable."""
    with pytest.raises(KeyboardInterrupt):
        with client.sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_annotated_video_that_cannot_be_opened_is_an_error_not_a_success(tmp_path: Path) -> None:
    annotator = Annotator(tmp_path / "annotated.mp4", 30.0)
    (tmp_path / "annotated.mp4").mkdir()  # taken between the check and the first frame
    annotator.add_frame(0, np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(InputError, match="cannot write a video there"):
        annotator.close()
    assert annotator.written == 0


def test_a_source_that_changes_resolution_keeps_every_frame_in_the_annotated_video(tmp_path: Path) -> None:
    """A camera that switches resolution mid-stream: the video keeps its first size, and the
    frames of the other size are scaled to it, not dropped by the writer without a word."""
    path = tmp_path / "annotated.mp4"
    annotator = Annotator(path, 15.0)
    for i, shape in enumerate([(48, 64, 3)] * 3 + [(96, 160, 3)] * 3):
        annotator.add_frame(i * 67, np.full(shape, 40 * i, np.uint8))
    annotator.close()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    assert annotator.written == 6 and [f.shape for f in frames] == [(48, 64, 3)] * 6
    assert abs(int(frames[-1].mean()) - 200) < 10  # the last frame, not a copy of the first


def _shown_frames(path: Path, brightness_step: int) -> list[int]:
    """Which source frame each frame of a written video is, by its brightness (frame i: i * step)."""
    capture = cv2.VideoCapture(str(path))
    shown = []
    while (frame := capture.read()[1]) is not None:
        shown.append(round(int(frame.mean()) / brightness_step))
    capture.release()
    return shown


def test_the_annotated_video_of_a_live_source_plays_in_real_time(tmp_path: Path, monkeypatch) -> None:
    """A camera's frames are placed by their timestamps at the video's rate, within a frame either
    way: a stall shows the last frame until a frame short of the next (up to MAX_HOLD_S, then cut),
    a burst faster than the rate loses the frames over a frame ahead of their time."""
    monkeypatch.setattr(draw, "MAX_HOLD_S", 2.0)
    path = tmp_path / "annotated.mp4"
    annotator = Annotator(path, 10.0, live=True)
    # 10 fps for 3 frames, a 1 s stall, a burst at 100 fps, then 5 s with no frame at all
    timestamps = [0, 100, 200, 1200, 1210, 1220, 1230, 1240, 1300, 6300]
    for i, timestamp in enumerate(timestamps):
        annotator.add_frame(timestamp, np.full((48, 64, 3), 25 * i, np.uint8))
    annotator.close()
    # Their moments: 0, 1, 2, 12 x 5, 13, 63. Frame 3 goes to 11 after 8 repeats of frame 2; 4 and 5
    # take 12 and 13 (within a frame of 12); 6 and 7 would be 2 ahead; 8 takes 14 (a frame late);
    # 9 is 48 on: 20 repeats (2 s), 2.7 s cut.
    assert _shown_frames(path, 25) == [0, 1, 2] + [2] * 8 + [3, 4, 5, 8] + [8] * 20 + [9]
    assert (annotator.written, annotator.repeated, annotator.left_out) == (36, 28, 2)
    assert annotator.cut_s == pytest.approx(2.7)


def test_a_camera_near_its_declared_rate_is_written_without_judder(tmp_path: Path) -> None:
    """A camera at 29.97 fps declaring 30, its timestamps wobbling by up to 4 ms: over two minutes,
    a handful of frames repeated to keep real time and none left out (placing each frame at its
    rounded moment repeated one frame and dropped the next hundreds of times)."""
    rng = np.random.default_rng(0)
    annotator = Annotator(tmp_path / "annotated.mp4", 30.0, live=True)
    frame = np.zeros((16, 16, 3), np.uint8)
    for i in range(3600):
        annotator.add_frame(round(i * 1000 / 29.97 + rng.uniform(-4, 4)), frame)
    annotator.close()
    assert annotator.left_out == 0 and annotator.repeated <= 6


def test_a_cameras_sender_never_waits_for_a_slow_video_writer(tmp_path: Path, monkeypatch) -> None:
    """A writer behind by more than its bound (a 4K camera on a slow machine, the repeats after a
    stall): a file's sender would wait for it, a camera's does not; the frames it cannot take are
    not drawn, counted, and their moments show the frame before them."""
    monkeypatch.setattr(draw, "MAX_UNWRITTEN_BYTES", 1)
    monkeypatch.setattr(draw, "draw_people", lambda bgr, people, labels: time.sleep(0.05))
    annotator = Annotator(tmp_path / "annotated.mp4", 10.0, live=True)
    began = time.monotonic()
    for i in range(20):
        annotator.add_frame(i * 100, np.zeros((48, 64, 3), np.uint8))
        annotator.add_poses(i * 100, [])  # each frame released as its poses come
    assert time.monotonic() - began < 0.5  # 20 frames drawn at 50 ms each would take 1 s
    annotator.close()
    drawn = annotator.written - annotator.repeated
    assert annotator.writer_behind > 0 and drawn + annotator.writer_behind + annotator.left_out == 20
    assert annotator.written == 20  # real time kept: the frames not drawn are filled by the ones before


def test_labels_are_drawn_whole_inside_the_frame_and_scale_with_it() -> None:
    """A person at the frame's edge gets their label inside it, whole; a 4K frame gets larger
    text than a small one."""
    text, font = "#3 clean_and_jerk 0.97", cv2.FONT_HERSHEY_SIMPLEX
    small, large = (360, 640, 3), (2160, 3840, 3)
    assert Style.for_frame(large).font_scale > 2 * Style.for_frame(small).font_scale
    for shape in (small, large):
        style = Style.for_frame(shape)
        (width, height), baseline = cv2.getTextSize(text, font, style.font_scale, style.thickness + 2)
        for anchor in ((0, 0), (shape[1] - 1, 5), (shape[1] // 2, shape[0] // 2), (shape[1] + 50, shape[0] + 50)):
            x, y = label_origin(text, anchor, shape, style)
            assert 0 <= x and x + width <= shape[1] and y - height >= 0 and y + baseline <= shape[0]
    # drawn: the text's ink reaches the right edge's last columns and stays within the frame
    frame = np.zeros(small, np.uint8)
    person = np.tile(np.array([[small[1] - 2.0, 100.0]]), (33, 1))
    draw_people(frame, [(3, person, np.ones(33))], {3: "clean_and_jerk 0.97"})
    style = Style.for_frame(small)
    (width, _), _ = cv2.getTextSize(text, font, style.font_scale, style.thickness + 2)
    inked = np.flatnonzero(frame.any(axis=(0, 2)))
    assert inked.max() >= small[1] - 10 and inked.min() <= small[1] - width  # ends at the edge, starts whole


def test_a_refused_stream_ends_the_client_only_once_the_sender_is_out_of_the_source(monkeypatch) -> None:
    state = {"reading": False, "closed": False}
    monkeypatch.setattr(client, "open_source", lambda source: Source(_camera(state), 30.0, live=True))
    service = _FakeService(refuse_after=1)
    with _fake_server(service) as port:
        with pytest.raises(InputError, match="INVALID_ARGUMENT: max_people 99"):
            run_client(ClientOptions(source="0", server=f"127.0.0.1:{port}"), out=io.StringIO(), err=io.StringIO())
        # gRPC's sender thread was reading the next frame when the refusal came: ending the process
        # while it is inside OpenCV aborts it, so the client waits for it and then closes the source
        assert not state["reading"] and state["closed"]


@pytest.mark.parametrize(
    "frame_width, pose_width, sent",
    [(1920, 640, 640), (1279, 640, 0), (1920, 960, 960), (1920, 320, 640), (1279, 320, 0), (768, 320, 0), (1920, 0, 0)],
)
def test_frames_are_shrunk_for_the_server_but_never_below_640(frame_width: int, pose_width: int, sent: int) -> None:
    """A frame twice the pose width is sent at the pose width, but not narrower than 640 pixels:
    a server posing at 320 gets a 768-wide camera's frames as read (its small people lost
    landmarks when the client shrank them to 320) and a 1080p one's at 640."""
    assert outgoing.width_to_send(frame_width, pose_width) == sent


class _PosesAtCentre(pb_grpc.ActionRecognitionServicer):
    """Poses frames ``pose_width`` wide (as GetModelInfo says) and answers each with one person
    whose every landmark is at the centre of the frame as received; notes each frame's size."""

    def __init__(self, pose_width: int) -> None:
        self.pose_width = pose_width
        self.sizes: set[tuple[int, int]] = set()

    def GetModelInfo(self, request, context):
        return pb.ModelInfo(name="sports2d", pose_width=self.pose_width)

    def StreamFrames(self, request_iterator, context):
        for request in request_iterator:
            if request.HasField("frame"):
                image = cv2.imdecode(np.frombuffer(request.frame.encoded, np.uint8), cv2.IMREAD_COLOR)
                height, width = image.shape[:2]
                self.sizes.add((width, height))
                centre = pb.TrackedPose(track_id=1, image_xy=[width / 2, height / 2] * 33, visibility=[1.0] * 33)
                yield pb.StreamResponse(poses=pb.FramePoses(timestamp_ms=request.frame.timestamp_ms, people=[centre]))


@pytest.mark.parametrize(
    "pose_width, width, sent, drawn",
    [
        (32, None, (32, 24), (64, 48)),
        (40, None, (64, 48), (64, 48)),
        (32, 0, (64, 48), (64, 48)),
        (32, 48, (48, 36), (48, 36)),
    ],
    ids=["twice the pose width: shrunk to it", "a little wider: as read", "--width 0: as read", "--width 48"],
)
def test_frames_much_wider_than_the_server_poses_are_shrunk_and_drawn_as_read(
    tmp_path: Path, monkeypatch, pose_width: int, width: int | None, sent: tuple[int, int], drawn: tuple[int, int]
) -> None:
    """The server says how wide it poses: a frame at least twice as wide is sent at that width,
    and the annotated video keeps the source's size, with the people (in pixels of the frame as
    sent) drawn where they are on it. ``--width`` sizes both; 0 sends the frames as read."""
    monkeypatch.setattr(outgoing, "MIN_SHRUNK_WIDTH", 0)  # small frames, as if large ones
    drawn_at: list[np.ndarray] = []
    add_poses = Annotator.add_poses
    monkeypatch.setattr(
        Annotator, "add_poses", lambda self, t, people: drawn_at.append(people[0][1]) or add_poses(self, t, people)
    )
    service = _PosesAtCentre(pose_width)
    with _fake_server(service) as port:
        options = ClientOptions(
            source=str(_short_video(tmp_path / "clip.mp4")),
            server=f"127.0.0.1:{port}",
            out=tmp_path / "out.mp4",
            width=width,
            fast=True,
            all_frames=True,
        )
        run_client(options, out=io.StringIO(), err=io.StringIO())
    assert service.sizes == {sent}
    written = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == drawn
    written.release()
    assert len(drawn_at) == 10 and all(np.allclose(xy, [drawn[0] / 2, drawn[1] / 2]) for xy in drawn_at)


class _RestartingServer(pb_grpc.ActionRecognitionServicer):
    """A server still loading when first asked (UNAVAILABLE), whose first stream is then ended
    after 3 frames as a draining server ends it; later streams read every frame and end with
    their final statistics. Notes the timestamps each stream received."""

    def __init__(self) -> None:
        self.asked = 0
        self.streams: list[list[int]] = []

    def GetModelInfo(self, request, context):
        self.asked += 1
        if self.asked == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "still loading")
        return pb.ModelInfo(name="sports2d")

    def StreamFrames(self, request_iterator, context):
        received: list[int] = []
        self.streams.append(received)
        for request in request_iterator:
            if request.HasField("frame"):
                received.append(request.frame.timestamp_ms)
                if len(self.streams) == 1 and len(received) == 3:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        yield pb.StreamResponse(stats=pb.StreamStats(frames_received=len(received), final=True))


def test_reconnect_keeps_a_camera_open_and_opens_a_new_stream_while_the_server_restarts(monkeypatch) -> None:
    state = {"reading": False, "closed": False}
    monkeypatch.setattr(client, "open_source", lambda source: Source(_camera(state), 30.0, live=True))
    monkeypatch.setattr(client, "RECONNECT_FIRST_S", 0.1)
    monkeypatch.setattr(client, "RECONNECT_JITTER", 0.0)
    monkeypatch.setattr(client, "RECONNECT_STEADY_S", 0.0)  # every stream that opened counts as one that ran
    service = _RestartingServer()
    err = io.StringIO()
    with _fake_server(service) as port:
        options = ClientOptions(source="0", server=f"127.0.0.1:{port}", reconnect=True, max_frames=9, all_frames=True)
        assert run_client(options, out=io.StringIO(), err=err) == 0
    first, second = service.streams
    assert len(first) == 3 and len(second) >= 3 and second[0] > first[-1]  # the camera went on, not over again
    # every frame read reached a stream but those gRPC had taken when the first was cut off
    assert len(first) + len(second) >= 8 and second[-1] == 8 * 33
    tries = [line for line in err.getvalue().splitlines() if "a new stream" in line]
    assert tries == [
        f"127.0.0.1:{port}: UNAVAILABLE: still loading; a new stream in 0.1 s",
        f"127.0.0.1:{port}: opening a new stream (person numbers start over)",
        # the stream ran, so the wait starts over rather than doubling
        f"127.0.0.1:{port}: UNAVAILABLE: the server is shutting down; a new stream in 0.1 s",
        f"127.0.0.1:{port}: opening a new stream (person numbers start over)",
    ]
    assert state["closed"]


class _FullForAWhile(pb_grpc.ActionRecognitionServicer):
    """A server whose stream slots are taken for its first three streams, then free; its model
    query hangs once, as a frozen server's does."""

    def __init__(self) -> None:
        self.asked = self.streams = 0

    def GetModelInfo(self, request, context):
        self.asked += 1
        if self.asked == 2:
            time.sleep(1.0)
        return pb.ModelInfo(name="sports2d")

    def StreamFrames(self, request_iterator, context):
        self.streams += 1
        if self.streams <= 3:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "8 streams open, the most this server takes")
        frames = sum(1 for request in request_iterator if request.HasField("frame"))
        yield pb.StreamResponse(stats=pb.StreamStats(frames_received=frames, final=True))


def test_reconnect_waits_longer_while_the_server_refuses_or_does_not_answer(monkeypatch) -> None:
    """Refused streams do not reset the waits (the camera is read as soon as a call opens, so
    frames taken are no sign that the server took the stream), and a model query that times out
    is tried again."""
    state = {"reading": False, "closed": False}
    monkeypatch.setattr(client, "open_source", lambda source: Source(_camera(state), 30.0, live=True))
    monkeypatch.setattr(client, "RECONNECT_FIRST_S", 0.1)
    monkeypatch.setattr(client, "RECONNECT_JITTER", 0.0)
    monkeypatch.setattr(client, "CALL_TIMEOUT_S", 0.5)
    err = io.StringIO()
    with _fake_server(_FullForAWhile()) as port:
        options = ClientOptions(source="0", server=f"127.0.0.1:{port}", reconnect=True, max_frames=3)
        assert run_client(options, out=io.StringIO(), err=err) == 0
    lines = err.getvalue().splitlines()
    tries = [line.split(": ", 1)[1] for line in lines if "a new stream in" in line]
    assert tries == [
        "RESOURCE_EXHAUSTED: 8 streams open, the most this server takes; a new stream in 0.1 s",
        "DEADLINE_EXCEEDED: Deadline Exceeded; a new stream in 0.2 s",
        "RESOURCE_EXHAUSTED: 8 streams open, the most this server takes; a new stream in 0.4 s",
        "RESOURCE_EXHAUSTED: 8 streams open, the most this server takes; a new stream in 0.8 s",
    ]
    assert state["closed"]


def test_reconnect_says_why_it_gives_up_on_a_camera_read_that_hangs(monkeypatch) -> None:
    """A camera whose read hangs as the server goes away: a new stream would wait on the same
    read, so the client ends, and says that the camera is why it did not reconnect."""
    hanging, release = threading.Event(), threading.Event()

    def hanging_camera() -> Iterator[tuple[np.ndarray, int]]:
        yield np.zeros((48, 64, 3), np.uint8), 0
        hanging.set()
        release.wait(30)
        yield np.zeros((48, 64, 3), np.uint8), 33

    monkeypatch.setattr(client, "open_source", lambda source: Source(hanging_camera(), 30.0, live=True))
    monkeypatch.setattr(client, "SENDER_STOP_S", 0.2)
    try:
        shutting_down = (grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        going_away = _FakeService(refuse_after=1, refusal=shutting_down, refuse_when=hanging)  # once the read hangs
        with _fake_server(going_away) as port:
            options = ClientOptions(source="0", server=f"127.0.0.1:{port}", reconnect=True, all_frames=True)
            with pytest.raises(InputError, match="shutting down; not reconnecting: reading 0 has not"):
                run_client(options, out=io.StringIO(), err=io.StringIO())
    finally:
        release.set()


def test_reconnect_does_not_retry_a_refusal_or_take_a_file(tmp_path: Path, monkeypatch) -> None:
    state = {"reading": False, "closed": False}
    monkeypatch.setattr(client, "open_source", lambda source: Source(_camera(state), 30.0, live=True))
    with _fake_server(_FakeService(refuse_after=1)) as port:
        options = ClientOptions(source="0", server=f"127.0.0.1:{port}", reconnect=True)
        with pytest.raises(InputError, match="INVALID_ARGUMENT: max_people 99"):  # it would be refused again
            run_client(options, out=io.StringIO(), err=io.StringIO())
    monkeypatch.undo()
    video = _short_video(tmp_path / "clip.mp4")
    with pytest.raises(InputError, match="--reconnect is for cameras and network streams"):
        run_client(ClientOptions(source=str(video), server="127.0.0.1:1", reconnect=True))


def test_a_video_file_cut_short_is_told_apart_from_a_whole_one(tmp_path: Path) -> None:
    """A real video and a copy of it cut in half (its index lost: a download that stopped):
    the whole file has no warning, the copy reads about half its declared frames and says so."""
    original = VIDEOS / "eye_makeup_closeup.avi"
    cut = tmp_path / "cut.avi"
    cut.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
    whole, short = open_source(str(original)), open_source(str(cut))
    assert whole.declared_frames == short.declared_frames > 100
    read_whole, read_short = sum(1 for _ in whole.frames), sum(1 for _ in short.frames)
    assert read_whole == whole.declared_frames and whole.cut_short(read_whole) == ""
    assert 0 < read_short < short.declared_frames * 0.6
    assert short.cut_short(read_short) == (
        f"the video ended after {read_short} of the {short.declared_frames} frames its file declares (cut short?)"
    )
    assert Source(iter([]), 30.0, live=True).cut_short(0) == ""  # a camera declares nothing
    for path, message in [(tmp_path, "is a folder, not a video file"), (Path("/dev/null"), "not a regular file")]:
        with pytest.raises(InputError, match=message):
            open_source(str(path))


def test_a_url_source_is_read_live_and_one_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    """The camera and network branch of ``open_source`` with OpenCV itself: a video over HTTP
    stands for a network stream (read as live, stamped by the clock as it is read), and a camera
    index or an RTSP address with nothing behind it is refused by name."""
    import functools
    import http.server

    video = _short_video(tmp_path / "clip.avi", frames=12)  # read front to back: no seeking over HTTP
    declared = probe_video(video)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        source = open_source(f"http://127.0.0.1:{web.server_port}/{video.name}")
        assert source.live and source.fps == pytest.approx(declared.fps)
        timestamps = [timestamp for _, timestamp in source.frames]
    finally:
        web.shutdown()
    assert len(timestamps) == declared.frame_count
    assert all(later > earlier for earlier, later in zip(timestamps, timestamps[1:]))
    for unreachable in ("99", "rtsp://127.0.0.1:1/nothing"):
        with pytest.raises(InputError, match=f"{unreachable}: cannot open the camera or stream"):
            open_source(unreachable)


def test_a_missing_or_wrong_ca_file_or_a_folder_as_source_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "ca.txt").write_text("not a certificate\n")
    for ca, message in [("missing.pem", "no such file"), (".", "is a folder"), ("ca.txt", "not a PEM certificate")]:
        with pytest.raises(InputError, match=message):
            make_channel("localhost:50051", tls_ca=tmp_path / ca)
        with pytest.raises(InputError, match=message):
            health_status("localhost:50051", tls_ca=tmp_path / ca)
    with pytest.raises(InputError, match="is a folder, not a video file"):
        open_source(str(tmp_path))


def test_a_peer_that_never_answers_ends_the_client_within_the_call_timeout(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(client, "CALL_TIMEOUT_S", 1.0)
    video = _short_video(tmp_path / "clip.mp4")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]  # accepted by the kernel, never a word of gRPC
        started = time.monotonic()
        with pytest.raises(InputError, match="no answer within 1 s"):
            run_client(ClientOptions(source=str(video), server=f"127.0.0.1:{port}"), out=io.StringIO())
    assert time.monotonic() - started < 5  # gRPC alone gives up on the connection after 20 s


def test_a_server_that_freezes_mid_stream_ends_the_client_by_keepalive(monkeypatch) -> None:
    monkeypatch.setattr(channels, "KEEPALIVE_TIME_MS", 1000)
    monkeypatch.setattr(channels, "KEEPALIVE_TIMEOUT_MS", 1000)
    state = {"reading": False, "closed": False}
    monkeypatch.setattr(client, "open_source", lambda source: Source(_camera(state), 30.0, live=True))
    service = _FakeService(refuse_after=None)
    with _fake_server(service) as port, socket.socket() as listener:
        # a relay to the server that, once the stream runs, stops passing anything on either way:
        # the TCP connection stays up, as with a server stopped by SIGSTOP or a link gone dead
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        held: list[socket.socket] = []

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    if service.streaming.is_set():
                        return
                    dst.sendall(data)

        def relay() -> None:
            with contextlib.suppress(OSError):
                near, _ = listener.accept()
                far = socket.create_connection(("127.0.0.1", port))
                held.extend((near, far))
                for src, dst in ((near, far), (far, near)):
                    threading.Thread(target=pump, args=(src, dst), daemon=True).start()

        threading.Thread(target=relay, daemon=True).start()
        outcome: list = []

        def stream() -> None:
            try:
                target = f"127.0.0.1:{listener.getsockname()[1]}"
                run_client(
                    ClientOptions(source="0", server=target, all_frames=True), out=io.StringIO(), err=io.StringIO()
                )
            except InputError as e:
                outcome.append(e)

        sender = threading.Thread(target=stream)
        sender.start()
        try:
            assert service.streaming.wait(10)
            frozen = time.monotonic()
            sender.join(10)
            assert outcome and "UNAVAILABLE" in str(outcome[0]), outcome
            assert time.monotonic() - frozen < 6  # a ping unanswered for a second, at most a second after the last
        finally:
            for s in held:
                s.close()
            sender.join(30)


def test_the_skeleton_parser_keeps_a_lone_sensor_skeleton_on_its_track_but_not_an_estimators() -> None:
    """Caller-sent skeletons without track ids: a lone skeleton in a depth sensor's layout (2-D or
    3-D) that jumps right after a frame of one stays one person; after a frame of nobody it is
    tracked by distance again. A pose estimator's layout (which may find one of two people a
    frame), 3-D world landmarks included, is always tracked by distance."""
    from service.skeletons import SkeletonParser, resolve_format

    def frame(timestamp_ms: int, *people: np.ndarray) -> pb.SkeletonFrame:
        return pb.SkeletonFrame(
            timestamp_ms=timestamp_ms, people=[pb.Skeleton(coords=p.ravel().tolist()) for p in people]
        )

    sensor, estimator = [[0], [0], [], [1]], [[0], [1], [], [0]]
    for layout, dims, ids in (("kinect20", 3, sensor), ("kinect20", 2, sensor), ("mediapipe33", 3, estimator)):
        spec = WindowSpec(layout="kinect20", dims=dims, length=8, fps=15.0, normalization="centre-torso")
        parser = SkeletonParser(resolve_format(pb.SkeletonFormat(layout=layout), spec), spec, max_people=4)
        joints = parser.format.num_joints
        person = np.random.default_rng(0).uniform(0.0, 1.0, (joints, dims)) * [0.5, 1.7, 0.3][:dims]
        jumped = person + [1.5, 0.0, 0.0][:dims]
        frames = [frame(0, person), frame(67, jumped), frame(133), frame(200, person)]
        assert [sorted(parser.parse(f, i)) for i, f in enumerate(frames)] == ids, (layout, dims)
