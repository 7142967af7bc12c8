"""Joint maps and left/right/axis conventions of every source, checked on the real recordings.

A wrong joint map does not crash anything: it silently costs accuracy (a mirror augmentation
that swaps the wrong pairs, a "right hand" feature computed on the left hand). These tests are
the evidence that each layout in ``skeleton.layouts`` names the *person's* joints, with y up
and the units each reader claims.

Two independent kinds of evidence are used:

* geometry: the foot joint sits in front of the ankle, so ``foot - ankle`` (horizontal) is the
  direction a person faces; in a right-handed y-up frame the person's left is then
  ``cross(up, facing)``. The same holds with the walking direction in mocap walks.
* motion: subjects asked to use their right arm or leg move the joints we call ``right_*``.

The numbers in the comments were measured on the data in ``../shared/data`` when these tests
were written; the thresholds leave a margin below them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import joint

from export.augment import random_mirror
from skeleton.dataset import SkeletonDataset
from skeleton.layouts import LAYOUTS, PART_NAMES, Layout

UP = np.array([0.0, 1.0, 0.0])


# -- helpers ------------------------------------------------------------------------------


def path_length(x: np.ndarray) -> float:
    """Distance travelled by a (T, C) trajectory (steps from or to a missing frame left out)."""
    return float(np.nansum(np.linalg.norm(np.diff(x, axis=0), axis=-1)))


def bone_length(ds: SkeletonDataset, a: str, b: str) -> np.ndarray:
    return np.linalg.norm(joint(ds, a) - joint(ds, b), axis=-1)


def mean_heights(ds: SkeletonDataset) -> dict[str, float]:
    """Mean y of every joint over all frames."""
    layout = LAYOUTS[ds.layout]
    return {name: float(np.nanmean(joint(ds, name)[:, 1])) for name in layout.joints}


def facing_from_feet(ds: SkeletonDataset) -> np.ndarray:
    """(frames, 3) horizontal direction the toes point to: where the person faces."""
    facing = (joint(ds, "left_foot") - joint(ds, "left_ankle")) + (joint(ds, "right_foot") - joint(ds, "right_ankle"))
    facing[:, 1] = 0.0
    return facing


def left_agreement(left_minus_right: np.ndarray, facing: np.ndarray) -> float:
    """Fraction of frames where ``left - right`` points along ``cross(up, facing)``."""
    return float(np.mean(np.sum(np.cross(UP, facing) * left_minus_right, axis=-1) > 0))


def sequences_of(ds: SkeletonDataset, label: int, min_frames: int = 3):
    return [s for s in ds if s.label == label and s.num_frames >= min_frames]


def label_of(ds: SkeletonDataset, name: str) -> int:
    return ds.label_names.index(name)


def fraction_right_moves_more(
    ds: SkeletonDataset, label: int, part: str, measure: Callable[[np.ndarray], float] = path_length
) -> tuple[float, float, int]:
    """(fraction of sequences where right_<part> moves more, median right/left ratio, count)."""
    layout = LAYOUTS[ds.layout]
    right, left = layout.index(f"right_{part}"), layout.index(f"left_{part}")
    ratios = []
    for s in sequences_of(ds, label):
        x = s.coords[:, 0].astype(np.float64)
        ratios.append(measure(x[:, right]) / max(measure(x[:, left]), 1e-9))
    ratios = np.array(ratios)
    return float(np.mean(ratios > 1)), float(np.median(ratios)), len(ratios)


def assert_y_up(ds: SkeletonDataset, feet: tuple[str, str] = ("left_foot", "right_foot")) -> None:
    heights = mean_heights(ds)
    ranked = sorted(heights, key=heights.get, reverse=True)
    assert ranked[0] == "head", f"highest joint on average is {ranked[0]}: {heights}"
    assert set(ranked[-2:]) == set(feet), f"lowest joints on average are {ranked[-2:]}: {heights}"
    below = np.maximum(joint(ds, feet[0])[:, 1], joint(ds, feet[1])[:, 1])
    assert np.mean(joint(ds, "head")[:, 1] > below) > 0.99


def assert_symmetric_limbs(ds: SkeletonDataset, tolerance: float = 0.2) -> None:
    """Left and right upper arm, forearm, thigh and shin have about the same median length."""
    for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle")):
        left = np.nanmedian(bone_length(ds, f"left_{a}", f"left_{b}"))
        right = np.nanmedian(bone_length(ds, f"right_{a}", f"right_{b}"))
        assert abs(left / right - 1) < tolerance, f"{a}-{b}: left {left:.3f} vs right {right:.3f}"


def torso_length(ds: SkeletonDataset) -> float:
    return float(np.nanmedian(bone_length(ds, "neck", "pelvis")))


# -- MSR Action3D (msr20) -----------------------------------------------------------------
# The file order's public names (0 "R shoulder", 9 "R wrist", ...) are mirrored; msr20 names
# the person's sides. Measured: head highest on average (0.56 m), feet lowest (-1.0 m); torso
# 0.447 m; left/right bones equal to 0.4 %; the joint we call right_wrist moves 4-6x more than
# left_wrist in 100 % of the sequences of actions 1-6; right_ankle 6.2x more in forward kick
# (29 of 30 sequences); left_shoulder.x < right_shoulder.x in 98.6 % of frames.


def test_msr_y_is_vertical(msr: SkeletonDataset) -> None:
    assert_y_up(msr)


def test_msr_units_are_metres(msr: SkeletonDataset) -> None:
    assert 0.3 < torso_length(msr) < 0.7
    assert 0.3 < np.nanmedian(bone_length(msr, "left_hip", "left_knee")) < 0.7  # thigh (0.54 m)


def test_msr_symmetric_pairs_have_equal_bones(msr: SkeletonDataset) -> None:
    assert_symmetric_limbs(msr)


def test_msr_bone_lengths_are_stable_over_time(msr: SkeletonDataset) -> None:
    layout = LAYOUTS["msr20"]
    for child, parent in layout.bones:
        relative_std = []
        for s in msr:
            x = s.coords[:, 0].astype(np.float64)
            length = np.linalg.norm(x[:, layout.index(child)] - x[:, layout.index(parent)], axis=-1)
            relative_std.append(length.std() / length.mean())
        assert np.median(relative_std) < 0.1, f"bone {child}-{parent}: median relative std {np.median(relative_std)}"


@pytest.mark.parametrize("action", [1, 2, 3, 4, 5, 6])
def test_msr_right_arm_actions_move_right_wrist(msr: SkeletonDataset, action: int) -> None:
    # Subjects used their right arm; measured: 100 % of sequences, median ratio 4.0 to 6.4.
    fraction, ratio, count = fraction_right_moves_more(msr, action - 1, "wrist")
    assert count >= 26
    assert fraction >= 0.9, f"{msr.label_names[action - 1]}: right wrist moves more in {fraction:.0%}"
    assert ratio >= 3.0


def test_msr_forward_kick_moves_right_ankle(msr: SkeletonDataset) -> None:
    fraction, ratio, count = fraction_right_moves_more(msr, label_of(msr, "forward kick"), "ankle")
    assert count == 30
    assert fraction >= 0.9, f"right ankle moves more in {fraction:.0%}"  # 96.7 %
    assert ratio >= 3.0  # 6.2


def test_msr_person_faces_camera_and_left_is_cross_up_facing(msr: SkeletonDataset) -> None:
    facing = facing_from_feet(msr)
    assert np.mean(facing[:, 2] < 0) > 0.95  # toes point at the camera (-z) in 97.2 % of frames
    # With facing = -z, cross(up, facing) = -x: the person's left has the smaller x.
    assert np.mean(joint(msr, "left_shoulder")[:, 0] < joint(msr, "right_shoulder")[:, 0]) > 0.95  # 98.6 %
    assert np.mean(joint(msr, "left_hip")[:, 0] < joint(msr, "right_hip")[:, 0]) > 0.95  # 98.5 %
    # The same from each frame's own facing (feet), without assuming the camera direction.
    assert left_agreement(joint(msr, "left_hip") - joint(msr, "right_hip"), facing) > 0.95  # 98.7 %


# -- NW-UCLA (kinect20) -------------------------------------------------------------------
# Measured: head 0.74 m, feet -0.68 m on average; torso 0.40 m; bones equal to 1.2 %; in every view
# left_shoulder.x < right_shoulder.x in 97.9-99.2 % of frames; feet-facing agrees with the hips
# in 88.9 % of frames (Kinect v1 feet are noisy). Which wrist moves more (range of the wrist
# relative to the pelvis; a symmetric action gives ~50 %):
#   throw                  right larger in 73.1 % of 145 sequences (median ratio 1.36);
#   pick up with one hand  right larger in 64.0 % of 150 (path length: 60.7 %, ratio 1.10);
#   sit down / stand up    48.0 % / 49.7 % (controls).
# Throw is clear enough to assert; pick up with one hand is not (subjects seem to mix hands and
# the bending body dominates), so it is only reported here.


def test_nw_ucla_y_is_vertical(nw_ucla: SkeletonDataset) -> None:
    assert_y_up(nw_ucla)


def test_nw_ucla_units_are_metres(nw_ucla: SkeletonDataset) -> None:
    assert 0.3 < torso_length(nw_ucla) < 0.7


def test_nw_ucla_symmetric_pairs_have_equal_bones(nw_ucla: SkeletonDataset) -> None:
    assert_symmetric_limbs(nw_ucla)


@pytest.mark.parametrize("view", [1, 2, 3])
def test_nw_ucla_person_faces_sensor_and_left_has_smaller_x(nw_ucla: SkeletonDataset, view: int) -> None:
    in_view = np.repeat(nw_ucla.views, nw_ucla.lengths) == view
    left, right = joint(nw_ucla, "left_shoulder")[in_view], joint(nw_ucla, "right_shoulder")[in_view]
    assert np.mean(left[:, 0] < right[:, 0]) > 0.95
    assert np.mean(facing_from_feet(nw_ucla)[in_view, 2] < 0) > 0.55  # 77.9 / 71.0 / 59.9 %


def test_nw_ucla_left_is_cross_up_facing(nw_ucla: SkeletonDataset) -> None:
    facing = facing_from_feet(nw_ucla)
    assert left_agreement(joint(nw_ucla, "left_hip") - joint(nw_ucla, "right_hip"), facing) > 0.85
    assert left_agreement(joint(nw_ucla, "left_shoulder") - joint(nw_ucla, "right_shoulder"), facing) > 0.85


def _range_relative_to_pelvis(x: np.ndarray) -> float:
    return float((np.nanmax(x, axis=0) - np.nanmin(x, axis=0)).sum())


def _right_wrist_range_larger(ds: SkeletonDataset, label: int) -> float:
    layout = LAYOUTS[ds.layout]
    larger = []
    for s in sequences_of(ds, label):
        x = s.coords[:, 0].astype(np.float64)
        pelvis = x[:, layout.index("pelvis")]
        right = _range_relative_to_pelvis(x[:, layout.index("right_wrist")] - pelvis)
        left = _range_relative_to_pelvis(x[:, layout.index("left_wrist")] - pelvis)
        larger.append(right > left)
    return float(np.mean(larger))


def test_nw_ucla_throw_uses_right_wrist_more_than_symmetric_actions(nw_ucla: SkeletonDataset) -> None:
    throw = _right_wrist_range_larger(nw_ucla, label_of(nw_ucla, "throw"))
    controls = [_right_wrist_range_larger(nw_ucla, label_of(nw_ucla, name)) for name in ("sit down", "stand up")]
    assert throw > 0.65, f"throw: right wrist range larger in {throw:.0%}"
    assert throw > max(controls) + 0.15, f"throw {throw:.0%} vs symmetric actions {controls}"


def _pelvis_falls(sequence) -> bool:
    """The pelvis is highest before it is lowest: the person ends lower than they were."""
    y = sequence.coords[:, 0, 0, 1]
    return bool(np.nanargmax(y) < np.nanargmin(y))


def test_nw_ucla_sitting_down_lowers_the_pelvis_and_standing_up_raises_it(nw_ucla: SkeletonDataset) -> None:
    """Measured with the labels as converted: the pelvis falls in 142 of the 147 "sit down" takes
    (96.6 %) and 2 of the 150 "stand up" ones. With the labels as the files give them, subject 4's
    view-2 takes are the reverse (0 of 6 "sit down" fall, 4 of 5 "stand up" do): the reader's
    ``REVERSED_TAKES``."""
    from skeleton.readers.nw_ucla import corrected_label

    sit, stand = label_of(nw_ucla, "sit down"), label_of(nw_ucla, "stand up")
    assert np.mean([_pelvis_falls(s) for s in sequences_of(nw_ucla, sit)]) > 0.93
    assert np.mean([_pelvis_falls(s) for s in sequences_of(nw_ucla, stand)]) < 0.05
    as_filed = {sit: [], stand: []}
    for i, s in enumerate(nw_ucla):
        if (nw_ucla.subjects[i], nw_ucla.views[i]) == (4, 2) and s.label in as_filed:
            as_filed[corrected_label(s.label, 4, 2)].append(_pelvis_falls(s))  # the swap is its own inverse
    assert len(as_filed[sit]) == 6 and not any(as_filed[sit])
    assert len(as_filed[stand]) == 5 and np.mean(as_filed[stand]) >= 0.8


def walking_cadence(ds: SkeletonDataset, action: str) -> float:
    """Median steps a second of a dataset's walking takes, on the frame times its reader gave:
    the main frequency of the distance between the ankles, which peaks once a step."""
    layout = LAYOUTS[ds.layout]
    left, right = layout.index("left_ankle"), layout.index("right_ankle")
    cadences = []
    for s in sequences_of(ds, label_of(ds, action), min_frames=20):
        gap = np.linalg.norm(s.coords[:, 0, left] - s.coords[:, 0, right], axis=-1).astype(np.float64)
        if np.isnan(gap).any():
            continue
        fps = 1000.0 / np.median(np.diff(s.timestamps_ms))
        frequencies = np.fft.rfftfreq(1024, d=1.0 / fps)
        power = np.abs(np.fft.rfft((gap - gap.mean()) * np.hanning(len(gap)), 1024))
        band = (frequencies > 0.5) & (frequencies < 6.0)
        cadences.append(frequencies[band][np.argmax(power[band])])
    return float(np.median(cadences))


def test_nw_ucla_frame_rate_gives_a_walking_cadence(nw_ucla: SkeletonDataset, bandai: SkeletonDataset) -> None:
    """NW-UCLA's files have no time codes: the frame rate is the reader's. Measured: its "walk
    around" takes step 1.87 times a second at the reader's 15 fps (3.7 at the sensor's nominal 30 fps,
    a running cadence); Bandai-Namco's 30 fps mocap walks 1.88 times a second."""
    reference = walking_cadence(bandai, "walk")
    assert 1.6 < reference < 2.4, reference
    assert 0.75 < walking_cadence(nw_ucla, "walk around") / reference < 1.25


