"""The service's figures, one run on this machine: throughput, latency, cameras a core sustains,
the skeleton path, memory.

Every figure goes through a real server process (``actionrec serve``) over gRPC on loopback; the
baselines it is compared with (MediaPipe alone on one core, onnxruntime alone on the same model)
are measured in the same run. Sections:

* throughput  N = 1, 2, 4, 8 concurrent streams of a real clip sent as fast as the server takes
              them: posed frames/s against the raw MediaPipe ceiling (cores x one-core rate on
              the same frames); streams sending every frame (pose workers pinned, then not),
              and streams sending only the model's frames, as ``actionrec client`` does;
* latency     two streams at the clip's real frame rate, a window every model frame: from a
              window's last frame arriving to its event leaving, p50 / p99, against the pose +
              classify time behind each event (the server reports it in the event) and against
              MediaPipe alone + onnxruntime alone;
* cameras     the server pinned to one core: how many 30 fps camera streams it keeps in real
              time (nothing dropped, events keep pace);
* skeletons   StreamSkeletons windows/s against raw onnxruntime on the same model; how many
              30 fps skeleton streams one core keeps in real time;
* admission   --admission-streams (8) real-time camera streams opened at once, admission off
              and on: how many ran to the end with events, how many were refused or shed, the
              frame rate a kept stream was posed at;
* memory      resident memory per open stream, and after --soak-minutes of 4 real-time streams
              against after 1 minute; the streams take turns over --soak-models (sports2d alone
              by default; ``sports2d daily3d`` loads both models' share of the one memory arena
              the server's models have).

Each throughput, camera and skeleton figure is the median of ``--repeats`` trials (3), since the
machine's speed drifts between seconds; MediaPipe alone is timed on the clip looped 5 times.
Throughput and windows/s are steady-state rates (``service.loadgen.steady_rate``: while every
stream is under way, from the statistics the server reports every ``STATS_INTERVAL_MS``); the
whole run's count over its wall time, start-up and drain included, is printed beside them.

    python -m benchmarks.service_figures [--only throughput latency ...] [--soak-minutes 10]
        [--admission-streams 8] [--admission-seconds 60]
        [--soak-models sports2d daily3d] [--repeats 3] [--models-dir DIR] [--json]

The model is the shipped ``models/sports2d.onnx`` (``--models-dir`` names another folder holding a
``sports2d.onnx``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.loadgen import StreamResult, frame_stream, paced, run_stream, run_streams, steady_rate, whole_run_rate
from service.models import load_model
from service.testing import VIDEOS, ServerProcess, encoded_frames, skeleton_frames, waving_person

CLIP = VIDEOS / "arm_wrestling.mp4"
SECTIONS = ("throughput", "latency", "cameras", "skeletons", "admission", "memory")
STATS_INTERVAL_MS = 200  # how often the throughput streams report their progress
# The real-time sections measure the pose workers at and past their capacity: admission by pose
# load (service.admission) would refuse or shed the streams that take them there.
ADMIT_ALL = ("--max-pose-load", "0")


# ---------------------------------------------------------------- clients


def stream_config(base: pb.StreamConfig, **fields) -> pb.StreamConfig:
    """``base`` (what every stream of the run asks for) with ``fields`` set."""
    config = pb.StreamConfig()
    config.CopyFrom(base)
    for name, value in fields.items():
        setattr(config, name, value)
    return config


def steady_median(rates: list[float]) -> float:
    """The median of the trials that had a steady state (a trial with a failed stream has none:
    NaN, reported in its row)."""
    kept = [r for r in rates if not np.isnan(r)]
    return float(np.median(kept)) if kept else float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ---------------------------------------------------------------- baselines


def _ceiling_worker(core: int, frames: list[tuple[bytes, int]], max_people: int, loops: int, results) -> None:
    os.sched_setaffinity(0, {core})
    import cv2

    from service.windowing import FrameGate
    from skeleton.pose.estimator import MediaPipePose

    gate = FrameGate(15.0)
    images = [
        (cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), t)
        for data, t in frames
        if gate.admit(t)
    ]
    clip_ms = frames[-1][1] + 1000
    with MediaPipePose(max_people=max_people) as pose:
        pose.estimate(images[0][0], -1)
        times = []
        for loop in range(loops):  # the clip looped, as the streams loop it
            for image, timestamp in images:
                began = time.perf_counter()
                pose.estimate(image, loop * clip_ms + timestamp)
                times.append(time.perf_counter() - began)
    results.put((len(times) / sum(times), float(np.median(times)) * 1000, float(np.percentile(times, 99)) * 1000))


def mediapipe_alone(frames, max_people: int, cores: list[int], loops: int = 5) -> list[tuple[float, float, float]]:
    """Frames/s, median and p99 ms/frame of MediaPipe alone, one process pinned to each of
    ``cores`` at the same time, on the frames the service would pose (the clip's frames at the
    model's 15 fps, ``loops`` times over)."""
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_ceiling_worker, args=(core, frames, max_people, loops, results)) for core in cores
    ]
    for process in processes:
        process.start()
    values = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    return values


