"""Frames as they come off the wire: cheap checks on arrival, decoding only when posed.

Every frame is checked when it arrives (image bytes present and not too big, a JPEG or PNG
whose header gives a sane size and whose end is there, raw pixels of the declared size), so a
bad frame is refused even when the frame-rate gate would skip it. Only admitted frames are
decoded, in a pose worker, and a frame that still fails to decode is refused then.

Pose runs on frames shrunk to a set width, and the decoder shrinks them: a JPEG at least twice
that wide is decoded at 1/2, 1/4 or 1/8 of its size, never narrower than the pose width (libjpeg
scales in the DCT and skips most of the work of a full decode), and the colours are converted
last, on the fewest pixels (``python -m benchmarks.frame_decode`` measures it on the real clips).

A picture stored on its side (a phone's portrait photo: EXIF orientation 2-8, in a JPEG's APP1
or a PNG's eXIf chunk) is posed as it is shown. The orientation is read here, once, and both the
size checked on arrival and the turn after decoding come from it: OpenCV is told to ignore its
own reading, so that the two can never disagree.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass

import cv2
import numpy as np

from skeleton.errors import InputError
from skeleton.pose.estimator import MAX_IMAGE_SIDE
from skeleton.pose.video import resize_to, shrunk_size

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TRAILER_SLACK = 64  # bytes some encoders leave after the end marker
_EXIF = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
# MediaPipe keeps time in int64 microseconds, the windower in float64 milliseconds, and events
# report int64 milliseconds: within 2**53 ms either way (285,000 years) all hold a timestamp exactly.
MAX_TIMESTAMP_MS = 2**53
# libjpeg's DCT scales, largest first, and the flags that ask OpenCV for them.
_JPEG_SCALES = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}


@dataclass(frozen=True)
class FrameLimits:
    max_image_bytes: int = 8 << 20
    max_image_pixels: int = 4096 * 4096


@dataclass(frozen=True)
class IncomingFrame:
    """A checked frame, not yet decoded."""

    index: int  # its position in the stream (for messages)
    timestamp_ms: int
    width: int
    height: int
    data: bytes
    raw: bool  # data is height x width x 3 RGB bytes, not JPEG/PNG
    arrived: float  # time.monotonic() when it arrived
    orientation: int = 1  # EXIF orientation of encoded bytes; width and height are as shown


@dataclass(frozen=True)
class ImageHeader:
    """What an encoded image's header says: its size as shown (turned by the orientation)."""

    format: str  # "jpeg" or "png"
    width: int
    height: int
    orientation: int = 1  # EXIF: 1 upright, 2-8 mirrored and/or turned (5-8: stored on its side)


def encoded_image_size(data: bytes) -> ImageHeader:
    """The header of JPEG or PNG bytes, or InputError saying why they are not one."""
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 33 or data[12:16] != b"IHDR":
            raise InputError("truncated PNG (no image header)")
        width, height = struct.unpack(">II", data[16:24])
        if b"IEND" not in data[-_TRAILER_SLACK:]:
            raise InputError(
                f"truncated PNG (no end chunk in its last {_TRAILER_SLACK} bytes; data after the image is not taken)"
            )
        return _shown("png", width, height, _png_orientation(data))
    if data.startswith(_JPEG_SOI):
        header = _jpeg_header(data)
        if header is None:
            raise InputError("truncated or corrupt JPEG (no frame header)")
        if _JPEG_EOI not in data[-_TRAILER_SLACK:]:
            raise InputError(
                f"truncated JPEG (no end marker in its last {_TRAILER_SLACK} bytes; data after the image, such as"
                " a motion photo's video, is not taken)"
            )
        return _shown("jpeg", *header)
    raise InputError("image bytes are neither JPEG nor PNG")


def _shown(kind: str, width: int, height: int, orientation: int) -> ImageHeader:
    """The stored size turned a quarter when the orientation (5-8) says it is stored on its side."""
    return ImageHeader(kind, *((height, width) if orientation >= 5 else (width, height)), orientation)


