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
# "upright" first undoes the camera's pitch and roll in 3-D (``_stand_upright``): a sensor mounted
# high looks down and leans every skeleton towards itself, by 11-12 degrees in NW-UCLA's training
# views, 16 in its test view, 17 in the NTU sample, 26 in MSR Action3D and 6 in MediaPipe's world
# landmarks of that same NTU clip (median over clips of the angle between the camera's up and the
# clip's mean spine direction, tests/test_upright_real_data.py).
# "bones" then gives each joint as the vector from its parent joint (the layout's tree; the root
# keeps its place): the bone stream of multi-stream skeleton models, for the same encoder.
NORMALIZATIONS: tuple[str, ...] = (
    "centre-torso",
    "centre-torso-align",
    "centre-torso-align-bones",
    "centre-torso-upright-align",
    "centre-torso-upright-align-bones",
)

# Where "up" is: the mean spine direction (pelvis -> neck) of the frames within UPRIGHT_FRAMES_DEG
# of the window's most upright one. People stand or sit upright at some moment of nearly every
# window, bending or not, so those frames show the camera's tilt and the bend is kept relative to
# them. The correction stops at MAX_UPRIGHT_DEG, the steepest camera expected, so that a window
# spent lying down or bent double is leaned back by that much at most, not stood up.
UPRIGHT_FRAMES_DEG = 10.0
MAX_UPRIGHT_DEG = 45.0
MIN_SPINE_LENGTH = 0.5


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
    if "-upright" in method and coords.shape[-1] == 3:
        out = _stand_upright(out, layout)
    if "-align" in method and coords.shape[-1] == 3:
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


def _rotation_between(u: np.ndarray, v: np.ndarray, max_angle: float) -> np.ndarray:
    """The rotation (3, 3) that turns unit vector ``u`` towards unit vector ``v`` by their angle,
    or by ``max_angle`` radians when they are further apart (Rodrigues' formula)."""
    axis = np.cross(u, v)
    sin = float(np.linalg.norm(axis))
    angle = min(float(np.arctan2(sin, float(u @ v))), max_angle)
    if sin < 1e-9:
        if u @ v > 0:  # already along v
            return np.eye(3)
        # Exactly opposite: every axis square to them will do; the one square to v and to x
        # (about x, for v = +y) keeps the turn continuous with a u a hair off -v.
        axis = np.cross(np.cross(v, [1.0, 0.0, 0.0]), v)
        if np.linalg.norm(axis) < 1e-9:
            axis = np.cross(np.cross(v, [0.0, 0.0, 1.0]), v)
        sin = float(np.linalg.norm(axis))
    k = axis / sin
    cross = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _stand_upright(coords: np.ndarray, layout: Layout) -> np.ndarray:
    """Rotate so that the spine of the most upright frames points along +y (see UPRIGHT_FRAMES_DEG)."""
    spine = (derive_joint(coords, layout, "neck") - derive_joint(coords, layout, "pelvis")).reshape(-1, 3)
    length = np.linalg.norm(spine, axis=1)
    # Torso lengths here: a spine under half the median one is a tracking glitch (a neck or pelvis
    # thrown onto the other), whose direction says nothing of the camera.
    seen = np.isfinite(length) & (length > MIN_SPINE_LENGTH)
    if not seen.any():
        return coords
    directions = spine[seen] / length[seen, None]
    tilt = np.degrees(np.arccos(np.clip(directions[:, 1], -1.0, 1.0)))
    up = directions[tilt <= tilt.min() + UPRIGHT_FRAMES_DEG].mean(axis=0)
    if np.linalg.norm(up) < 1e-6:  # frames leaning opposite ways at the same tilt: no mean direction
        up = directions[np.argmin(tilt)]
    up = up / np.linalg.norm(up)
    rotation = _rotation_between(up, np.array([0.0, 1.0, 0.0]), np.radians(MAX_UPRIGHT_DEG))
    return coords @ rotation.T.astype(np.float32)


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