# -- NTU RGB+D sample (ntu25) -------------------------------------------------------------
# 3-D camera joints. Kinect v2 camera space is documented as right-handed: X to the sensor's
# left, Y up, Z away from the sensor. Measured: head 0.82 m, feet -0.49 m; torso 0.47 m; head
# joint 1.31 m above the feet; left_shoulder.x < right_shoulder.x in 100 % of the 103 frames;
# feet-facing agrees with the hips in 95.1 %. The subject drinks with the joint we call right:
# right_hand is higher than left_hand in 94 % of frames and comes within 0.15 m of the head
# (left_hand: 0.30 m).


def test_ntu_y_is_vertical_and_metres(ntu: SkeletonDataset) -> None:
    assert_y_up(ntu)
    assert 0.3 < torso_length(ntu) < 0.7


def test_ntu_left_is_cross_up_facing(ntu: SkeletonDataset) -> None:
    facing = facing_from_feet(ntu)
    assert np.mean(facing[:, 2] < 0) > 0.9  # faces the sensor: 93.2 %
    assert left_agreement(joint(ntu, "left_hip") - joint(ntu, "right_hip"), facing) > 0.9
    assert np.mean(joint(ntu, "left_shoulder")[:, 0] < joint(ntu, "right_shoulder")[:, 0]) > 0.95