def onnxruntime_alone(models_dir: Path, max_batch: int = 16) -> dict:
    """Windows/s of the model alone (batches of ``max_batch``, the server's settings) and the
    time of one window alone."""
    model = load_model(models_dir / "sports2d.onnx", threads=1)
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(max_batch, *model.input_shape)).astype(np.float32)
    model.run(batch)
    began, runs = time.perf_counter(), 0
    while time.perf_counter() - began < 2.0:
        model.run(batch)
        runs += 1
    windows_per_s = runs * max_batch / (time.perf_counter() - began)
    single = []
    for _ in range(200):
        t = time.perf_counter()
        model.run(batch[:1])
        single.append(time.perf_counter() - t)
    return {"windows_per_s": windows_per_s, "one_window_ms": float(np.median(single)) * 1000}


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class CpuUse:
    server_s: float  # CPU seconds of the server process
    loadgen_s: float  # of this process, which sends the streams


def _timed_trial(server: ServerProcess, make_requests, count: int) -> tuple[list[StreamResult], float, CpuUse]:
    """``run_streams`` against ``server``, with the CPU time the server and the streams' sender used."""
    server_before, loadgen_before = server.cpu_seconds(), time.process_time()
    results, wall = run_streams(server.address, make_requests, count)
    return results, wall, CpuUse(server.cpu_seconds() - server_before, time.process_time() - loadgen_before)


def throughput(
    models_dir: Path,
    state: Path,
    frames,
    base,
    one_core_fps: float,
    all_cores_fps: float,
    clip_seconds: float,
    repeats: int,
    *serve_flags: str,
    model_fps: float = 0.0,
) -> dict:
    """Each stream is ``clip_seconds`` of the clip (looped), sent as fast as the server takes it
    (every frame, or with ``model_fps`` only those the model uses, as ``actionrec client`` sends);
    each count ``repeats`` times, the median kept."""
    rows = {}
    cores = len(os.sched_getaffinity(0))
    with ServerProcess(models_dir, state, *serve_flags) as server:
        config = stream_config(base, lossless=True, stats_interval_ms=STATS_INTERVAL_MS)
        for count in (1, 2, 4, 8):
            trials = [
                _timed_trial(
                    server,
                    lambda r: frame_stream(frames, config, r, seconds=clip_seconds, model_fps=model_fps),
                    count,
                )
                for _ in range(repeats)
            ]
            runs = [steady_rate(results, "frames") for results, _, _ in trials]
            whole = [whole_run_rate(results, wall, "frames") for results, wall, _ in trials]
            errors = [r.error for results, _, _ in trials for r in results if r.error]
            fps = steady_median(runs)
            # One stream's frames are posed in order, one at a time: N streams can use min(N, cores) cores.
            usable = min(count, cores) * one_core_fps
            # Where a shortfall comes from: the cores the server got (the load generator runs on
            # the same machine) and what it posed with each core-second it got.
            server_cores = float(np.median([cpu.server_s / wall for _, wall, cpu in trials]))
            loadgen_cores = float(np.median([cpu.loadgen_s / wall for _, wall, cpu in trials]))
            per_core_second = float(
                np.median([rate * wall / cpu.server_s for (_, wall, cpu), rate in zip(trials, whole)])
            )
            rows[count] = {
                "posed_fps": fps,
                "runs": runs,
                "whole_run_fps": whole,
                "ratio": fps / (cores * one_core_fps),
                "ratio_usable_cores": fps / usable,
                "ratio_all_cores_at_once": fps / all_cores_fps,
                "server_cores": server_cores,
                "loadgen_cores": loadgen_cores,
                "posed_per_server_core_second": per_core_second,
                "ratio_per_server_core_second": per_core_second / one_core_fps,
                "errors": errors,
            }
            print(
                f"  {count} streams: {fps:6.1f} posed frames/s = {rows[count]['ratio']:.2f} of the ceiling"
                f" {cores * one_core_fps:.1f} ({rows[count]['ratio_usable_cores']:.2f} of {min(count, cores)} core(s));"
                f" {rows[count]['ratio_all_cores_at_once']:.2f} of every core posing at once; runs"
                f" {', '.join(f'{v:.1f}' for v in runs)} (whole runs, start and drain included:"
                f" {', '.join(f'{v:.1f}' for v in whole)})\n"
                f"     server used {server_cores:.2f} cores, the load generator {loadgen_cores:.2f};"
                f" {per_core_second:.1f} posed frames per server core-second ="
                f" {rows[count]['ratio_per_server_core_second']:.2f} of MediaPipe alone on one core"
            )
    return rows


