"""Keeping each person's identity across frames, so that a track is one person's motion.

Pose estimators report the people of a frame in no stable order. The tracker matches them to
the tracks of recent frames by the mean distance between their visible joints, measured in
units of the track's size (so near and far people are treated alike), with the Hungarian
method for a globally best assignment. A person matching no track starts a new one; a track
unseen for ``max_age_ms`` ends, and past ``max_tracks`` the least recently seen end early: people
who match nothing, frame after frame (a noisy detector, skeletons sent a millisecond apart),
would otherwise make every frame's matching cost grow with them (15,000 tracks and 320 ms a
frame for 16 such people a frame at 1 ms apart).

It runs on every frame of every stream, so the distances of all people to all tracks are one
array computation, with each track's size worked out once, not once per pair.

Skeletons from a depth sensor (``lone_person_stays``) are every body it tracks in a frame, so one
body in a frame right after a frame of one body (within ``LONE_MAX_GAP_MS``) is the same person
when it moved up to ``LONE_MAX_JUMP`` body sizes and is near no other track: a Kinect's fit can jump
by over half the body's size from one frame to the next (36 of NW-UCLA's 1484 clips), which the
distance rule alone takes for a new person (33 of the 36 stay on one track with this rule; the other
three jump further). A pose estimator may find one of two close people a frame and the other in the
next (two people wrestling), so its tracker goes by distance alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

# Fewer joints seen in both a person and a track than this, and all joints are compared.
MIN_COMMON_JOINTS = 3
# The cost of a pair with no distance (a compared joint is NaN): never a match.
NO_MATCH = 1e9
# A lone body "right after" a frame of one body: within this long (a frame or a few of a sensor's
# 15-30 fps), and within this many body sizes of where it was (NW-UCLA's and MSR Action3D's jumps:
# 0.83 body sizes at the median, 1.36 at the 90th percentile).
LONE_MAX_GAP_MS = 250.0
LONE_MAX_JUMP = 2.0
# Tracks kept for each person a frame may hold: everyone in view plus as many again who just left
# or were not matched. Stream windowers keep as many (service.windowing).
TRACKS_PER_PERSON = 4


def _size(joints: np.ndarray, visible: np.ndarray) -> float:
    """The diagonal of the bounding box of the visible joints (all when none is); 1 when 0."""
    seen = joints[visible] if visible.any() else joints
    return float(np.linalg.norm(seen.max(axis=0) - seen.min(axis=0))) or 1.0


@dataclass
class _Track:
    track_id: int
    joints: np.ndarray  # (J, D) last seen position
    visible: np.ndarray  # (J,) bool
    last_seen_ms: float

    def seen(self, joints: np.ndarray, visible: np.ndarray, timestamp_ms: float) -> None:
        self.joints, self.visible, self.last_seen_ms = joints, visible, timestamp_ms


@dataclass
class PersonTracker:
    """Assigns stable track ids to the per-frame detections of one stream."""

    max_distance: float = 0.5  # in person sizes (bounding-box diagonal)
    max_age_ms: float = 1000.0
    min_visibility: float = 0.3
    max_tracks: int = TRACKS_PER_PERSON * 16
    lone_person_stays: bool = False
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0
    _lone_id: int | None = None  # the track of the last frame's one person, when it held one

    def update(self, joints: list[np.ndarray], visibility: list[np.ndarray], timestamp_ms: float) -> list[int]:
        """Track ids for the people of this frame (``joints[i]``: (J, D) positions; a frame with
        nobody in it is an update too)."""
        self._tracks = [t for t in self._tracks if timestamp_ms - t.last_seen_ms <= self.max_age_ms]
        visible = [np.asarray(v) >= self.min_visibility for v in visibility]
        ids = [-1] * len(joints)
        cost = self._costs(np.stack(joints), np.stack(visible)) if self._tracks and joints else None
        if cost is not None:
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] <= self.max_distance:
                    ids[r] = self._tracks[c].track_id
                    self._tracks[c].seen(joints[r], visible[r], timestamp_ms)
        if self.lone_person_stays and ids == [-1] and cost is not None:
            for c, track in enumerate(self._tracks):
                just_before = track.track_id == self._lone_id and timestamp_ms - track.last_seen_ms <= LONE_MAX_GAP_MS
                if just_before and cost[0, c] <= LONE_MAX_JUMP:
                    ids[0] = track.track_id
                    track.seen(joints[0], visible[0], timestamp_ms)
        for i, track_id in enumerate(ids):
            if track_id < 0:
                ids[i] = self._next_id
                self._tracks.append(_Track(self._next_id, joints[i], visible[i], timestamp_ms))
                self._next_id += 1
        if len(self._tracks) > max(self.max_tracks, len(joints)):
            # this frame's people were seen last, so they are never the ones to go
            self._tracks.sort(key=lambda t: t.last_seen_ms)
            del self._tracks[: len(self._tracks) - max(self.max_tracks, len(joints))]
        self._lone_id = ids[0] if len(joints) == 1 else None
        return ids

    def _costs(self, joints: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """(people, tracks): the mean distance of the joints seen in both, in track sizes."""
        track_joints = np.stack([t.joints for t in self._tracks])  # (T, J, D)
        track_visible = np.stack([t.visible for t in self._tracks])  # (T, J)
        sizes = np.array([_size(t.joints, t.visible) for t in self._tracks])
        both = visible[:, None, :] & track_visible[None, :, :]  # (P, T, J)
        both |= both.sum(axis=-1, keepdims=True) < MIN_COMMON_JOINTS
        apart = np.linalg.norm(joints[:, None] - track_joints[None], axis=-1)  # (P, T, J)
        # where(), not a product: a joint left out may be NaN, and must not count.
        cost = np.where(both, apart, 0.0).sum(axis=-1) / both.sum(axis=-1) / sizes
        return np.where(np.isfinite(cost), cost, NO_MATCH)

    @property
    def active_tracks(self) -> int:
        return len(self._tracks)
