"""Prometheus metrics of one server, on their own registry (two servers in one process, as in
the tests, do not share counters)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Stage latencies span a sub-millisecond decode to a multi-second drain.
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_received = Counter(
            "actionrec_frames_received", "Frames (images or skeletons) that entered a stream", ["kind"], registry=r
        )
        self.frames_processed = Counter(
            "actionrec_frames_processed", "Frames posed (images) or taken (skeletons)", ["kind"], registry=r
        )
        self.frames_skipped = Counter(
            "actionrec_frames_skipped", "Frames beyond the model's frame rate, never decoded (by design)", registry=r
        )
        self.frames_dropped = Counter(
            "actionrec_frames_dropped", "Frames dropped, by reason (docs/service.md)", ["reason"], registry=r
        )
        self.windows_classified = Counter("actionrec_windows_classified", "Windows classified", ["model"], registry=r)
        self.windows_dropped = Counter("actionrec_windows_dropped", "Windows not classified", ["reason"], registry=r)
        self.poses_dropped = Counter(
            "actionrec_poses_dropped", "Pose messages (include_poses) not sent: the client read too slowly", registry=r
        )
        self.active_streams = Gauge("actionrec_active_streams", "Open streams", ["kind"], registry=r)
        self.stage_seconds = Histogram(
            "actionrec_stage_seconds",
            "Time per stage: queued (a frame waiting for a pose worker), decode, pose, window (tracking and"
            " windowing), batch_wait, classify",
            ["stage"],
            buckets=_SECONDS,
            registry=r,
        )
        self.event_latency = Histogram(
            "actionrec_event_latency_seconds",
            "From a window's last frame arriving to its event leaving",
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_size = Histogram(
            "actionrec_batch_size", "Windows per model call", ["model"], buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.rpcs = Counter("actionrec_rpcs", "Finished calls by method and status", ["method", "code"], registry=r)
        self.streams_refused = Counter(
            "actionrec_streams_refused", "Camera streams refused at opening: no pose worker had room", registry=r
        )
        self.streams_shed = Counter(
            "actionrec_streams_shed", "Camera streams ended because their pose worker was over capacity", registry=r
        )
        self.pose_load = Gauge(
            "actionrec_pose_load",
            "Cores of pose time a worker's streams want (service.admission)",
            ["worker"],
            registry=r,
        )

    def observe_batch(self, model: str, size: int, waited_s: float, started: float) -> None:
        self.batch_size.labels(model=model).observe(size)
        self.stage_seconds.labels(stage="batch_wait").observe(waited_s)
        self.stage_seconds.labels(stage="classify").observe(time.monotonic() - started)
        self.windows_classified.labels(model=model).inc(size)