def latency(
    models_dir: Path,
    state: Path,
    frames,
    base,
    pose_ms: float,
    pose_p99_ms: float,
    classify_ms: float,
    seconds: float = 20.0,
) -> dict:
    with ServerProcess(models_dir, state, *ADMIT_ALL) as server:
        config = stream_config(base, window_stride=1, frame_rate_hint=28)
        results, _ = run_streams(
            server.address, lambda r: frame_stream(frames, config, r, realtime=True, seconds=seconds), 2
        )
    latencies = [v for r in results for v in r.latencies_ms]
    # Each event against its own compute (windows the stream's end completed had no pose: left out).
    pairs = [
        (latency_ms, timing.pose_ms + timing.classify_ms)
        for r in results
        for latency_ms, timing in zip(r.latencies_ms, r.timings)
        if timing.pose_ms > 0
    ]
    own = [lat / c for lat, c in pairs]
    budget = pose_ms + classify_ms
    row = {
        "events": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "p50_compute_ms": percentile([c for _, c in pairs], 50),
        "p99_compute_ms": percentile([c for _, c in pairs], 99),
        "p50_over_own_compute": percentile(own, 50),
        "p99_over_own_compute": percentile(own, 99),
        "pose_ms": pose_ms,
        "pose_p99_ms": pose_p99_ms,
        "classify_ms": classify_ms,
        "p99_over_budget": percentile(latencies, 99) / budget,
        "p99_over_p99_budget": percentile(latencies, 99) / (pose_p99_ms + classify_ms),
        "dropped": sum(sum(r.final.frames_dropped.values()) for r in results if r.final),
    }
    print(
        f"  {row['events']} events: p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms;"
        f" each event's own pose + classify: p50 {row['p50_compute_ms']:.1f} ms, p99 {row['p99_compute_ms']:.1f} ms;"
        f" latency / own compute: p50 {row['p50_over_own_compute']:.2f}x, p99 {row['p99_over_own_compute']:.2f}x\n"
        f"  against MediaPipe alone {pose_ms:.1f} (p99 {pose_p99_ms:.1f}) + onnxruntime alone {classify_ms:.2f} ms:"
        f" p99 = {row['p99_over_budget']:.2f}x (median pose), {row['p99_over_p99_budget']:.2f}x (p99 pose)"
    )
    return row


def _sustained(results: list[StreamResult], last_sent_lag: float = 1.0) -> bool:
    for r in results:
        if r.error or r.final is None or sum(r.final.frames_dropped.values()) or r.send_lag_s > last_sent_lag:
            return False
        if sum(r.final.windows_dropped.values()):
            return False
    latencies = [v for r in results for v in r.latencies_ms]
    return bool(latencies) and percentile(latencies, 99) < 1000


def _most_sustained_on_one_core(
    models_dir: Path, state: Path, counts, trial: Callable[[ServerProcess, int], bool], *serve_flags: str
) -> int:
    """The largest of ``counts`` (tried in order, stopping at the first failure) for which
    ``trial(server, count)`` keeps up, with the server pinned to the first core and one pose
    worker, and this process (the clients) on the others."""
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(cores[1:]) or set(cores))
    best = 0
    try:
        with ServerProcess(
            models_dir, state, "--workers", "1", *ADMIT_ALL, *serve_flags, prefix=["taskset", "-c", str(cores[0])]
        ) as server:
            for count in counts:
                if not trial(server, count):
                    break
                best = count
    finally:
        os.sched_setaffinity(0, set(cores))
    return best


