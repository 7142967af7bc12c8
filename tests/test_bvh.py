"""Tests for the BVH reader, on real CMU and Bandai-Namco clips from ``../shared/data``.

Real data catches what hand-made files cannot: per-joint channel orders (CMU arms are
ZXY, legs ZYX), position channels that replace offsets (Bandai-Namco), and the axis
conventions downstream code relies on (y up, right-handed). Small hand-written files are
used only for error handling and for one hand-computed rotation-order check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skeleton.errors import InputError
from skeleton.readers.bvh import BvhClip, read_bvh

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CMU = DATA / "cmu-mocap"
BANDAI = DATA / "bandai-namco"
BANDAI_DS1 = sorted((BANDAI / "dataset-1" / "data").glob("*.bvh"))
CMU_FRAMES = {"131_01": 994, "131_02": 1247, "131_03": 1102}


@pytest.fixture(scope="module")
def cmu_clips() -> dict[str, BvhClip]:
    """The three CMU subject-131 clips, read once for the module."""
    return {stem: read_bvh(CMU / f"{stem}.bvh") for stem in CMU_FRAMES}


@pytest.fixture(scope="module")
def bandai_clip() -> BvhClip:
    """The first (sorted) Bandai-Namco dataset-1 clip."""
    assert BANDAI_DS1, f"no Bandai-Namco dataset-1 BVH under {BANDAI}"
    return read_bvh(BANDAI_DS1[0])


@pytest.fixture(scope="module")
def bandai_npz() -> dict[str, np.ndarray]:
    """Dataset-2 positions derived (in metres) by the data's curator."""
    with np.load(BANDAI / "dataset-2-positions.npz") as npz:
        return {key: npz[key] for key in ("joint_names", "parents", "positions", "lengths")}