def test_ntu_drink_water_uses_right_hand(ntu: SkeletonDataset) -> None:
    assert np.mean(joint(ntu, "right_hand")[:, 1] > joint(ntu, "left_hand")[:, 1]) > 0.8
    to_head = {side: bone_length(ntu, f"{side}_hand", "head").min() for side in ("left", "right")}
    assert to_head["right"] < to_head["left"]


# 2-D colour joints. Image y grows downwards. The expectation "a person facing the camera has
# the right shoulder at the smaller x" holds for an ordinary (unmirrored) camera image, and it
# does NOT hold here: right_shoulder.x > left_shoulder.x in 100 % of the 103 frames, and colour
# x grows with camera X (correlation +0.98) although X points to the sensor's left. Kinect v2
# colour frames are horizontally mirrored (the shipped _rgb.avi matches the joints pixel for
# pixel, so the video is mirrored too). The person's sides are right (3-D tests above), so the
# colour joints are a mirror image: 2-D models mixing them with Penn Action or MediaPipe on an
# ordinary camera must flip x (x -> width - 1 - x) first.


def test_ntu_color_image_y_grows_downwards(ntu_color: SkeletonDataset) -> None:
    assert ntu_color.coordinate_space == "image"
    feet = np.minimum(joint(ntu_color, "left_foot")[:, 1], joint(ntu_color, "right_foot")[:, 1])
    assert np.mean(joint(ntu_color, "head")[:, 1] < feet) > 0.99


