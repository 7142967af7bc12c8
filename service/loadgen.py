"""Load generation: streams of real frames or skeletons driven against a running server.

For the benchmarks (``benchmarks.service_figures``) and the reliability suite's soak: each
stream runs in its own thread and channel, is sent in real time or as fast as the server takes
it, and records its events, latencies and final statistics rather than raising.

Rates are taken in the steady state (``steady_rate``): while every stream is running, from the
statistics each event and each periodic report carries. A whole run's count over its wall
time would also hold the channels' set-up, the first window filling, and the last stream's
drain, which on a run of a few seconds is a tenth of it or more.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc

from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.generated.actionrec.v1 import actionrec_pb2_grpc as pb_grpc
from service.windowing import FrameGate


@dataclass
class StreamResult:
    final: pb.StreamStats | None = None
    latencies_ms: list[float] = field(default_factory=list)
    timings: list[pb.EventTiming] = field(default_factory=list)  # each event's compute, as latencies_ms
    events: int = 0
    send_lag_s: float = 0.0  # how far behind real time the sender fell (0 when not paced)
    finished: float = 0.0  # time.monotonic() of the final statistics
    error: str = ""
    code: str = ""  # the gRPC status of a stream that failed
    sent: int = 0  # frames (or skeleton frames) handed to gRPC, the configuration not counted
    # (time.monotonic(), frames processed, windows classified): from every statistics received
    progress: list[tuple[float, int, int]] = field(default_factory=list)

    def record(self, stats: pb.StreamStats) -> None:
        self.progress.append((time.monotonic(), stats.frames_processed, stats.windows_classified))


def run_stream(address: str, requests, result: StreamResult, skeletons: bool = False, deadline_s=3600.0) -> None:
    channel = grpc.insecure_channel(address)
    api = pb_grpc.ActionRecognitionStub(channel)
    call = api.StreamSkeletons if skeletons else api.StreamFrames
    try:
        for response in call(requests, timeout=deadline_s):
            kind = response.WhichOneof("kind")
            if kind == "event":
                result.events += 1
                result.latencies_ms.append(response.event.stats.latency_ms)
                result.timings.append(response.event.timing)
                result.record(response.event.stats)
            elif kind == "stats":
                result.record(response.stats)
                if response.stats.final:
                    result.final = response.stats
        result.finished = time.monotonic()
    except Exception as e:  # a failed stream is reported in the figures, not raised
        result.error = str(e)
        result.code = e.code().name if isinstance(e, grpc.RpcError) else ""
    finally:
        channel.close()


def paced(items, timestamps_ms, realtime: bool, result: StreamResult, first=None):
    """``items`` at their timestamps (in real time) when ``realtime``, else as fast as taken."""
    if first is not None:
        yield first
    started = time.monotonic()
    for item, timestamp in zip(items, timestamps_ms):
        if realtime:
            delay = started + timestamp / 1000.0 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                result.send_lag_s = max(result.send_lag_s, -delay)
        result.sent += 1
        yield item


def frame_stream(
    frames, config: pb.StreamConfig, result: StreamResult, fps=28.0, realtime=False, seconds=0.0, model_fps=0.0
):
    """The clip's frames, looped for ``seconds``, stamped at ``fps``; sent in real time or as fast
    as taken. With ``model_fps``, only the frames a model at that rate uses are sent, as
    ``actionrec client`` sends them."""
    count = max(len(frames), round(seconds * fps))
    stamped = [(i, round(i * 1000.0 / fps)) for i in range(count)]
    if model_fps > 0:
        gate = FrameGate(model_fps, fps)
        stamped = [(i, t) for i, t in stamped if gate.admit(t)]
    messages = (
        pb.StreamFramesRequest(frame=pb.Frame(timestamp_ms=t, encoded=frames[i % len(frames)][0])) for i, t in stamped
    )
    return paced(messages, [t for _, t in stamped], realtime, result, pb.StreamFramesRequest(config=config))


def run_streams(
    address: str, make_requests, count: int, skeletons: bool = False, deadline_s: float = 3600.0
) -> tuple[list[StreamResult], float]:
    results = [StreamResult() for _ in range(count)]
    threads = [
        threading.Thread(target=run_stream, args=(address, make_requests(r), r, skeletons, deadline_s)) for r in results
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - started


# Where StreamResult.progress keeps each count, by what rates are taken of.
_PROGRESS_COLUMN = {"frames": 1, "windows": 2}


def whole_run_rate(results: list[StreamResult], wall_s: float, what: str = "frames") -> float:
    """The same count over the whole run's wall time, start-up and drain included (from each
    stream's final statistics, the last of its reports)."""
    column = _PROGRESS_COLUMN[what]
    return sum(r.progress[-1][column] for r in results if r.final) / wall_s


def steady_rate(results: list[StreamResult], what: str = "frames") -> float:
    """Frames processed (``what="frames"``) or windows classified (``"windows"``) per second,
    all streams together, while every stream was under way: from the moment the last stream
    to start had processed something to the first final statistics. NaN when that span holds
    fewer than two reports of some stream (too short a run)."""
    column = _PROGRESS_COLUMN[what]
    started = [next((p[0] for p in r.progress if p[column] > 0), None) for r in results]
    if not results or None in started or any(r.final is None for r in results):
        return float("nan")
    begin, end = max(started), min(r.progress[-1][0] for r in results)
    total = 0.0
    for r in results:
        inside = [(p[0], p[column]) for p in r.progress if begin <= p[0] <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return float("nan")
        (t0, v0), (t1, v1) = inside[0], inside[-1]
        total += (v1 - v0) / (t1 - t0)
    return total
