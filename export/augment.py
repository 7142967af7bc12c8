"""Spatial augmentations of prepared windows (batched, torch): the usual skeleton views.

Windows are normalised (centred, y up, torso-scaled), so a rotation about the vertical axis,
a small tilt, per-axis scaling and shear are all linear maps of the joints, one matrix per
sample. Missing joints are zeros and stay zeros.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _rotation_3d(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos, torch.sin
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)
    r_yaw = torch.stack([c(yaw), zero, s(yaw), zero, one, zero, -s(yaw), zero, c(yaw)], -1).view(-1, 3, 3)
    r_pitch = torch.stack([one, zero, zero, zero, c(pitch), -s(pitch), zero, s(pitch), c(pitch)], -1).view(-1, 3, 3)
    r_roll = torch.stack([c(roll), -s(roll), zero, s(roll), c(roll), zero, zero, zero, one], -1).view(-1, 3, 3)
    return r_yaw @ r_pitch @ r_roll


def random_linear_views(
    windows: torch.Tensor,
    generator: torch.Generator | None = None,
    max_yaw_deg: float = 45.0,
    max_tilt_deg: float = 10.0,
    shear: float = 0.2,
    scale: float = 0.1,
) -> torch.Tensor:
    """Rotate, shear and scale each window (N, T, J, C) by its own random matrix."""
    n, dims = windows.shape[0], windows.shape[-1]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator) * (high - low) + low

    if dims == 3:
        rotation = _rotation_3d(
            uniform(-1, 1, n) * math.radians(max_yaw_deg),
            uniform(-1, 1, n) * math.radians(max_tilt_deg),
            uniform(-1, 1, n) * math.radians(max_tilt_deg),
        )
    else:  # 2-D: an in-plane rotation only (the camera's roll)
        angle = uniform(-1, 1, n) * math.radians(max_tilt_deg + 5)
        rotation = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], -1)
        rotation = rotation.view(n, 2, 2)
    shearing = torch.eye(dims).repeat(n, 1, 1) + uniform(-shear, shear, n, dims, dims) * (1 - torch.eye(dims))
    scaling = torch.diag_embed(uniform(1 - scale, 1 + scale, n, dims))
    matrix = (rotation @ shearing @ scaling).to(windows.dtype)
    return torch.einsum("ntjc,ndc->ntjd", windows, matrix)


def mirror(windows: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Windows (N, T, J, C) seen in a mirror: each left joint swapped with its right one
    (``permutation``, from ``Layout.mirror_permutation``) and x negated. Windows are centred on
    the body, so x = 0 is its middle; missing joints (zeros) stay zero. Traceable to ONNX."""
    swapped = windows.index_select(2, permutation)
    return torch.cat([-swapped[..., :1], swapped[..., 1:]], dim=-1)


def random_mirror(
    windows: torch.Tensor, permutation: torch.Tensor, probability: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each window (N, T, J, C) with ``probability``: a right-handed throw becomes a
    left-handed one, the same action."""
    if probability <= 0:
        return windows
    chosen = torch.rand(windows.shape[0], generator=generator) < probability
    mirrored = mirror(windows, permutation)
    return torch.where(chosen.view(-1, 1, 1, 1), mirrored, windows)


def random_mixup(
    windows: torch.Tensor, alpha: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup: each window (N, T, J, C) blended with another window of the batch.

    Returns the blended windows, the partner of each (an index into the batch) and the weight
    of the window's own label, drawn from Beta(alpha, alpha) and folded to at least one half so
    that each blend stays mostly its own window (whose label train accuracy counts). The loss
    weighs the two labels as the windows were weighed.
    """
    n = windows.shape[0]
    drawn = rng.beta(alpha, alpha, n)
    weight = torch.from_numpy(np.maximum(drawn, 1 - drawn)).to(windows.dtype)
    partner = torch.from_numpy(rng.permutation(n))
    share = weight.view(-1, 1, 1, 1)
    return share * windows + (1 - share) * windows[partner], partner, weight
