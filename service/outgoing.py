"""Frames as the command-line clients send them: as JPEG, shrunk when the server would shrink them a lot.

A frame at least twice as wide as the server poses is shrunk here instead of there: a 1080p
camera then sends a third of the bytes, and the server decodes a small JPEG rather than
shrinking a large one. Shrunk frames are encoded at a higher quality, because their one lossy
step is then taken at the size pose sees: at 90, landmarks moved further from those of the
uncompressed frame than with the full frame sent at 90 and shrunk by the server; at 95 about as
far. A frame only a little wider is sent as read: shrinking it saves few bytes at 95, and small
people's landmarks kept closer without it (``python -m benchmarks.sent_width``; docs/service.md,
"Frames sent at the pose width").
"""

from __future__ import annotations

import cv2
import numpy as np

from skeleton.errors import InputError
from skeleton.pose.video import resize_to_width

QUALITY_AS_READ = 90
QUALITY_SHRUNK = 95


# Frames are not shrunk below this width here, whatever the pose width: JPEG's artefacts on a
# small frame cost small people their landmarks. For a server posing at 320 pixels,
# pedestrians_vtest.avi (768 wide, people 60-100 pixels tall) shrunk to 320 at 95 gave pose 317
# of the 494 people found on its uncompressed frames, sent as read 426; a 1080p frame shrunk to
# 640 at 95 poses as its full frame does at 320 too (docs/service.md).
MIN_SHRUNK_WIDTH = 640


def check_people(requested: int, limit: int) -> None:
    """Refuse, before anything is sent, people per frame over the server's limit (``ModelInfo.max_people``;
    0 from a server that does not say it, which then refuses it itself)."""
    if limit and requested > limit:
        raise InputError(f"--max-people {requested} is over the server's limit of {limit}")


def width_to_send(frame_width: int, pose_width: int, asked: int | None = None) -> int:
    """How wide to send a frame to a server posing at ``pose_width`` (0: as read): ``asked`` if
    given (``--width``), else the pose width, or ``MIN_SHRUNK_WIDTH`` if more, for a frame at
    least twice as wide (``pose_width`` 0: the server poses frames as they come)."""
    if asked is not None:
        return asked
    if pose_width <= 0:
        return 0
    width = max(pose_width, MIN_SHRUNK_WIDTH)
    return width if 2 * width <= frame_width else 0


def encode_to_send(image: np.ndarray, width: int, what: str, rgb: bool = False) -> tuple[bytes, tuple[int, int]]:
    """``image`` (BGR; RGB with ``rgb``) as the JPEG bytes to send, shrunk to ``width`` pixels (0:
    as it is), and the size sent (width, height); ``what`` names the frame in the error when it
    cannot be encoded. Colours are converted after shrinking, on the fewest pixels."""
    small = resize_to_width(image, width)
    quality = QUALITY_AS_READ if small is image else QUALITY_SHRUNK
    if rgb:
        small = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError(f"{what} could not be encoded")
    return jpeg.tobytes(), (small.shape[1], small.shape[0])