def _jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(stored width, stored height, orientation) from the markers before the scan: the frame
    header's size and the first EXIF APP1 segment's orientation, wherever it stands among them.
    None when there is no frame header before the scan."""
    position, size, orientation = 2, None, None
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker == 0xDA or length < 2:  # the scan: no more headers
            break
        if marker in _JPEG_SOF and size is None:
            if position + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            size = (width, height)
        segment = data[position + 4 : position + 2 + length]
        if marker == 0xE1 and orientation is None and segment.startswith(_EXIF):
            orientation = _tiff_orientation(segment[len(_EXIF) :])
        position += 2 + length
    return None if size is None else (*size, orientation or 1)


def _png_orientation(data: bytes) -> int:
    """The orientation in a PNG's eXIf chunk before its image data, 1 when there is none."""
    position = len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        if kind == b"eXIf":
            return _tiff_orientation(data[position + 8 : position + 8 + length])
        if kind in (b"IDAT", b"IEND"):
            break
        position += 12 + length  # length, type, data, CRC
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    """The orientation (1-8) in EXIF's TIFF structure, 1 (upright) when there is none or it is
    malformed."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if order is None or len(tiff) < 10:
        return 1
    (first,) = struct.unpack(order + "I", tiff[4:8])
    if first + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[first : first + 2])
    for entry in range(first + 2, min(first + 2 + 12 * count, len(tiff) - 11), 12):
        tag, _, _, value = struct.unpack(order + "HHIH", tiff[entry : entry + 10])
        if tag == _ORIENTATION_TAG:
            # The value's first two bytes, whatever type the entry declares (as readers do).
            return value if 1 <= value <= 8 else 1
    return 1


# EXIF orientation -> how the stored picture is turned to be shown.
_UPRIGHT = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: cv2.transpose,
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def check_timestamp(timestamp_ms: int) -> None:
    """InputError for a timestamp (of an image or a skeleton frame) beyond ``MAX_TIMESTAMP_MS``."""
    if abs(timestamp_ms) > MAX_TIMESTAMP_MS:
        raise InputError(f"the timestamp is beyond the limit of ±{MAX_TIMESTAMP_MS} ms")


def check_frame(frame, index: int, limits: FrameLimits, arrived: float | None = None) -> IncomingFrame:
    """Check one ``actionrec.v1.Frame`` on arrival (InputError naming the frame when it is bad)."""
    arrived = time.monotonic() if arrived is None else arrived
    kind = frame.WhichOneof("image")
    orientation = 1
    try:
        check_timestamp(frame.timestamp_ms)
        if kind == "encoded":
            data = frame.encoded
            if not data:
                raise InputError("empty image bytes")
            if len(data) > limits.max_image_bytes:
                raise InputError(f"image of {len(data)} bytes is over the limit of {limits.max_image_bytes}")
            header = encoded_image_size(data)
            width, height, orientation = header.width, header.height, header.orientation
        elif kind == "raw":
            data, width, height = frame.raw.rgb, frame.raw.width, frame.raw.height
            if width < 1 or height < 1:
                raise InputError(f"raw image of {width}x{height} pixels")
            if len(data) != width * height * 3:
                raise InputError(f"raw image of {width}x{height} needs {width * height * 3} RGB bytes, got {len(data)}")
        else:
            raise InputError("no image (neither encoded bytes nor raw pixels)")
        if width < 1 or height < 1 or width * height > limits.max_image_pixels:
            raise InputError(
                f"image of {width}x{height} pixels is empty or over the limit of {limits.max_image_pixels} pixels"
            )
        if max(width, height) > MAX_IMAGE_SIDE:  # pose would abort the server on it
            raise InputError(f"image of {width}x{height} pixels has a side over {MAX_IMAGE_SIDE} pixels")
    except InputError as e:
        raise InputError(f"frame {index} (t={frame.timestamp_ms} ms): {e}") from None
    return IncomingFrame(index, frame.timestamp_ms, width, height, data, kind == "raw", arrived, orientation)


def decode_scale(frame: IncomingFrame, max_width: int) -> int:
    """The largest of 1, 2, 4, 8 to divide the frame's size by in decoding that leaves it no
    narrower than ``max_width`` (0: no limit given, full size), so that it is only ever shrunk
    after. Only JPEGs decode scaled cheaply."""
    if frame.raw or max_width <= 0 or not frame.data.startswith(_JPEG_SOI):
        return 1
    return next((scale for scale in _JPEG_SCALES if frame.width / scale >= max_width), 1)


def decode_frame(frame: IncomingFrame, max_width: int = 0) -> np.ndarray:
    """RGB uint8 of a checked frame, of ``shrunk_size((frame.width, frame.height), max_width)``:
    shrunk to ``max_width`` pixels wide (aspect kept) when it is wider; 0: full size. A JPEG is
    decoded scaled (``decode_scale``) where it can be, and the colours are converted after shrinking."""
    full = (frame.width, frame.height)
    size = shrunk_size(full, max_width)
    if frame.raw:
        rgb = np.frombuffer(frame.data, dtype=np.uint8).reshape(frame.height, frame.width, 3)
        return rgb.copy() if size == full else resize_to(rgb, size)  # never a view of the message
    scale = decode_scale(frame, max_width)
    flag = _JPEG_SCALES.get(scale, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imdecode(np.frombuffer(frame.data, dtype=np.uint8), flag)
    if bgr is None:
        raise InputError(f"frame {frame.index} (t={frame.timestamp_ms} ms): image bytes could not be decoded")
    stored = (frame.height, frame.width) if frame.orientation < 5 else (frame.width, frame.height)
    expected = (math.ceil(stored[0] / scale), math.ceil(stored[1] / scale))
    if bgr.shape[:2] != expected:
        raise InputError(
            f"frame {frame.index} (t={frame.timestamp_ms} ms): decoded to {bgr.shape[1]}x{bgr.shape[0]},"
            f" its header says {stored[1]}x{stored[0]}"
            + (f" (at 1/{scale}: {expected[1]}x{expected[0]})" if scale > 1 else "")
        )
    if frame.orientation in _UPRIGHT:
        bgr = _UPRIGHT[frame.orientation](bgr)
    if (bgr.shape[1], bgr.shape[0]) != size:
        bgr = resize_to(bgr, size)  # the frame's own aspect: a scaled decode rounds its size up
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
