"""Keeping each person's identity across frames, so that a track is one person's motion.

Pose estimators report the people of a frame in no stable order. The tracker matches them to
the tracks of recent frames by the mean distance between their visible joints, measured in
units of the track's size (so near and far people are treated alike), with the Hungarian
method for a globally best assignment. A person matching no track starts a new one; a track
unseen for ``max_age_ms`` ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class _Track:
    track_id: int
    joints: np.ndarray  # (J, 2) last seen position
    visible: np.ndarray  # (J,) bool
    last_seen_ms: float


@dataclass
class PersonTracker:
    """Assigns stable track ids to the per-frame detections of one stream."""

    max_distance: float = 0.5  # in person sizes (bounding-box diagonal)
    max_age_ms: float = 1000.0
    min_visibility: float = 0.3
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0

    def update(self, joints: list[np.ndarray], visibility: list[np.ndarray], timestamp_ms: float) -> list[int]:
        """Track ids for the people of this frame (``joints[i]``: (J, 2) image positions)."""
        self._tracks = [t for t in self._tracks if timestamp_ms - t.last_seen_ms <= self.max_age_ms]
        visible = [v >= self.min_visibility for v in visibility]
        ids = [-1] * len(joints)
        if self._tracks and joints:
            cost = np.array([[self._distance(j, v, t) for t in self._tracks] for j, v in zip(joints, visible)])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] <= self.max_distance:
                    ids[r] = self._tracks[c].track_id
                    self._tracks[c].joints, self._tracks[c].visible = joints[r], visible[r]
                    self._tracks[c].last_seen_ms = timestamp_ms
        for i, track_id in enumerate(ids):
            if track_id < 0:
                ids[i] = self._next_id
                self._tracks.append(_Track(self._next_id, joints[i], visible[i], timestamp_ms))
                self._next_id += 1
        return ids

    @staticmethod
    def _distance(joints: np.ndarray, visible: np.ndarray, track: _Track) -> float:
        both = visible & track.visible
        if both.sum() < 3:
            both = np.ones_like(visible)
        seen = track.joints[track.visible] if track.visible.any() else track.joints
        size = float(np.linalg.norm(seen.max(axis=0) - seen.min(axis=0))) or 1.0
        return float(np.linalg.norm(joints[both] - track.joints[both], axis=-1).mean()) / size

    @property
    def active_tracks(self) -> int:
        return len(self._tracks)
