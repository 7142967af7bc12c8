"""What a posed frame costs before pose: decoding a camera's JPEG and shrinking it to the pose width.

For each real clip (the first ``--frames`` frames, JPEG-encoded at quality 90 before the clock
starts), the median time of

* full:    decode the whole frame, shrink it to ``--width`` (what pose needs) by area averaging;
* service: ``service.frames.decode_frame(frame, max_width)``: a JPEG at least twice as wide as the
           pose width decoded at 1/2, 1/4 or 1/8 scale by libjpeg, shrunk the rest of the way
           (bilinear below a factor of 2), colours converted last.

    python -m benchmarks.frame_decode [--frames 60] [--width 640] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from benchmarks.pose_throughput import CLIPS, DATA
from service.frames import FrameLimits, check_frame, decode_frame, decode_scale
from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.testing import encoded_frames
from skeleton.pose.video import shrunk_size


def median_ms(function, items, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        for item in items:
            began = time.perf_counter()
            function(item)
            times.append(time.perf_counter() - began)
    return float(np.median(times)) * 1000


def measure(clip: str, frames: int, width: int) -> dict:
    checked = [
        check_frame(pb.Frame(timestamp_ms=t, encoded=data), i, FrameLimits(max_image_bytes=64 << 20))
        for i, (data, t) in enumerate(encoded_frames(DATA / "videos" / clip, frames))
    ]
    first = checked[0]
    size = shrunk_size((first.width, first.height), width)
    full = median_ms(lambda f: cv2.resize(decode_frame(f), size, interpolation=cv2.INTER_AREA), checked)
    scaled = median_ms(lambda f: decode_frame(f, width), checked)
    return {
        "clip": clip,
        "size": f"{first.width}x{first.height}",
        "scale": decode_scale(first, width),
        "full_ms": full,
        "service_ms": scaled,
        "speed-up": full / scaled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--width", type=int, default=640, help="the pose width (actionrec serve --pose-width)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one pose worker's core
    rows = [measure(clip, args.frames, args.width) for clip in CLIPS]
    print(f"{'clip':26s} {'size':>10s} {'scale':>5s} {'full ms':>8s} {'service ms':>10s} {'speed-up':>8s}")
    for r in rows:
        print(
            f"{r['clip']:26s} {r['size']:>10s} {'1/' + str(r['scale']):>5s} {r['full_ms']:8.2f}"
            f" {r['service_ms']:10.2f} {r['speed-up']:8.2f}"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
