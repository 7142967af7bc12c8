"""Frames sent as read against frames sent at the server's pose width (``service.outgoing``).

For each real clip wider than the pose width, on the frames a 15 fps model uses:

* bytes a frame: as read at JPEG quality 90, shrunk to the pose width at 90 and at
  ``QUALITY_SHRUNK``, and as the clients send it (``width_to_send``: as read, or shrunk at
  ``QUALITY_SHRUNK`` to the pose width or ``MIN_SHRUNK_WIDTH``, whichever is wider);
* pose: MediaPipe's landmarks (up to 2 people) on each way of sending, decoded as the server
  decodes it, against its landmarks on the shrunk frame with no JPEG step at all: frames where
  the number of people found agrees, and the median and 90th-percentile landmark distance;
* the server's CPU time per posed frame (``actionrec client --fast`` through a real server with
  one pose worker, ``--width 0`` against ``--width`` the pose width, alternating, ``--repeats`` each).

Frames at least twice the pose width are sent shrunk by default (``width_to_send``); the rows
say what either way would cost for each clip.

    python -m benchmarks.sent_width [--width 640] [--repeats 4]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.pose_throughput import DATA
from service.config import DEFAULT_MODELS_DIR
from service.frames import FrameLimits, check_frame, decode_frame
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.outgoing import QUALITY_AS_READ, QUALITY_SHRUNK, encode_to_send, width_to_send
from service.testing import ServerProcess
from service.windowing import FrameGate
from skeleton.pose.estimator import MediaPipePose, PersonPose
from skeleton.pose.video import probe_video, read_frames, resize_to_width

CLIPS = ("hugging_ntu_style.mp4", "pedestrians_vtest.avi")
MODEL_FPS = 15.0


def jpeg(bgr: np.ndarray, quality: int) -> bytes:
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def as_posed(data: bytes, index: int, timestamp: int, width: int) -> np.ndarray:
    """The RGB image the server poses for these JPEG bytes."""
    frame = check_frame(pb.Frame(timestamp_ms=timestamp, encoded=data), index, FrameLimits(max_image_bytes=64 << 20))
    return decode_frame(frame, width)


def agreement(reference: list[list[PersonPose]], other: list[list[PersonPose]]) -> dict:
    """How close ``other``'s people are to ``reference``'s, frame by frame (pixels of the posed frame)."""
    distances = [
        min(float(np.median(np.linalg.norm(p.image_xy - q.image_xy, axis=1))) for q in theirs)
        for ours, theirs in zip(reference, other)
        if theirs
        for p in ours
    ]
    return {
        "same_count": sum(len(a) == len(b) for a, b in zip(reference, other)),
        "median_px": float(np.median(distances)),
        "p90_px": float(np.percentile(distances, 90)),
        "people": f"{sum(map(len, other))}/{sum(map(len, reference))}",
    }


def pose_and_bytes(clip: Path, width: int) -> dict:
    ways = ("uncompressed", "as read q90", "shrunk q90", f"shrunk q{QUALITY_SHRUNK}", "client")
    estimators = {way: MediaPipePose(max_people=2) for way in ways}
    found: dict[str, list] = {way: [] for way in ways}
    sizes: dict[str, list[int]] = {way: [] for way in ways[1:]}
    gate = FrameGate(MODEL_FPS, probe_video(clip).fps)
    for index, (rgb, timestamp) in enumerate(read_frames(clip)):
        if not gate.admit(timestamp):
            continue
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        small = resize_to_width(bgr, width)
        sent = {
            "as read q90": jpeg(bgr, QUALITY_AS_READ),
            "shrunk q90": jpeg(small, 90),
            f"shrunk q{QUALITY_SHRUNK}": encode_to_send(bgr, width, clip.name)[0],
            "client": encode_to_send(bgr, width_to_send(bgr.shape[1], width), clip.name)[0],
        }
        images = {"uncompressed": cv2.cvtColor(small, cv2.COLOR_BGR2RGB)}
        for way, data in sent.items():
            sizes[way].append(len(data))
            images[way] = as_posed(data, index, timestamp, width)
        for way, estimator in estimators.items():
            found[way].append(estimator.estimate(images[way], timestamp))
    for estimator in estimators.values():
        estimator.close()
    return {
        way: {"kib": float(np.median(sizes[way])) / 1024, **agreement(found["uncompressed"], found[way])}
        for way in ways[1:]
    }


def server_cpu_ms(clips: list[Path], width: int, repeats: int) -> dict:
    """The server's CPU ms per posed frame, median over ``repeats`` runs, frames sent as read and shrunk."""
    costs: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as state:
        flags = ("--workers", "1", "--models", "sports2d", "--pose-width", str(width))
        with ServerProcess(DEFAULT_MODELS_DIR, Path(state), *flags) as server:
            for clip in clips:
                for repeat in range(repeats):
                    for sent in (0, width) if repeat % 2 == 0 else (width, 0):
                        command = [sys.executable, "-m", "actionrec", "client", str(clip), "--fast", "--json"]
                        command += ["--server", server.address, "--width", str(sent)]
                        before = server.cpu_seconds()
                        run = subprocess.run(command, capture_output=True, text=True, check=True)
                        posed = int(re.search(r"(\d+) posed", run.stderr)[1])
                        key = (clip.name, "shrunk" if sent else "as read")
                        costs.setdefault(key, []).append((server.cpu_seconds() - before) * 1000 / posed)
    return {key: float(np.median(values)) for key, values in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=640, help="the server's pose width (actionrec serve --pose-width)")
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    clips = [DATA / "videos" / name for name in CLIPS]
    header = f"{'clip':24s} {'sent':13s} {'KiB':>6s} {'same people':>11s} {'median px':>9s} {'p90 px':>7s}"
    print(f"{header} {'people (uncompressed)':>22s}")
    for clip in clips:
        for way, row in pose_and_bytes(clip, args.width).items():
            print(
                f"{clip.name:24s} {way:13s} {row['kib']:6.1f} {row['same_count']:11d} {row['median_px']:9.2f}"
                f" {row['p90_px']:7.2f} {row['people']:>22s}"
            )
    print(f"\n{'clip':24s} {'sent':11s} {'server CPU ms a posed frame':>28s}")
    for (clip, way), cost in server_cpu_ms(clips, args.width, args.repeats).items():
        print(f"{clip:24s} {way:11s} {cost:28.2f}")


if __name__ == "__main__":
    main()
