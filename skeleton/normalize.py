"""Normalisation of skeleton sequences: the one place that decides what a model sees.

Training and serving both call ``normalize`` with the id stored in the model's metadata, so
the two cannot drift apart. A normalised sequence is y-up, centred on the mean pelvis of all
people and frames, and measured in torso lengths (pelvis to neck, median over the sequence),
which removes the camera distance, image size and the person's build.
"""

from __future__ import annotations

import numpy as np

from skeleton.errors import InputError
from skeleton.layouts import Layout
from skeleton.mapping import derive_joint

# Ids written into model metadata. "align" also turns a 3-D sequence about the vertical axis so
# that the person's left (right hip -> left hip) points along +x in the first frame they are seen:
# the person then faces +z, whatever the camera's viewpoint.
# "bones" then gives each joint as the vector from its parent joint (the layout's tree; the root
# keeps its place): the bone stream of multi-stream skeleton models, for the same encoder.
NORMALIZATIONS: tuple[str, ...] = ("centre-torso", "centre-torso-align", "centre-torso-align-bones")


def to_y_up(coords: np.ndarray, coordinate_space: str) -> np.ndarray:
    """Image coordinates grow downwards; every other space here is already y-up."""
    if coordinate_space != "image":
        return coords
    flipped = coords.copy()
    flipped[..., 1] = -flipped[..., 1]
    return flipped


def _nanmedian_or(values: np.ndarray, default: float) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else default


def _body_spread(coords: np.ndarray) -> float:
    """The median over frames of the joints' RMS distance from their mean (NaN: none): a body
    size for a window whose torso is never seen (hips out of view or not annotated). In the
    median frame it is the torso's length within 20 %: torso / spread is 1.00 on Penn Action,
    0.83 on NW-UCLA, 0.84 on MSR Action3D."""
    present = np.isfinite(coords).all(axis=-1)  # (T, P, J)
    seen = present.any(axis=-1)
    if not seen.any():
        return float("nan")
    frames = coords[seen]  # (N, J, C)
    with np.errstate(invalid="ignore"):
        centre = np.nanmean(frames, axis=1, keepdims=True)
        spread = np.sqrt(np.nanmean(np.sum((frames - centre) ** 2, axis=-1), axis=1))
    return _nanmedian_or(spread, float("nan"))


def normalize(coords: np.ndarray, layout: Layout, coordinate_space: str, method: str = "centre-torso") -> np.ndarray:
    """Normalise ``coords`` (T, P, J, C) of one sequence or window; NaN stays NaN.

    A sequence with no visible pelvis is centred on its joints' mean, and one whose torso is
    never seen is scaled by the spread of its joints (a torso of 1 only when there is nothing
    to measure), never with NaN or inf introduced.
    """
    if method not in NORMALIZATIONS:
        raise InputError(f"unknown normalisation {method!r}; known: {', '.join(NORMALIZATIONS)}")
    coords = to_y_up(np.asarray(coords, dtype=np.float32), coordinate_space)
    pelvis = derive_joint(coords, layout, "pelvis")  # (T, P, C)
    neck = derive_joint(coords, layout, "neck")
    centre = np.nanmean(pelvis.reshape(-1, coords.shape[-1]), axis=0) if np.isfinite(pelvis).any() else None
    if centre is None:
        centre = np.nanmean(coords.reshape(-1, coords.shape[-1]), axis=0) if np.isfinite(coords).any() else 0.0
    torso = _nanmedian_or(np.linalg.norm(neck - pelvis, axis=-1).ravel(), float("nan"))
    if not torso > 1e-6:  # in pixels, a torso of 1 would blow a window up a hundredfold
        torso = _body_spread(coords)
    scale = torso if torso > 1e-6 else 1.0
    out = (coords - centre) / scale
    if method.startswith("centre-torso-align") and coords.shape[-1] == 3:
        out = _face_forward(out, layout)
    if method.endswith("-bones"):
        out = _bone_vectors(out, layout)
    return out.astype(np.float32)


def _bone_vectors(coords: np.ndarray, layout: Layout) -> np.ndarray:
    """Each joint as its offset from its parent (NaN where either is missing); the root as it is."""
    out = coords.copy()
    for child, parent in layout.bones:
        out[..., layout.index(child), :] = coords[..., layout.index(child), :] - coords[..., layout.index(parent), :]
    return out


def _face_forward(coords: np.ndarray, layout: Layout) -> np.ndarray:
    """Rotate about y so the first seen hip line (right -> left) points along +x."""
    hips = derive_joint(coords, layout, "left_hip") - derive_joint(coords, layout, "right_hip")
    flat = hips.reshape(-1, 3)
    seen = np.flatnonzero(np.isfinite(flat).all(axis=1) & (np.hypot(flat[:, 0], flat[:, 2]) > 1e-6))
    if seen.size == 0:
        return coords
    x, z = flat[seen[0], 0], flat[seen[0], 2]
    angle = np.arctan2(z, x)  # rotating by +angle about y takes (x, z) onto +x
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=np.float32)
    return coords @ rotation.T
