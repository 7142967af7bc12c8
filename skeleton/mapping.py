"""Mapping skeletons between joint layouts.

A target joint is taken from the source joint of the same name when there is one; otherwise it
is derived by the first rule below whose ingredients the source has (rules may build on other
derived joints). Each rule is a weighted sum of joints, so a whole mapping is one matrix and
applying it is one ``einsum``, the same code for a training set and for a live window.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from skeleton.errors import InputError
from skeleton.layouts import Layout, get_layout


def _both_sides(rules: dict[str, list[dict[str, float]]]) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = {}
    for name, options in rules.items():
        for side in ("left", "right"):
            out[name.format(s=side)] = [{joint.format(s=side): w for joint, w in option.items()} for option in options]
    return out


# Why these weights: Kinect's hip centre and shoulder centre sit at the middle of the hips and
# shoulders; its spine joint is half-way between them (checked on MSR Action3D and NW-UCLA);
# a head centre is best approximated by the middle of the ears. Hands missing from a layout are
# extrapolated a fifth of a forearm past the wrist (roughly the palm centre).
DERIVATION_RULES: dict[str, list[dict[str, float]]] = {
    "pelvis": [{"left_hip": 0.5, "right_hip": 0.5}],
    "neck": [{"left_shoulder": 0.5, "right_shoulder": 0.5}],
    "spine": [{"pelvis": 0.5, "neck": 0.5}],
    "chest": [{"spine": 0.5, "neck": 0.5}],
    "upper_chest": [{"chest": 0.5, "neck": 0.5}],
    "upper_neck": [{"neck": 0.5, "head": 0.5}],
    "head": [{"left_ear": 0.5, "right_ear": 0.5}, {"nose": 1.0}],
    "nose": [{"head": 1.0}],
    **_both_sides(
        {
            "{s}_hand": [
                {"{s}_index": 0.5, "{s}_pinky": 0.5},
                {"{s}_wrist": 1.2, "{s}_elbow": -0.2},
            ],
            "{s}_hand_tip": [{"{s}_index": 1.0}],
            "{s}_foot": [{"{s}_foot_index": 1.0}],
            "{s}_shoulder": [{"{s}_clavicle": 1.0}],
        }
    ),
}


@dataclass(frozen=True)
class JointMapping:
    """``weights[d, s]``: how much source joint ``s`` contributes to target joint ``d``."""

    source: Layout
    target: Layout
    weights: np.ndarray

    def apply(self, coords: np.ndarray, confidence: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Map ``coords`` (..., J_src, C) and ``confidence`` (..., J_src) to the target layout.

        A target joint is missing (NaN) where any joint it is made of is missing, and its
        confidence is the lowest of theirs.
        """
        used = self.weights != 0
        missing = np.isnan(coords).any(axis=-1)
        filled = np.where(np.isnan(coords), 0.0, coords)
        mapped = np.einsum("ds,...sc->...dc", self.weights, filled).astype(coords.dtype)
        mapped_missing = np.einsum("ds,...s->...d", used.astype(np.int32), missing.astype(np.int32)) > 0
        mapped[mapped_missing] = np.nan
        if confidence is None:
            return mapped, None
        conf = np.where(used, confidence[..., None, :], np.inf).min(axis=-1)
        return mapped, conf.astype(confidence.dtype)


def _resolve(name: str, source: Layout, visiting: frozenset[str]) -> dict[str, float] | None:
    """Weights over source joints that make ``name``, or None when it cannot be made."""
    if source.has(name):
        return {name: 1.0}
    if name in visiting:
        return None
    for option in DERIVATION_RULES.get(name, []):
        combined: dict[str, float] = {}
        for ingredient, weight in option.items():
            sub = _resolve(ingredient, source, visiting | {name})
            if sub is None:
                break
            for joint, w in sub.items():
                combined[joint] = combined.get(joint, 0.0) + weight * w
        else:
            return combined
    return None


@cache
def _mapping_by_name(source_name: str, target_name: str) -> JointMapping:
    source, target = get_layout(source_name), get_layout(target_name)
    weights = np.zeros((target.num_joints, source.num_joints), dtype=np.float32)
    for d, name in enumerate(target.joints):
        recipe = _resolve(name, source, frozenset())
        if recipe is None:
            raise InputError(f"cannot map layout {source.name} to {target.name}: no way to make joint {name!r}")
        for joint, w in recipe.items():
            weights[d, source.index(joint)] = w
    weights.setflags(write=False)
    return JointMapping(source, target, weights)


def layout_mapping(source: Layout | str, target: Layout | str) -> JointMapping:
    """The mapping from one layout to another (cached; raises InputError when impossible)."""
    src = source if isinstance(source, str) else source.name
    dst = target if isinstance(target, str) else target.name
    return _mapping_by_name(src, dst)


def derive_joint(coords: np.ndarray, layout: Layout, name: str) -> np.ndarray:
    """One vocabulary joint (..., C) from ``coords`` (..., J, C), derived if the layout lacks it."""
    recipe = _resolve(name, layout, frozenset())
    if recipe is None:
        raise InputError(f"layout {layout.name} has no way to make joint {name!r}")
    return sum(w * coords[..., layout.index(joint), :] for joint, w in recipe.items())