def test_ntu_color_image_is_mirrored(ntu: SkeletonDataset, ntu_color: SkeletonDataset) -> None:
    right, left = joint(ntu_color, "right_shoulder")[:, 0], joint(ntu_color, "left_shoulder")[:, 0]
    assert np.mean(right > left) > 0.95, "the NTU colour joints are no longer mirrored: revisit this test"
    correlation = np.corrcoef(ntu.coords[..., 0].ravel(), ntu_color.coords[..., 0].ravel())[0, 1]
    assert correlation > 0.9


# -- Penn Action (penn13, image space) ----------------------------------------------------
# Measured: head above both ankles in 80.3 % of all frames, 97.7 % of frames where head and
# ankles are visible. Sides, naming each pair as the dataset's own docs do (first = "left"):
#   "front" view: that "right" shoulder has the smaller x in only 9.6 % of frames (3.9 % visible);
#   "back" view: in 74.4 % (82.1 % visible);
#   strum guitar (46 sequences, all "front"): that "right" wrist moves more in 0 %;
#   bowl (135, 128 "back"): in 17.8 %.
# Both the view geometry and the motion say the annotations' "left" is the person's right, so
# penn13 names each pair the other way round; these tests hold it to the person's sides.


def test_penn_head_above_ankles(penn: SkeletonDataset) -> None:
    head = joint(penn, "head")[:, 1]
    ankles = np.minimum(joint(penn, "left_ankle")[:, 1], joint(penn, "right_ankle")[:, 1])
    layout = LAYOUTS["penn13"]
    visible = (penn.confidence[:, 0, [layout.index(n) for n in ("head", "left_ankle", "right_ankle")]] > 0).all(1)
    assert np.mean(head < ankles) > 0.75
    assert np.mean((head < ankles)[visible]) > 0.95


