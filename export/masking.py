"""CFSEM's coarse-to-fine spatiotemporal masking and temporal shuffling.

Three granularities of masking hide joints over a random stretch of the window:

* body-level: a random share of all joints, anywhere on the body (coarse);
* part-level: one whole body part: the trunk, an arm or a leg;
* hand-level: both hands (the joints past the wrists; the wrists where a layout has no
  hand joints), which carry the fine movements.

Why a schedule: masking from the first epoch, or masking every view, keeps the encoder from
learning anything (for arm gestures, hiding both arms removes the very signal). So masking
starts only after a warm-up, its probability ramps up, and it moves from coarse to fine:
early on the encoder learns the whole body's motion under random occlusion, later it must
explain a missing part or the hands from the rest. Each view is masked independently, so
the loss often compares a masked view with an intact one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from skeleton.errors import InputError
from skeleton.layouts import PART_NAMES, Layout

GRANULARITIES = ("body", "part", "hand")
# Weights of (body, part, hand) at the start, middle and end of the masking period.
_SCHEDULE = np.array([[0.7, 0.3, 0.0], [0.35, 0.45, 0.2], [0.2, 0.4, 0.4]])


@dataclass(frozen=True)
class MaskingConfig:
    body: bool = True
    part: bool = True
    hand: bool = True
    shuffle: bool = True
    max_probability: float = 0.5  # chance that a view is masked, once the ramp is over
    warmup_fraction: float = 0.15  # share of epochs with no masking at all
    ramp_fraction: float = 0.35  # share of epochs over which the probability ramps up
    body_ratio: tuple[float, float] = (0.2, 0.5)
    min_span: float = 0.5  # masks cover at least this share of the window's frames
    shuffle_probability: float = 0.2
    shuffle_segments: int = 4

    def __post_init__(self) -> None:
        for key in ("max_probability", "warmup_fraction", "min_span", "shuffle_probability"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise InputError(f"masking.{key} is a share, from 0 to 1, not {getattr(self, key)}")
        if self.ramp_fraction < 0.0:
            raise InputError(f"masking.ramp_fraction must be 0 or more, not {self.ramp_fraction}")
        # A range of shares of the joints that body-level masking hides, drawn uniformly.
        if len(self.body_ratio) != 2 or not 0.0 <= self.body_ratio[0] <= self.body_ratio[1] <= 1.0:
            raise InputError(
                f"masking.body_ratio is [low, high], shares with 0 <= low <= high <= 1, not {list(self.body_ratio)}"
            )
        if self.shuffle_segments < 1:
            raise InputError(f"masking.shuffle_segments must be at least 1, not {self.shuffle_segments}")

    @property
    def granularities(self) -> tuple[str, ...]:
        return tuple(g for g in GRANULARITIES if getattr(self, g))


def masking_state(config: MaskingConfig, progress: float) -> tuple[float, np.ndarray]:
    """(probability that a view is masked, weights of the enabled granularities) at
    ``progress`` in [0, 1] of training."""
    enabled = np.array([getattr(config, g) for g in GRANULARITIES], dtype=float)
    if not enabled.any() or progress < config.warmup_fraction:
        return 0.0, enabled
    # No ramp: the whole probability from the first step after the warm-up (that step included).
    ramp = min(1.0, (progress - config.warmup_fraction) / config.ramp_fraction) if config.ramp_fraction else 1.0
    phase = (progress - config.warmup_fraction) / max(1.0 - config.warmup_fraction, 1e-9)
    position = phase * (len(_SCHEDULE) - 1)
    low = int(min(np.floor(position), len(_SCHEDULE) - 2))
    weights = (1 - (position - low)) * _SCHEDULE[low] + (position - low) * _SCHEDULE[low + 1]
    weights = weights * enabled
    if weights.sum() == 0:  # only a granularity whose scheduled weight is zero right now
        weights = enabled
    return config.max_probability * ramp, weights / weights.sum()


class CoarseToFineMasker:
    """Draws joint masks (N, T, J) of ones and zeros, and shuffles time segments."""

    def __init__(self, config: MaskingConfig, layout: Layout) -> None:
        self.config = config
        self.joints = layout.num_joints
        parts = layout.parts
        self.parts = [np.asarray(parts[name]) for name in PART_NAMES if parts[name]]
        self.hands = np.asarray(layout.hand_joints)

    def masks(self, n: int, length: int, progress: float, rng: np.random.Generator) -> torch.Tensor:
        probability, weights = masking_state(self.config, progress)
        mask = np.ones((n, length, self.joints), dtype=np.float32)
        for i in np.flatnonzero(rng.random(n) < probability):
            granularity = GRANULARITIES[rng.choice(len(GRANULARITIES), p=weights)]
            if granularity == "body":
                count = max(1, int(round(rng.uniform(*self.config.body_ratio) * self.joints)))
                joints = rng.choice(self.joints, size=count, replace=False)
            elif granularity == "part":
                joints = self.parts[rng.integers(len(self.parts))]
            else:
                joints = self.hands
            span = int(rng.integers(int(np.ceil(self.config.min_span * length)), length + 1))
            start = int(rng.integers(0, length - span + 1))
            mask[i, start : start + span, joints] = 0.0
        return torch.from_numpy(mask)

    def shuffle(self, windows: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Permute the time segments of some windows (N, T, J, C) in place of the originals."""
        if not self.config.shuffle:
            return windows
        segments = self.config.shuffle_segments
        out = windows.clone()
        bounds = np.linspace(0, windows.shape[1], segments + 1).astype(int)
        for i in np.flatnonzero(rng.random(windows.shape[0]) < self.config.shuffle_probability):
            order = rng.permutation(segments)
            out[i] = torch.cat([windows[i, bounds[k] : bounds[k + 1]] for k in order])
        return out