def cameras(models_dir: Path, state: Path, frames, base, seconds: float, repeats: int) -> dict:
    """30 fps camera streams on a server pinned to one core (the client runs on the others); a
    count is kept up when most of ``repeats`` trials keep up."""
    config = stream_config(base, frame_rate_hint=30)
    rows = {}

    def trial(server: ServerProcess, count: int) -> bool:
        trials = [
            run_streams(server.address, lambda r: frame_stream(frames, config, r, 30.0, True, seconds), count)[0]
            for _ in range(repeats)
        ]
        kept = [_sustained(results) for results in trials]
        dropped = [sum(sum(r.final.frames_dropped.values()) for r in results if r.final) for results in trials]
        p99 = [percentile([v for r in results for v in r.latencies_ms], 99) for results in trials]
        ok = 2 * sum(kept) > repeats
        rows[count] = {"sustained": ok, "trials_kept_up": sum(kept), "dropped": dropped, "p99_ms": p99}
        verdict = "kept up" if ok else "fell behind"
        print(
            f"  {count} camera streams: {verdict} ({sum(kept)} of {repeats} trials; dropped"
            f" {', '.join(map(str, dropped))}; p99 {', '.join(f'{v:.0f}' for v in p99)} ms)"
        )
        return ok

    best = _most_sustained_on_one_core(models_dir, state, range(1, 9), trial)
    return {"streams": best, "trials": rows}


def skeleton_messages(seconds: float, people: int) -> tuple[list[pb.StreamSkeletonsRequest], np.ndarray]:
    """``seconds`` of 30 fps skeletons of waving people, built before the clock starts."""
    times = np.round(np.arange(round(seconds * 30)) * 1000 / 30).astype(int)
    persons = [waving_person("mediapipe33", times, offset=(150.0 + 300 * p, 240.0)) for p in range(people)]
    return [pb.StreamSkeletonsRequest(frame=f) for f in skeleton_frames(persons, times)], times


def _skeleton_requests(messages, times, realtime: bool, stride: int, result: StreamResult):
    config = pb.SkeletonStreamConfig(stream=pb.StreamConfig(window_stride=stride))
    return paced(messages, times, realtime, result, pb.StreamSkeletonsRequest(config=config))


def skeletons(models_dir: Path, state: Path, raw_windows_per_s: float, seconds: float, repeats: int) -> dict:
    with ServerProcess(models_dir, state) as server:
        messages, times = skeleton_messages(60, people=2)
        trials = [
            run_streams(server.address, lambda r: _skeleton_requests(messages, times, False, 1, r), 4, skeletons=True)
            for _ in range(repeats)
        ]
    rates = [steady_rate(results, "windows") for results, _ in trials]
    whole = [whole_run_rate(results, wall, "windows") for results, wall in trials]
    refused = sum(sum(r.final.windows_dropped.values()) for results, _ in trials for r in results if r.final)
    service_rate = steady_median(rates)
    # The streams send faster than the model classifies: each holds its share of the batcher's
    # queue (a quarter; four streams fill it), and the windows beyond it are refused (and counted,
    # as stream_behind or batch_queue_full), so the rate is the service's ceiling.
    print(
        f"  StreamSkeletons: {service_rate:.0f} windows/s, median of {', '.join(f'{v:.0f}' for v in rates)} (4 streams,"
        f" a window every model frame, {refused} refused at the full queue or a stream's share of it;"
        f" whole runs, start and drain included:"
        f" {', '.join(f'{v:.0f}' for v in whole)}); onnxruntime alone {raw_windows_per_s:.0f}:"
        f" {service_rate / raw_windows_per_s:.2f}"
    )
    messages, times = skeleton_messages(seconds, people=1)
    trials = {}

    def trial(server: ServerProcess, count: int) -> bool:
        results, _ = run_streams(
            server.address,
            lambda r: _skeleton_requests(messages, times, True, 0, r),
            count,
            skeletons=True,
            deadline_s=3 * seconds + 10,
        )
        ok = trials[count] = _sustained(results, last_sent_lag=0.5)
        print(f"  {count} skeleton streams at 30 fps on one core: {'kept up' if ok else 'fell behind'}")
        return ok

    counts = (8, 16, 32, 64, 96, 128, 192, 256)
    best = _most_sustained_on_one_core(models_dir, state, counts, trial, "--max-streams", "512")
    return {
        "windows_per_s": service_rate,
        "runs": rates,
        "whole_runs": whole,
        "windows_refused": refused,
        "ratio": service_rate / raw_windows_per_s,
        "one_core_streams": best,
        "trials": trials,
    }