def bone_lengths(clip: BvhClip, skip_parents: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Per-frame distance from each joint to its parent, keyed by the child's name."""
    positions = clip.positions.astype(np.float64)
    lengths = {}
    for child, parent in enumerate(clip.parents):
        if parent >= 0 and clip.joint_names[parent] not in skip_parents:
            offset = positions[:, child] - positions[:, parent]
            lengths[clip.joint_names[child]] = np.linalg.norm(offset, axis=-1)
    return lengths


def assert_rigid_bones(clip: BvhClip, skip_parents: tuple[str, ...] = ()) -> None:
    """Forward kinematics must keep every bone's length constant over the clip."""
    for name, length in bone_lengths(clip, skip_parents).items():
        mean = length.mean()
        if mean < 1e-6:  # zero-length helper bones (CMU LHipJoint, lowerneck...)
            assert length.max() < 1e-3, name
        else:
            assert length.std() / mean < 1e-3, name


def joint(clip: BvhClip, name: str) -> np.ndarray:
    """(T, 3) positions of one joint, by name."""
    return clip.positions[:, clip.joint_names.index(name)].astype(np.float64)


def side_score(clip: BvhClip, root: str, left: str, right: str) -> float:
    """Mean of (left - right) . cross(up, facing), facing = mean horizontal velocity.

    Positive means the person's left is where a right-handed, y-up frame puts it.
    """
    velocity = np.diff(joint(clip, root), axis=0)
    velocity[:, 1] = 0.0
    facing = velocity.mean(axis=0)
    facing /= np.linalg.norm(facing)
    leftward = np.cross([0.0, 1.0, 0.0], facing)
    return float(((joint(clip, left) - joint(clip, right)) @ leftward).mean())


# --- real data: structure -------------------------------------------------------------


@pytest.mark.parametrize("stem", sorted(CMU_FRAMES))
def test_cmu_clip_structure(cmu_clips: dict[str, BvhClip], stem: str) -> None:
    clip = cmu_clips[stem]
    assert len(clip.joint_names) == 31
    assert clip.joint_names[0] == "Hips"
    assert clip.parents[0] == -1
    assert all(0 <= p < i for i, p in enumerate(clip.parents) if i > 0)
    assert clip.positions.shape == (CMU_FRAMES[stem], 31, 3)
    assert clip.positions.dtype == np.float32
    assert clip.fps == pytest.approx(120.0, rel=1e-4)


def test_bandai_clip_structure(bandai_clip: BvhClip) -> None:
    assert len(bandai_clip.joint_names) == 22
    assert bandai_clip.joint_names[0] == "joint_Root"
    assert bandai_clip.parents[:2] == (-1, 0)
    assert bandai_clip.positions.shape[1:] == (22, 3)
    assert bandai_clip.positions.dtype == np.float32
    assert bandai_clip.fps == pytest.approx(30.0, rel=1e-4)


def test_bandai_joints_match_derived_npz(bandai_clip: BvhClip, bandai_npz: dict[str, np.ndarray]) -> None:
    """The derived npz drops joint_Root; names and tree must otherwise be the BVH's."""
    assert list(bandai_clip.joint_names[1:]) == [str(n) for n in bandai_npz["joint_names"]]
    shifted = [p - 1 if p > 0 else -1 for p in bandai_clip.parents[1:]]
    assert shifted == bandai_npz["parents"].tolist()


def test_bandai_units_are_centimetres(bandai_clip: BvhClip, bandai_npz: dict[str, np.ndarray]) -> None:
    """Datasets 1 and 2 share one skeleton: BVH bones are 100x the npz's (metres).

    This is the closest thing to a positions cross-check that the absent dataset-2 BVH
    allows, and it pins the unit (cm) down.
    """
    first = bandai_npz["positions"][: bandai_npz["lengths"][0]].astype(np.float64)
    parents = bandai_npz["parents"]
    ours = bone_lengths(bandai_clip, skip_parents=("joint_Root",))
    for child, name in enumerate(bandai_npz["joint_names"]):
        if parents[child] < 0:
            continue
        theirs = np.linalg.norm(first[:, child] - first[:, parents[child]], axis=-1).mean()
        assert ours[str(name)].mean() / 100.0 == pytest.approx(theirs, rel=1e-2), name


def test_every_bandai_dataset1_clip_reads() -> None:
    """All 174 dataset-1 clips parse with the same skeleton, 30 fps and rigid bones."""
    assert len(BANDAI_DS1) == 174
    for path in BANDAI_DS1:
        clip = read_bvh(path)
        assert len(clip.joint_names) == 22, path.name
        assert clip.fps == pytest.approx(30.0, rel=1e-4), path.name
        assert_rigid_bones(clip, skip_parents=("joint_Root",))


# --- real data: forward kinematics ----------------------------------------------------


@pytest.mark.parametrize("stem", sorted(CMU_FRAMES))
def test_cmu_bones_are_rigid(cmu_clips: dict[str, BvhClip], stem: str) -> None:
    assert_rigid_bones(cmu_clips[stem])


def test_bandai_bones_are_rigid(bandai_clip: BvhClip) -> None:
    # joint_Root -> Hips is the capture-volume-to-pelvis translation, not a bone.
    assert_rigid_bones(bandai_clip, skip_parents=("joint_Root",))


@pytest.mark.parametrize("stem", sorted(CMU_FRAMES))
def test_cmu_y_is_up(cmu_clips: dict[str, BvhClip], stem: str) -> None:
    clip = cmu_clips[stem]
    above = joint(clip, "Head")[:, 1] > joint(clip, "LeftToe")[:, 1]
    assert above.mean() > 0.95


def test_bandai_y_is_up(bandai_clip: BvhClip) -> None:
    above = joint(bandai_clip, "Head")[:, 1] > joint(bandai_clip, "Toes_L")[:, 1]
    assert above.mean() > 0.95


def test_cmu_walk_is_right_handed(cmu_clips: dict[str, BvhClip]) -> None:
    """Walking forward with y up, the person's left must lie along cross(up, facing)."""
    clip = cmu_clips["131_01"]
    assert side_score(clip, "Hips", "LeftShoulder", "RightShoulder") > 0
    assert side_score(clip, "Hips", "LeftHip", "RightHip") > 0


def test_bandai_walk_is_right_handed() -> None:
    clip = read_bvh(BANDAI / "dataset-1" / "data" / "dataset-1_walk_normal_001.bvh")
    assert side_score(clip, "Hips", "Shoulder_L", "Shoulder_R") > 0
    assert side_score(clip, "Hips", "UpperLeg_L", "UpperLeg_R") > 0


# --- hand-written files: conventions and errors ---------------------------------------

TWO_JOINTS = """\
HIERARCHY
ROOT Base
{{
\tOFFSET 0 0 0
\tCHANNELS 6 Xposition Yposition Zposition {root_rotations}
\tJOINT Tip
\t{{
\t\tOFFSET 0 0 1
\t\tCHANNELS {tip_channels}
\t\tEnd Site
\t\t{{
\t\t\tOFFSET 0 0 1
\t\t}}
\t}}
}}
MOTION
Frames: {frames}
Frame Time: {frame_time}
{data}
"""


def write_bvh(tmp_path: Path, name: str = "clip.bvh", **fields: str) -> Path:
    """Write a two-joint BVH, letting each test break one field."""
    values = {
        "root_rotations": "Zrotation Xrotation Yrotation",
        "tip_channels": "3 Zrotation Xrotation Yrotation",
        "frames": "2",
        "frame_time": "0.04",
        "data": "1 2 3 90 90 0 0 0 0\n1 2 3 0 0 0 0 0 0",
    }
    values.update(fields)
    path = tmp_path / name
    path.write_text(TWO_JOINTS.format(**values))
    return path


def test_rotation_order_is_intrinsic_in_listed_order(tmp_path: Path) -> None:
    """Z90 then X90 (R = Rz @ Rx) sends child offset +z to +x; Rx @ Rz would give -y."""
    clip = read_bvh(write_bvh(tmp_path))
    assert clip.joint_names == ("Base", "Tip")
    assert clip.parents == (-1, 0)
    assert clip.fps == pytest.approx(25.0)
    np.testing.assert_allclose(clip.positions[0], [[1, 2, 3], [2, 2, 3]], atol=1e-6)
    np.testing.assert_allclose(clip.positions[1], [[1, 2, 3], [1, 2, 4]], atol=1e-6)


def test_position_channels_replace_offset(tmp_path: Path) -> None:
    path = write_bvh(
        tmp_path,
        tip_channels="6 Xposition Yposition Zposition Zrotation Xrotation Yrotation",
        frames="1",
        data="0 0 0 0 0 0 5 0 0 0 0 0",
    )
    np.testing.assert_allclose(read_bvh(path).positions[0, 1], [5, 0, 0])


def test_tolerates_crlf_tabs_comments_and_blank_lines(tmp_path: Path) -> None:
    text = write_bvh(tmp_path).read_text()
    messy = "# exported by hand\n\n" + text.replace("MOTION", "// motion follows\nMOTION\n")
    path = tmp_path / "messy.bvh"
    path.write_bytes(messy.replace("\n", "\r\n").encode())
    np.testing.assert_allclose(read_bvh(path).positions, read_bvh(write_bvh(tmp_path)).positions)


def assert_input_error(path: Path, fragment: str) -> None:
    """Reading ``path`` must fail with a one-line InputError naming the file."""
    with pytest.raises(InputError) as caught:
        read_bvh(path)
    message = str(caught.value)
    assert path.name in message
    assert "\n" not in message
    assert fragment in message.lower()


def test_missing_file(tmp_path: Path) -> None:
    assert_input_error(tmp_path / "absent.bvh", "no such file")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.bvh"
    path.write_text("")
    assert_input_error(path, "empty")


def test_whitespace_only_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.bvh"
    path.write_text(" \r\n\t\n")
    assert_input_error(path, "empty")


def test_no_hierarchy(tmp_path: Path) -> None:
    path = tmp_path / "nohier.bvh"
    path.write_text("MOTION\nFrames: 0\nFrame Time: 0.1\n")
    assert_input_error(path, "hierarchy")


def test_no_motion(tmp_path: Path) -> None:
    text = write_bvh(tmp_path).read_text()
    path = tmp_path / "nomotion.bvh"
    path.write_text(text[: text.index("MOTION")])
    assert_input_error(path, "motion")


def test_truncated_motion_fewer_frames(tmp_path: Path) -> None:
    assert_input_error(write_bvh(tmp_path, frames="3"), "truncated")


def test_truncated_motion_short_line(tmp_path: Path) -> None:
    path = write_bvh(tmp_path, data="1 2 3 90 90 0 0 0 0\n1 2 3 0 0 0 0 0")
    assert_input_error(path, "truncated")


def test_non_numeric_motion_value(tmp_path: Path) -> None:
    path = write_bvh(tmp_path, data="1 2 3 90 90 0 0 0 0\n1 2 3 0 zero 0 0 0 0")
    assert_input_error(path, "non-numeric")


def test_unknown_channel(tmp_path: Path) -> None:
    path = write_bvh(tmp_path, tip_channels="3 Zrotation Xrotation Wrotation")
    assert_input_error(path, "unknown channel")


def test_two_rotation_channels(tmp_path: Path) -> None:
    path = write_bvh(
        tmp_path,
        tip_channels="2 Zrotation Xrotation",
        data="1 2 3 0 0 0 0 0\n1 2 3 0 0 0 0 0",
    )
    assert_input_error(path, "rotation order")


def test_repeated_rotation_axis(tmp_path: Path) -> None:
    path = write_bvh(tmp_path, tip_channels="3 Zrotation Xrotation Zrotation")
    assert_input_error(path, "rotation order")


@pytest.mark.parametrize("frame_time", ["0", "-0.01"])
def test_frame_time_must_be_positive(tmp_path: Path, frame_time: str) -> None:
    assert_input_error(write_bvh(tmp_path, frame_time=frame_time), "frame time")
