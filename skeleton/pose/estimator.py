"""The pose interface and its MediaPipe backend.

``PoseEstimator`` is what the rest of the project depends on: an RGB frame and its timestamp
in, the people in it out. ``MediaPipePose`` implements it with the MediaPipe Tasks
``PoseLandmarker`` in VIDEO mode (it tracks between frames, which is cheaper than detecting on
every frame). One instance per video stream: the landmarker keeps tracking state, and its
timestamps must increase strictly, or MediaPipe's graph fails for good. So this class refuses
a non-increasing timestamp itself, with a clear error, before MediaPipe sees it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from skeleton.errors import InputError

# MediaPipe's C++ side logs start-up chatter to stderr; keep warnings and errors only.
os.environ.setdefault("GLOG_minloglevel", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POSE_MODEL = Path(os.environ.get("ACTIONREC_POSE_MODEL", PROJECT_ROOT / "models" / "pose_landmarker_full.task"))
POSE_LAYOUT = "mediapipe33"
# MediaPipe's pose graph aborts the whole process (an OpenCV assertion in C++: SIGABRT, not an
# exception) on an image with a side of 32767 pixels or more. Images with a side over this are
# refused before it sees them: far beyond any camera's (8K is 7680 x 4320).
MAX_IMAGE_SIDE = 16384


@dataclass(frozen=True)
class PersonPose:
    """One person in one frame, in the ``mediapipe33`` layout.

    ``image_xy`` is in pixels of the original frame (y down). ``world_xyz`` is in metres
    around the hip centre, turned into the Kinect camera convention used by the 3-D datasets
    (x to the camera's left, y up, z away from the camera), so that MediaPipe and Kinect
    skeletons are directly comparable.
    """

    image_xy: np.ndarray  # (33, 2)
    world_xyz: np.ndarray  # (33, 3)
    visibility: np.ndarray  # (33,)


def mirror_image_x(person: PersonPose, width: int) -> PersonPose:
    """The same person with image x mirrored (``x -> width - x``); sides and 3-D are unchanged."""
    image_xy = person.image_xy.copy()
    image_xy[:, 0] = width - image_xy[:, 0]
    return PersonPose(image_xy=image_xy, world_xyz=person.world_xyz, visibility=person.visibility)


class PoseEstimator(Protocol):
    def estimate(
        self, rgb: np.ndarray, timestamp_ms: int, frame_size: tuple[int, int] | None = None
    ) -> list[PersonPose]: ...

    def close(self) -> None: ...


# MediaPipe's world frame is x right, y down, z away; a half turn about z gives the Kinect one.
_MEDIAPIPE_WORLD_TO_CAMERA = np.array([-1.0, -1.0, 1.0], dtype=np.float32)


class MediaPipePose:
    """MediaPipe ``PoseLandmarker`` (Tasks API, VIDEO mode), up to ``max_people`` a frame."""

    def __init__(self, model_path: Path | None = None, max_people: int = 4, min_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(model_path or DEFAULT_POSE_MODEL)
        if not path.is_file():
            raise InputError(f"{path}: pose model not found")
        if max_people < 1:
            raise InputError(f"max people must be at least 1, not {max_people}")
        options = vision.PoseLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO,
            num_poses=max_people,
            min_pose_detection_confidence=min_confidence,
            min_pose_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )
        try:
            self._landmarker = vision.PoseLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as e:
            raise InputError(f"{path}: not a usable MediaPipe pose landmarker model ({e})") from None
        self._last_timestamp_ms: int | None = None

    def estimate(
        self, rgb: np.ndarray, timestamp_ms: int, frame_size: tuple[int, int] | None = None
    ) -> list[PersonPose]:
        """The people in ``rgb``; image coordinates in pixels of ``frame_size`` (width, height),
        the original frame's size when ``rgb`` was shrunk for speed (default: ``rgb``'s own)."""
        import mediapipe as mp

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if max(rgb.shape[:2]) > MAX_IMAGE_SIDE:
            raise InputError(f"an image of {rgb.shape[1]}x{rgb.shape[0]} pixels has a side over {MAX_IMAGE_SIDE}")
        timestamp_ms = int(timestamp_ms)
        if self._last_timestamp_ms is not None and timestamp_ms <= self._last_timestamp_ms:
            raise InputError(
                f"timestamp {timestamp_ms} ms does not follow the previous frame's {self._last_timestamp_ms} ms"
            )
        self._last_timestamp_ms = timestamp_ms
        width, height = frame_size or (rgb.shape[1], rgb.shape[0])
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect_for_video(image, timestamp_ms)
        people = []
        for landmarks, world in zip(result.pose_landmarks, result.pose_world_landmarks):
            normalised = np.array([(p.x, p.y, p.visibility) for p in landmarks], dtype=np.float32)
            people.append(
                PersonPose(
                    image_xy=normalised[:, :2] * np.array([width, height], dtype=np.float32),
                    world_xyz=np.array([(p.x, p.y, p.z) for p in world], dtype=np.float32) * _MEDIAPIPE_WORLD_TO_CAMERA,
                    visibility=normalised[:, 2],
                )
            )
        return people

    def close(self) -> None:
        # MediaPipe's own __del__ fails at interpreter exit; closing here avoids it.
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> MediaPipePose:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
