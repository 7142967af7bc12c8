"""MediaPipe pose throughput on the real clips: the ceiling the service is measured against.

For each clip in ``../shared/data/videos`` (frames decoded and shrunk to 640 px wide before the
clock starts), the pose landmarker runs

* on one core: one process pinned to one core;
* one stream per core: as many processes as cores, each pinned to its own core, all at once.

It prints frames/s (median of per-frame times, and overall) per clip and a total row.

    python -m benchmarks.pose_throughput [--frames 150] [--max-people 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLIPS = ("arm_wrestling.mp4", "hugging_ntu_style.mp4", "eye_makeup_closeup.avi", "pedestrians_vtest.avi")


def _decode(path: Path, frames: int, width: int) -> list[np.ndarray]:
    from skeleton.pose.video import read_frames, resize_to_width

    out = []
    for rgb, _ in read_frames(path):
        out.append(resize_to_width(rgb, width))
        if len(out) == frames:
            break
    return out


def _worker(core: int, path: str, frames: int, width: int, max_people: int, start, results) -> None:
    os.sched_setaffinity(0, {core})  # before MediaPipe starts its threads
    from skeleton.pose.estimator import MediaPipePose

    images = _decode(Path(path), frames, width)
    with MediaPipePose(max_people=max_people) as pose:
        pose.estimate(images[0], 0)  # warm-up: graph start-up is not throughput
        start.wait()
        times = []
        began = time.perf_counter()
        for i, image in enumerate(images):
            t = time.perf_counter()
            pose.estimate(image, 33 * (i + 1))
            times.append(time.perf_counter() - t)
        total = time.perf_counter() - began
    results.put((core, len(images), total, float(np.median(times))))


def run(path: Path, cores: list[int], frames: int, width: int, max_people: int) -> dict:
    context = mp.get_context("spawn")
    start, results = context.Barrier(len(cores)), context.Queue()
    workers = [
        context.Process(target=_worker, args=(c, str(path), frames, width, max_people, start, results)) for c in cores
    ]
    for w in workers:
        w.start()
    rows = [results.get() for _ in workers]
    for w in workers:
        w.join()
    return {
        "frames_per_s": sum(n / total for _, n, total, _ in rows),
        "median_ms": float(np.median([m for *_, m in rows])) * 1000,
        "frames": rows[0][1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--max-people", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    print(f"MediaPipe pose, frames at {args.width} px wide, max {args.max_people} people, {len(cores)} cores")
    print(
        f"{'clip':26}{'frames':>8}{'1 core fps':>12}{'ms/frame':>10}{f'{len(cores)} streams fps':>18}{'per core':>10}"
    )
    table = {}
    for clip in CLIPS:
        one = run(DATA / "videos" / clip, cores[:1], args.frames, args.width, args.max_people)
        many = run(DATA / "videos" / clip, cores, args.frames, args.width, args.max_people)
        table[clip] = {"one_core": one, "one_stream_per_core": many}
        print(
            f"{clip:26}{one['frames']:>8}{one['frames_per_s']:>12.1f}{one['median_ms']:>10.1f}"
            f"{many['frames_per_s']:>18.1f}{many['frames_per_s'] / len(cores):>10.1f}"
        )
    one_total = float(np.mean([row["one_core"]["frames_per_s"] for row in table.values()]))
    many_total = float(np.mean([row["one_stream_per_core"]["frames_per_s"] for row in table.values()]))
    print(f"{'mean over clips':26}{'':>8}{one_total:>12.1f}{'':>10}{many_total:>18.1f}{many_total / len(cores):>10.1f}")
    if args.json:
        print(
            json.dumps(
                {
                    "cores": len(cores),
                    "clips": table,
                    "mean_one_core_fps": one_total,
                    "mean_one_stream_per_core_fps": many_total,
                }
            )
        )


if __name__ == "__main__":
    main()