@pytest.mark.parametrize(("view", "right_has_smaller_x"), [("front", True), ("back", False)])
def test_penn_sides_match_view(penn: SkeletonDataset, view: str, right_has_smaller_x: bool) -> None:
    in_view = np.repeat(penn.views, penn.lengths) == penn.view_names.index(view)
    right, left = joint(penn, "right_shoulder")[in_view, 0], joint(penn, "left_shoulder")[in_view, 0]
    fraction = float(np.mean((right < left) == right_has_smaller_x))
    assert fraction > 0.7, (
        f"{view} view: the person's sides hold in only {fraction:.1%} of frames; penn13 left/right are swapped"
    )


def test_penn_strum_guitar_and_bowl_use_right_wrist(penn: SkeletonDataset) -> None:
    for action in ("strum_guitar", "bowl"):
        fraction, ratio, count = fraction_right_moves_more(penn, label_of(penn, action), "wrist")
        assert fraction > 0.7, f"{action}: right_wrist moves more in {fraction:.1%} of {count}; sides are swapped"


# -- Mocap: Bandai-Namco positions (bandai21) and CMU BVH (cmu31) -------------------------
# Measured: head highest and feet lowest on average. The "head" joint is the BVH head pivot
# (base of the skull), 0.15-0.25 m below the crown: it stands 1.26 m (CMU subject 131) and
# 1.33 m (Bandai) above the lowest foot joint, i.e. a standing height of about 1.4-1.6 m; the
# leg (hip-knee-ankle) is 0.80 m in both. Walking: left_hip - right_hip along
# cross(up, walking direction) in 100 % of moving frames of all 175 Bandai "walk" clips, and in
# 86.7 % / 100 % of the frames of CMU 131_01 / 131_02 (131_01 starts and stops, with a side step).