def admission(models_dir: Path, state: Path, frames, base, seconds: float, count: int, model_fps: float) -> dict:
    """``count`` real-time camera streams opened at once, more than the cores pose in real time:
    with admission off (``--max-pose-load 0``) they share the shortfall; with the default limit
    the server keeps some and sheds the rest (service.admission)."""
    config = stream_config(base, frame_rate_hint=28)
    rows = {}
    for label, flags in (("off", ADMIT_ALL), ("on", ())):
        with ServerProcess(models_dir, state, *flags) as server:
            results, _ = run_streams(
                server.address, lambda r: frame_stream(frames, config, r, 28.0, True, seconds), count, deadline_s=600
            )
        kept = [r for r in results if not r.error]
        posed_fps = [r.final.frames_processed / seconds for r in kept if r.final]
        events = [r.events for r in kept]
        rows[label] = {
            "streams": count,
            "kept": len(kept),
            "turned_away": sum(r.code == "RESOURCE_EXHAUSTED" for r in results),
            "other_errors": [r.error for r in results if r.error and r.code != "RESOURCE_EXHAUSTED"],
            "kept_posed_fps_median": float(np.median(posed_fps)) if posed_fps else 0.0,
            "kept_with_events": sum(e > 0 for e in events),
            "events": sum(events),
        }
        row = rows[label]
        print(
            f"  admission {label}: {row['kept']} of {count} streams ran to the end ({row['kept_with_events']} with"
            f" events, {row['events']} in all), {row['turned_away']} refused or shed; a kept stream posed"
            f" {row['kept_posed_fps_median']:.1f} frames/s (median; the model takes {model_fps:g})"
        )
        for error in row["other_errors"]:
            print(f"  a stream failed: {error}")
    return rows


