"""What sessions and calls share once the server is up: models, batchers, pose workers, store."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from service.actions import ActionStore
from service.batcher import Batcher
from service.config import ServerConfig
from service.errors import Overloaded
from service.frames import FrameLimits
from service.metrics import Metrics
from service.models import ModelRegistry
from service.workers import PoseWorkers
from skeleton.pose.estimator import MediaPipePose, PoseEstimator


class Slots:
    """At most ``limit`` at once of what holds a gRPC handler thread for long (open streams, clip
    calls); one more is refused with RESOURCE_EXHAUSTED, so the handler pool always keeps threads
    for health checks and quick calls."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._open = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def acquire(self) -> None:
        with self._lock:
            if self._open >= self.limit:
                raise Overloaded(
                    f"the server has {self._open} {self.what} open, its limit; try another replica or later"
                )
            self._open += 1

    def release(self) -> None:
        with self._lock:
            self._open -= 1
            self._idle.notify_all()

    def __enter__(self) -> Slots:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @property
    def open(self) -> int:
        return self._open

    def wait_idle(self, timeout: float) -> bool:
        with self._lock:
            return self._idle.wait_for(lambda: self._open == 0, timeout)


def mediapipe_factory(config: ServerConfig) -> Callable[[int], PoseEstimator]:
    """max people -> a fresh MediaPipe landmarker with the configured pose model."""

    def make(max_people: int) -> PoseEstimator:
        return MediaPipePose(config.pose_model, max_people=max_people)

    return make


@dataclass
class Runtime:
    config: ServerConfig
    models: ModelRegistry
    batchers: dict[str, Batcher]
    pose_workers: PoseWorkers  # streams' and clips' pose runs here
    actions: ActionStore
    metrics: Metrics
    make_estimator: Callable[[int], PoseEstimator]  # max people -> a fresh estimator for one stream
    slots: Slots  # open streams (a stream holds its slot from its first message on)
    call_slots: Slots  # ClassifyClip and EnrollAction calls in progress (each poses and classifies clips)

    @property
    def limits(self) -> FrameLimits:
        return FrameLimits(self.config.max_image_bytes, self.config.max_image_pixels)

    def close(self) -> None:
        self.pose_workers.shutdown()
        for batcher in self.batchers.values():
            batcher.close()