@pytest.mark.parametrize("fixture", ["cmu", "bandai"])
def test_mocap_y_up_and_metres(request: pytest.FixtureRequest, fixture: str) -> None:
    ds: SkeletonDataset = request.getfixturevalue(fixture)
    assert_y_up(ds)
    floor = np.minimum(joint(ds, "left_foot")[:, 1], joint(ds, "right_foot")[:, 1])
    head_height = float(np.median(joint(ds, "head")[:, 1] - floor))
    # Standing height 1.4-2.0 m, less 0.15-0.25 m from the head pivot to the crown.
    assert 1.15 < head_height < 1.85, head_height
    leg = np.nanmedian(bone_length(ds, "left_hip", "left_knee") + bone_length(ds, "left_knee", "left_ankle"))
    assert 0.65 < leg < 1.1, leg


def test_bandai_walks_have_left_on_cross_up_walking_direction(bandai: SkeletonDataset) -> None:
    layout = LAYOUTS["bandai21"]
    walks = sequences_of(bandai, label_of(bandai, "walk"))
    assert len(walks) == 175
    for s in walks:
        x = s.coords[:, 0].astype(np.float64)
        direction = np.diff(x[:, layout.index("pelvis")], axis=0)
        direction[:, 1] = 0.0
        moving = np.linalg.norm(direction, axis=-1) * bandai.fps > 0.3  # faster than 0.3 m/s
        left = x[1:, layout.index("left_hip")] - x[1:, layout.index("right_hip")]
        assert left_agreement(left[moving], direction[moving]) > 0.9, s.name


@pytest.mark.parametrize("clip", ["131_01", "131_02"])
def test_cmu_walks_have_left_on_cross_up_walking_direction(cmu: SkeletonDataset, clip: str) -> None:
    s = cmu[list(cmu.names).index(clip)]
    layout = LAYOUTS["cmu31"]
    x = s.coords[:, 0].astype(np.float64)
    direction = x[-1, layout.index("pelvis")] - x[0, layout.index("pelvis")]
    direction[1] = 0.0
    assert np.linalg.norm(direction) > 1.0  # it does walk somewhere
    left = x[:, layout.index("left_hip")] - x[:, layout.index("right_hip")]
    assert left_agreement(left, np.broadcast_to(direction, left.shape)) > 0.8


# -- every layout ---------------------------------------------------------------------------


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> Layout:
    return LAYOUTS[request.param]


