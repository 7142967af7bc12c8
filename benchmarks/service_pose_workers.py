"""Pose workers: threads or processes? MediaPipe on all cores, both ways, in one run.

The service runs one MediaPipe landmarker per stream on a pool of pose worker threads. That is
only right if MediaPipe releases the GIL well enough for threads to use every core; this
measures it on the real clips:

* processes: one process per core, each pinned to its core, one landmarker each (the ceiling);
* threads:   one process, one thread per core, one landmarker each (what the service does).

    python -m benchmarks.service_pose_workers [--frames 120] [--clips arm_wrestling.mp4 ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.pose_throughput import DATA, _decode
from benchmarks.pose_throughput import run as run_processes


def _threads_worker(path: str, threads: int, frames: int, width: int, max_people: int, results) -> None:
    from skeleton.pose.estimator import MediaPipePose

    images = _decode(Path(path), frames, width)
    poses = [MediaPipePose(max_people=max_people) for _ in range(threads)]
    for pose in poses:
        pose.estimate(images[0], 0)  # warm-up
    start = threading.Barrier(threads + 1)
    totals = [0.0] * threads

    def work(k: int) -> None:
        start.wait()
        began = time.perf_counter()
        for i, image in enumerate(images):
            poses[k].estimate(image, 33 * (i + 1))
        totals[k] = time.perf_counter() - began

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    for w in workers:
        w.join()
    for pose in poses:
        pose.close()
    results.put(sum(len(images) / t for t in totals))


def run_threads(path: Path, threads: int, frames: int, width: int, max_people: int) -> float:
    context = mp.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_threads_worker, args=(str(path), threads, frames, width, max_people, results))
    process.start()
    value = results.get()
    process.join()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--max-people", type=int, default=2)
    parser.add_argument("--clips", nargs="+", default=["arm_wrestling.mp4", "pedestrians_vtest.avi"])
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    print(f"MediaPipe pose on {len(cores)} cores: one landmarker per core, as processes or as threads")
    print(f"{'clip':26}{'1 core fps':>12}{'processes fps':>15}{'threads fps':>13}{'threads/processes':>19}")
    table = {}
    for clip in args.clips:
        path = DATA / "videos" / clip
        one = run_processes(path, cores[:1], args.frames, args.width, args.max_people)["frames_per_s"]
        processes = run_processes(path, cores, args.frames, args.width, args.max_people)["frames_per_s"]
        threads = run_threads(path, len(cores), args.frames, args.width, args.max_people)
        table[clip] = {"one_core": one, "processes": processes, "threads": threads, "ratio": threads / processes}
        print(f"{clip:26}{one:>12.1f}{processes:>15.1f}{threads:>13.1f}{threads / processes:>19.2f}")
    ratio = float(np.median([row["ratio"] for row in table.values()]))
    print(f"median threads/processes: {ratio:.2f}")
    if args.json:
        print(json.dumps({"cores": len(cores), "clips": table, "median_ratio": ratio}))


if __name__ == "__main__":
    main()
