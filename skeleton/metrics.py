"""Agreement between two skeletons of the same people: PCK, pixel error, aligned MPJPE.

Used to measure how far MediaPipe skeletons are from Kinect ones (and later, from any other
source), which is where a left/right or axis mix-up in a layout shows first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Alignment:
    """``target ~ scale * source @ rotation.T + translation`` (a proper rotation, no mirror)."""

    rotation: np.ndarray
    scale: float
    translation: np.ndarray

    @property
    def angle_degrees(self) -> float:
        return float(np.degrees(np.arccos(np.clip((np.trace(self.rotation) - 1) / 2, -1.0, 1.0))))

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def similarity_alignment(source: np.ndarray, target: np.ndarray) -> Alignment:
    """Least-squares similarity transform taking ``source`` (J, 3) onto ``target`` (J, 3).

    The rotation is forced to be proper (det +1): allowing a reflection would hide exactly
    the left/right and handedness errors this is meant to expose.
    """
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(t.T @ s)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    correction = np.diag([1.0, 1.0, d])
    rotation = u @ correction @ vt
    scale = float(np.trace(np.diag(sigma) @ correction) / max((s**2).sum(), 1e-12))
    return Alignment(rotation, scale, mu_t - scale * mu_s @ rotation.T)


def pck(predicted: np.ndarray, reference: np.ndarray, reference_size: np.ndarray, fraction: float = 0.2) -> float:
    """Share of joints within ``fraction`` of the per-frame reference size (T, J, 2) vs (T,)."""
    errors = np.linalg.norm(predicted - reference, axis=-1)
    valid = np.isfinite(errors)
    return float((errors[valid] <= fraction * np.broadcast_to(reference_size[:, None], errors.shape)[valid]).mean())


def aligned_mpjpe(predicted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, list[Alignment]]:
    """Per-frame mean joint error after per-frame similarity alignment, (T,), and the alignments."""
    errors, alignments = [], []
    for p, r in zip(predicted, reference):
        ok = np.isfinite(p).all(axis=1) & np.isfinite(r).all(axis=1)
        if ok.sum() < 4:
            errors.append(np.nan)
            continue
        alignment = similarity_alignment(p[ok], r[ok])
        alignments.append(alignment)
        errors.append(float(np.linalg.norm(alignment.apply(p[ok]) - r[ok], axis=-1).mean()))
    return np.asarray(errors), alignments