def test_bones_form_one_tree_over_all_joints(layout: Layout) -> None:
    children = [child for child, _ in layout.bones]
    assert len(children) == len(set(children)), "a joint has two parents"
    assert len(layout.bones) == layout.num_joints - 1
    roots = [i for i, p in enumerate(layout.parents) if p < 0]
    assert len(roots) == 1
    reached, frontier = {roots[0]}, [roots[0]]
    while frontier:
        parent = frontier.pop()
        for child, p in enumerate(layout.parents):
            if p == parent and child not in reached:
                reached.add(child)
                frontier.append(child)
    assert reached == set(range(layout.num_joints)), "bones do not connect every joint to the root"


def test_mirror_permutation_is_an_involution_swapping_sides(layout: Layout) -> None:
    perm = layout.mirror_permutation
    assert sorted(perm) == list(range(layout.num_joints))
    assert all(perm[perm[i]] == i for i in range(layout.num_joints))
    for i, name in enumerate(layout.joints):
        target = layout.joints[perm[i]]
        if name.startswith("left_"):
            assert target == "right_" + name[5:]
        elif name.startswith("right_"):
            assert target == "left_" + name[6:]
        elif name.endswith("_left"):
            assert target == name[:-5] + "_right"
        elif name.endswith("_right"):
            assert target == name[:-6] + "_left"
        else:
            assert target == name
    # Every sided joint has its twin.
    assert all(perm[i] != i for i, n in enumerate(layout.joints) if "left" in n or "right" in n)


def test_mirror_permutation_maps_bones_onto_bones(layout: Layout) -> None:
    names, perm = layout.joints, layout.mirror_permutation
    mirrored = {(names[perm[layout.index(c)]], names[perm[layout.index(p)]]) for c, p in layout.bones}
    assert mirrored == set(layout.bones)


def test_parts_cover_every_joint_once(layout: Layout) -> None:
    parts = layout.parts
    assert set(parts) == set(PART_NAMES)
    covered = sorted(i for indices in parts.values() for i in indices)
    assert covered == list(range(layout.num_joints))
    # A limb holds only joints of its own side, and both sides' limbs are alike.
    for part, indices in parts.items():
        if part != "trunk":
            side = part.split("_")[0]
            assert all(layout.joints[i].startswith(f"{side}_") for i in indices), part
    perm = layout.mirror_permutation
    for limb in ("arm", "leg"):
        assert sorted(perm[i] for i in parts[f"left_{limb}"]) == sorted(parts[f"right_{limb}"])


def test_hand_joints_present(layout: Layout) -> None:
    hands = layout.hand_joints
    assert hands
    sides = {layout.joints[i].split("_", 1)[0] for i in hands}
    assert sides == {"left", "right"}


def test_mirror_augmentation_keeps_the_persons_left_on_their_left(nw_ucla: SkeletonDataset) -> None:
    """A mirrored person is still a person: with x negated and the sides swapped, the joints
    named left are on the left of where the toes point, as on the recordings. Negating x alone
    would put them on the right."""
    layout = LAYOUTS[nw_ucla.layout]
    frames = torch.from_numpy(np.nan_to_num(nw_ucla.coords[:, 0]).astype(np.float32))[:, None]  # (F, 1, J, 3)
    permutation = torch.tensor(layout.mirror_permutation)
    mirrored = random_mirror(frames, permutation, 1.0)[:, 0].numpy()

    def agreement(x: np.ndarray, pair: str) -> float:
        at = {n: x[:, layout.index(n)] for n in layout.joints}
        facing = at["left_foot"] - at["left_ankle"] + at["right_foot"] - at["right_ankle"]
        facing[:, 1] = 0.0
        return left_agreement(at[f"left_{pair}"] - at[f"right_{pair}"], facing)

    original = frames[:, 0].numpy()
    negated_only = original * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    for pair in ("hip", "shoulder"):
        assert agreement(mirrored, pair) == pytest.approx(agreement(original, pair))
        assert agreement(original, pair) > 0.85 and agreement(negated_only, pair) < 0.15
    twice = random_mirror(torch.from_numpy(mirrored)[:, None], permutation, 1.0)[:, 0]
    assert torch.equal(twice, frames[:, 0])
    assert random_mirror(frames, permutation, 0.0) is frames
