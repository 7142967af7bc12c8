"""Reading frames from video files and still images (OpenCV), with their timestamps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from skeleton.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    frame_count: int


def shrunk_size(size: tuple[int, int], width: int) -> tuple[int, int]:
    """(width, height) of an image of ``size`` (width, height) shrunk to at most ``width`` pixels
    wide, aspect kept; ``size`` itself when it is no wider, or when ``width`` is 0."""
    if width <= 0 or size[0] <= width:
        return size
    return width, max(1, round(size[1] * width / size[0]))  # a very wide strip keeps one row


def resize_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` shrunk to ``size`` (width, height)."""
    # Area averaging never aliases but is slow at a ratio that is not whole (2.2 ms for 768 -> 640
    # pixels here); shrinking by less than half, bilinear already reads every pixel, at a third.
    # Pose extraction (skeleton.pose.extract) and the service both shrink frames here.
    interpolation = cv2.INTER_AREA if image.shape[1] >= 2 * size[0] else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def resize_to_width(rgb: np.ndarray, width: int) -> np.ndarray:
    """Shrink to ``width`` pixels (aspect kept); pose runs faster and landmarks are normalised."""
    own = (rgb.shape[1], rgb.shape[0])
    size = shrunk_size(own, width)
    return rgb if size == own else resize_to(rgb, size)


def cut_short(read: int, declared: int) -> str:
    """A warning when a file gave well under the frames its container declares (a copy cut short,
    a damaged file), else "". Containers' counts may be estimates, so a few frames are slack."""
    if read >= declared - max(2, declared // 100):
        return ""
    return f"the video ended after {read} of the {declared} frames its file declares (cut short?)"


def probe_video(path: Path) -> VideoInfo:
    """Size, frame rate and frame count, or an InputError saying why the file is unusable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():  # a device, a pipe: OpenCV would wait on it or read nothing sensible
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(path))
        if image is None:
            raise InputError(f"{path}: not a readable image")
        return VideoInfo(path, image.shape[1], image.shape[0], 1.0, 1)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: not a readable video")
        # FFmpeg plays any text file as a video of its characters drawn as in a terminal ("ansi").
        codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        if codec == b"ansi":
            raise InputError(f"{path}: a text file, not a video")
        ok, _ = capture.read()
        if not ok:
            raise InputError(f"{path}: video has no decodable frame")
        fps = capture.get(cv2.CAP_PROP_FPS)
        return VideoInfo(
            path,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps if 0 < fps < 1000 else 30.0,
            max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 1),
        )
    finally:
        capture.release()


def quiet_ffmpeg_log() -> None:
    """Silence FFmpeg's own log lines ("moov atom not found") for the rest of the process, unless
    ``OPENCV_FFMPEG_LOGLEVEL`` says otherwise: for commands whose one-line errors say what is wrong
    with a file, and would otherwise come after FFmpeg's. Effective until the first video opens."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET


def read_frames(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    """RGB frames of a video (or one still image) with timestamps in ms from the start.

    Timestamps come from the frame index and the container's frame rate: container
    positions are unreliable across codecs, and the index never repeats.
    """
    info = probe_video(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), 0
        return
    capture = cv2.VideoCapture(str(path))
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), round(index * 1000.0 / info.fps)
            index += 1
    finally:
        capture.release()
