"""From an admitted frame to each tracked person's joints in the model's layout.

One ``FramePoser`` per stream (or clip): it owns that stream's pose estimator (a MediaPipe
landmarker keeps tracking state) and person tracker. The model's card decides which landmarks
feed it: 2-D image landmarks (pixels of the frame as sent) for a 2-D model, 3-D world
landmarks (metres, camera axes) for a 3-D one; the shared core maps them to its layout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from service.admission import StreamLoad
from service.errors import Unavailable
from service.frames import IncomingFrame, decode_frame
from service.metrics import Metrics
from service.workers import PoseWorker, PoseWorkers
from skeleton.errors import InputError
from skeleton.pose.estimator import POSE_LAYOUT, PoseEstimator
from skeleton.pose.tracker import PersonTracker
from skeleton.windows import WindowSpec, to_model_space

log = logging.getLogger(__name__)


class PoseFailed(Unavailable):
    """The pose estimator of one stream (or clip) failed: the server's fault, not the caller's,
    and that estimator's state is lost; a new stream gets a new one."""


def start_estimator(
    workers: PoseWorkers,
    make_estimator: Callable[[int], PoseEstimator],
    max_people: int,
    load: StreamLoad | None = None,
) -> tuple[PoseWorker, PoseEstimator]:
    """A pose worker for one stream (its ``load``) or clip, and a fresh estimator made on its
    thread (so that MediaPipe's own threads share its core); give both back with
    ``stop_estimator``. A live stream no worker has room for is refused (Overloaded). An
    estimator that cannot be made (its model file gone from a mounted volume, no memory or
    threads left, the workers shutting down) is the server's failure, not the caller's: it is
    reported as PoseFailed, with the details in the server's log only."""
    worker = workers.assign(load)
    try:
        return worker, worker.call(partial(make_estimator, max_people))
    except Exception as e:
        workers.release(worker, load)
        log.error("starting a pose estimator failed", exc_info=e)
        raise PoseFailed(f"the pose estimator could not be started ({type(e).__name__}); reconnect") from None
    except BaseException:
        workers.release(worker, load)
        raise


def stop_estimator(poser: FramePoser, workers: PoseWorkers, worker: PoseWorker, load: StreamLoad | None = None) -> None:
    """Close what ``start_estimator`` gave a stream or clip: its estimator, and its share of the
    worker, given back whatever closing raises (logged: this runs when the lane closes, on the
    worker or at shutdown, where nobody up the call can act on it)."""
    try:
        poser.close()
    except BaseException as e:
        log.error("closing a pose estimator failed", exc_info=e)
    finally:
        workers.release(worker, load)


def pose_coordinate_space(spec: WindowSpec) -> str:
    """The coordinate space of the landmarks that feed a model with this window."""
    return "image" if spec.dims == 2 else "camera"


@dataclass(frozen=True)
class PosedFrame:
    timestamp_ms: int
    track_ids: list[int]
    image_xy: np.ndarray  # (P, 33, 2) pixels of the frame as sent
    visibility: np.ndarray  # (P, 33)
    model_coords: np.ndarray  # (P, joints, dims) in the model's layout
    pose_ms: float  # decoding and pose estimation of this frame

    def people(self) -> dict[int, np.ndarray]:
        return dict(zip(self.track_ids, self.model_coords))


class FramePoser:
    def __init__(self, estimator: PoseEstimator, spec: WindowSpec, pose_width: int, metrics: Metrics | None = None):
        self.estimator = estimator
        self.spec = spec
        self.pose_width = pose_width
        self.tracker = PersonTracker()
        self._metrics = metrics

    def pose(self, frame: IncomingFrame) -> PosedFrame:
        started = time.monotonic()
        small = decode_frame(frame, self.pose_width)
        decoded = time.monotonic()
        # Landmarks in pixels of the frame as sent, whatever size it was decoded and posed at.
        people = self._estimate(small, frame.timestamp_ms, (frame.width, frame.height))
        posed = time.monotonic()
        ids = self.tracker.update([p.image_xy for p in people], [p.visibility for p in people], frame.timestamp_ms)
        count = len(people)
        image_xy = np.array([p.image_xy for p in people], dtype=np.float32).reshape(count, 33, 2)
        visibility = np.array([p.visibility for p in people], dtype=np.float32).reshape(count, 33)
        if self.spec.dims == 2:
            source = image_xy
        else:
            source = np.array([p.world_xyz for p in people], dtype=np.float32).reshape(count, 33, 3)
        model_coords, _ = to_model_space(source, None, POSE_LAYOUT, self.spec)
        if self._metrics is not None:
            stage = self._metrics.stage_seconds
            stage.labels(stage="decode").observe(decoded - started)
            stage.labels(stage="pose").observe(posed - decoded)
        return PosedFrame(frame.timestamp_ms, ids, image_xy, visibility, model_coords, (posed - started) * 1000.0)

    def _estimate(self, rgb: np.ndarray, timestamp_ms: int, frame_size: tuple[int, int]):
        try:
            return self.estimator.estimate(rgb, timestamp_ms, frame_size)
        except InputError:
            raise
        except BaseException as e:
            # Whatever the backend raises (even what is not an Exception) ends this stream with a
            # clear status: it must not escape into the pose worker, whose thread other streams share.
            log.error("pose estimation failed", exc_info=e)
            raise PoseFailed(f"pose estimation failed on this stream ({type(e).__name__}); reconnect") from e

    def close(self) -> None:
        self.estimator.close()