def memory(models_dir: Path, state: Path, frames, base, soak_minutes: float, models: Sequence[str]) -> dict:
    """The server's resident memory idle, then while 4 real-time streams run for ``soak_minutes``;
    stream i asks for ``models[i % len(models)]``."""
    with ServerProcess(models_dir, state, *ADMIT_ALL) as server:
        idle = server.rss_mib()
        stream_models = [models[i % len(models)] for i in range(4)]
        results = [StreamResult() for _ in stream_models]
        threads = [
            threading.Thread(
                target=run_stream,
                args=(
                    server.address,
                    frame_stream(
                        frames,
                        stream_config(base, frame_rate_hint=28, model=model),
                        result,
                        realtime=True,
                        seconds=soak_minutes * 60,
                    ),
                    result,
                ),
            )
            for model, result in zip(stream_models, results)
        ]
        for t in threads:
            t.start()
        samples = []
        started = time.monotonic()
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            samples.append((time.monotonic() - started, server.rss_mib()))
        for t in threads:
            t.join()
    # the last sample while the streams were still open (they close, and free their memory, at the end)
    open_samples = [(t, rss) for t, rss in samples if t <= soak_minutes * 60 - 5] or samples
    at_one_minute = next((rss for t, rss in open_samples if t >= 60), open_samples[-1][1])
    at_end = open_samples[-1][1]
    row = {
        "idle_mib": idle,
        "per_stream_mib": (at_one_minute - idle) / 4,
        "after_1_min_mib": at_one_minute,
        "at_end_mib": at_end,
        "soak_minutes": soak_minutes,
        "stream_models": stream_models,
        "events": sum(r.events for r in results),
        "stream_errors": [r.error for r in results if r.error],
        "growth_mib": at_end - at_one_minute,
        "dropped": sum(sum(r.final.frames_dropped.values()) for r in results if r.final),
    }
    print(
        f"  idle {idle:.0f} MiB; 4 streams ({', '.join(stream_models)}): {at_one_minute:.0f} MiB after 1 min"
        f" ({row['per_stream_mib']:.0f} MiB a stream), {at_end:.0f} MiB after {soak_minutes:g} min"
        f" (growth {row['growth_mib']:+.0f} MiB)"
    )
    for error in row["stream_errors"]:
        print(f"  a stream failed: {error}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--frames", type=int, default=140, help="frames of the clip per stream")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each real-time trial")
    parser.add_argument("--clip-seconds", type=float, default=20.0, help="clip time per stream in 'throughput'")
    parser.add_argument("--admission-seconds", type=float, default=60.0, help="length of each 'admission' run")
    parser.add_argument("--admission-streams", type=int, default=8, help="camera streams in 'admission'")
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument(
        "--soak-models", nargs="+", default=["sports2d"], help="models the soak's streams take turns over"
    )
    parser.add_argument("--repeats", type=int, default=3, help="trials per figure (medians; cameras: most trials)")
    parser.add_argument("--max-people", type=int, default=1, help="people posed per frame, streams and baseline")
    parser.add_argument("--models-dir", type=Path, help="use these models instead of the shipped ones")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()

    from service.config import DEFAULT_MODELS_DIR
    from service.testing import models_for_development

    # The figures are the shipped model's: never a development stand-in's.
    if not ((args.models_dir or DEFAULT_MODELS_DIR) / "sports2d.onnx").is_file():
        parser.error(f"no sports2d.onnx in {args.models_dir or DEFAULT_MODELS_DIR}: the figures measure that model")

    with tempfile.TemporaryDirectory() as tmp:
        models_dir = args.models_dir
        if models_dir is None:
            models_dir = models_for_development(Path(tmp) / "models")
        state = Path(tmp) / "state"
        state.mkdir()
        base = pb.StreamConfig(max_people=args.max_people)
        frames = encoded_frames(CLIP, args.frames)
        cores = len(os.sched_getaffinity(0))
        core_ids = sorted(os.sched_getaffinity(0))
        [(one_core_fps, pose_ms, pose_p99_ms)] = mediapipe_alone(frames, args.max_people, core_ids[:1])
        ceiling = cores * one_core_fps
        # Every core posing at once: what the machine gives MediaPipe when all its cores are busy
        # (on a shared host, less than cores x one core; reported beside the ceiling, not instead).
        all_cores_fps = sum(fps for fps, _, _ in mediapipe_alone(frames, args.max_people, core_ids))
        raw = onnxruntime_alone(models_dir)
        model_fps = load_model(models_dir / "sports2d.onnx").card.window.fps
        print(
            f"baselines: MediaPipe {one_core_fps:.1f} frames/s on one core ({pose_ms:.1f} ms a frame, p99"
            f" {pose_p99_ms:.1f}), ceiling {ceiling:.1f} on {cores} cores ({all_cores_fps:.1f} with every core"
            f" posing at once); onnxruntime {raw['windows_per_s']:.0f} windows/s, {raw['one_window_ms']:.2f} ms"
            " one window"
        )
        figures: dict = {
            "cores": cores,
            "one_core_fps": one_core_fps,
            "all_cores_fps": all_cores_fps,
            "pose_ms": pose_ms,
            "onnxruntime": raw,
        }
        figures["pose_p99_ms"] = pose_p99_ms
        if "throughput" in args.only:
            passes = {  # figure: (what it is, server flags, the rate the streams send at: 0 every frame)
                "throughput": ("streams sending every frame; pose workers pinned to cores", (), 0.0),
                "throughput_unpinned": (
                    "the same, pose workers not pinned (--no-pin-workers)",
                    ("--no-pin-workers",),
                    0.0,
                ),
                "throughput_model_frames": (
                    "streams sending only the model's frames, as actionrec client does",
                    (),
                    model_fps,
                ),
            }
            for figure, (title, flags, send_fps) in passes.items():
                print(f"throughput (whole service, streams as fast as taken; {title}):")
                figures[figure] = throughput(
                    models_dir,
                    state,
                    frames,
                    base,
                    one_core_fps,
                    all_cores_fps,
                    args.clip_seconds,
                    args.repeats,
                    *flags,
                    model_fps=send_fps,
                )
        if "latency" in args.only:
            print("latency (two streams in real time):")
            figures["latency"] = latency(models_dir, state, frames, base, pose_ms, pose_p99_ms, raw["one_window_ms"])
        if "cameras" in args.only:
            print("30 fps camera streams on one core:")
            figures["cameras"] = cameras(models_dir, state, frames, base, args.seconds, args.repeats)
        if "skeletons" in args.only:
            print("skeleton path:")
            figures["skeletons"] = skeletons(models_dir, state, raw["windows_per_s"], args.seconds, args.repeats)
        if "admission" in args.only:
            print(f"admission ({args.admission_streams} real-time camera streams opened at once):")
            figures["admission"] = admission(
                models_dir, state, frames, base, args.admission_seconds, args.admission_streams, model_fps
            )
        if "memory" in args.only:
            print(f"memory (4 real-time streams for {args.soak_minutes:g} min):")
            figures["memory"] = memory(models_dir, state, frames, base, args.soak_minutes, args.soak_models)
    if args.json:
        print(json.dumps(figures, default=str))


if __name__ == "__main__":
    main()
