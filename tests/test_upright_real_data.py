"""The camera's pitch in the real recordings, and what the "upright" normalisation leaves of it.

A sensor mounted above the people it sees leans every skeleton towards itself. NW-UCLA's test
view is steeper than its training views, and the NTU sample's Kinect steeper still: "align"
(a turn about the vertical axis) keeps those differences in the windows, "upright" removes most
of them. Measured when written (median over every fourth clip, as the tests take them, of the
angle between +y and the clip's mean spine direction): NW-UCLA views 1 / 2 / 3 10.9 / 11.9 / 16.2
degrees with "align", 3.9 / 5.8 / 7.6 with "upright" (what is left is the actions' own bending,
forward); the NTU sample 17.2 / 0.0 (MediaPipe's world landmarks of its video: 6.3 / 0.0).
"""

from __future__ import annotations

import numpy as np

from skeleton.dataset import SkeletonDataset
from skeleton.layouts import get_layout
from skeleton.mapping import derive_joint, layout_mapping
from skeleton.normalize import normalize

KINECT20 = get_layout("kinect20")


def lean_deg(dataset: SkeletonDataset, index: int, method: str) -> float:
    """The angle between +y and the mean spine direction (pelvis -> neck) of sequence ``index``,
    normalised by ``method``."""
    coords, _ = layout_mapping(dataset.layout, KINECT20).apply(dataset[index].coords[:, :1])
    out = normalize(coords, KINECT20, dataset.coordinate_space, method)
    spine = (derive_joint(out, KINECT20, "neck") - derive_joint(out, KINECT20, "pelvis")).reshape(-1, 3)
    spine = spine[np.isfinite(spine).all(axis=1)]
    mean = (spine / np.linalg.norm(spine, axis=1, keepdims=True)).mean(axis=0)
    return float(np.degrees(np.arccos(mean[1] / np.linalg.norm(mean))))


def test_nw_ucla_views_lean_apart_less_once_stood_upright(nw_ucla: SkeletonDataset) -> None:
    def median_lean(view: int, method: str) -> float:
        return float(np.median([lean_deg(nw_ucla, i, method) for i in np.flatnonzero(nw_ucla.views == view)[::4]]))

    aligned = [median_lean(view, "centre-torso-align") for view in (1, 2, 3)]
    upright = [median_lean(view, "centre-torso-upright-align") for view in (1, 2, 3)]
    assert aligned[2] - aligned[0] > 4.0  # the test view's sensor looks further down
    assert max(upright) < 9.0 and upright[2] - upright[0] < aligned[2] - aligned[0] - 1.0


def test_the_ntu_kinect_mounted_higher_is_stood_upright(ntu: SkeletonDataset) -> None:
    assert lean_deg(ntu, 0, "centre-torso-align") > 14.0
    assert lean_deg(ntu, 0, "centre-torso-upright-align") < 2.0
