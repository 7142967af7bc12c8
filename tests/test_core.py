"""Unit tests of the shared core on small synthetic arrays: shapes, edge cases, exact values.

Real-data behaviour is covered by test_layouts_real_data.py and test_readers.py; here the
inputs are built by hand so that every expected number is known exactly.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import skeleton.dataset as dataset_module
from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.layouts import KINECT20, MEDIAPIPE33, get_layout
from skeleton.mapping import derive_joint, layout_mapping
from skeleton.normalize import MAX_UPRIGHT_DEG, NORMALIZATIONS, normalize
from skeleton.resample import resample, resample_to_fps, sample_times

RNG = np.random.default_rng(0)

# A person standing in camera coordinates (y up, z away from the camera), facing the camera
# (-z): the person's left is cross(up, facing) = -x. Toes point at the camera.
_STANDING = {
    "pelvis": (0.0, 0.0, 0.0),
    "spine": (0.0, 0.25, 0.0),
    "neck": (0.0, 0.5, 0.0),
    "head": (0.0, 0.7, 0.0),
    **{
        f"{side}_{name}": (sign * x, y, z)
        for side, sign in (("left", -1.0), ("right", 1.0))
        for name, (x, y, z) in {
            "shoulder": (0.2, 0.5, 0.0),
            "elbow": (0.45, 0.5, 0.0),
            "wrist": (0.7, 0.5, 0.0),
            "hand": (0.78, 0.5, 0.0),
            "hip": (0.1, 0.0, 0.0),
            "knee": (0.1, -0.45, 0.0),
            "ankle": (0.1, -0.9, 0.0),
            "foot": (0.1, -0.95, -0.12),
        }.items()
    },
}


def standing_kinect20() -> np.ndarray:
    """(20, 3) standing skeleton in kinect20 order."""
    return np.array([_STANDING[name] for name in KINECT20.joints], dtype=np.float32)


def yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def sequence(name: str, frames: int, persons: int, joints: int = 20, dims: int = 3, **kw) -> SkeletonSequence:
    return SkeletonSequence(
        name=name,
        coords=RNG.normal(size=(frames, persons, joints, dims)).astype(np.float32),
        confidence=RNG.uniform(size=(frames, persons, joints)).astype(np.float32),
        timestamps_ms=uniform_timestamps(frames, 30.0),
        **kw,
    )


def small_dataset() -> SkeletonDataset:
    one = sequence("one", 4, 1, label=0, subject=3, view=1, image_size=(640, 480))
    two = sequence("two", 3, 2, label=1, subject=4, view=2, image_size=(1920, 1080))
    two.coords[1, 1, 5] = np.nan  # a missing joint of the second person
    two.coords[2, 1] = np.nan  # the second person left the picture
    three = sequence("three", 2, 1)  # unlabelled, unknown subject/view
    return SkeletonDataset.from_sequences(
        [one, two, three],
        layout="kinect20",
        coordinate_space="camera",
        units="m",
        fps=30.0,
        label_names=["wave", "kick"],
        splits={"cross-subject/train": [0, 2], "cross-subject/test": [1], "empty": []},
        source="synthetic",
        view_names=["front", "side"],
    )


# -- dataset --------------------------------------------------------------------------------


def test_from_sequences_pads_persons_with_nan() -> None:
    ds = small_dataset()
    assert ds.coords.shape == (9, 2, 20, 3)
    assert ds.lengths.tolist() == [4, 3, 2]
    assert ds.offsets.tolist() == [0, 4, 7]
    assert np.isnan(ds.coords[0:4, 1]).all()  # sequence "one" has one person
    assert (ds.confidence[0:4, 1] == 0).all()
    assert ds.persons_per_sequence().tolist() == [1, 2, 1]


def test_save_load_round_trip(tmp_path: Path) -> None:
    ds = small_dataset()
    path = tmp_path / "sub" / "ds.npz"
    ds.save(path)
    back = SkeletonDataset.load(path)
    for key in ("names", "labels", "subjects", "views", "image_sizes", "lengths", "timestamps_ms", "confidence"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ds, key), err_msg=key)
    np.testing.assert_array_equal(back.coords, ds.coords)  # NaN in the same places
    assert np.isnan(back.coords).sum() == np.isnan(ds.coords).sum() > 0
    assert back.coords.dtype == np.float32
    assert (back.layout, back.dims, back.coordinate_space, back.units, back.fps) == ("kinect20", 3, "camera", "m", 30.0)
    assert back.label_names == ("wave", "kick")
    assert back.view_names == ("front", "side")
    assert back.source == "synthetic"
    assert set(back.splits) == {"cross-subject/train", "cross-subject/test", "empty"}
    assert back.splits["cross-subject/train"].tolist() == [0, 2]
    assert back.splits["cross-subject/test"].tolist() == [1]
    assert back.splits["empty"].tolist() == []
    second = back[1]
    assert (second.name, second.label, second.subject, second.view) == ("two", 1, 4, 2)
    assert second.image_size == (1920, 1080)
    assert second.coords.shape == (3, 2, 20, 3)
    assert np.isnan(second.coords[2, 1]).all() and not np.isnan(second.coords[2, 0]).any()
    assert back.persons_per_sequence().tolist() == [1, 2, 1]
    assert [p.name for p in path.parent.iterdir()] == ["ds.npz"]


def test_subset_keeps_sequences_and_drops_splits() -> None:
    ds = small_dataset()
    sub = ds.subset([2, 0])
    assert sub.names.tolist() == ["three", "one"]
    np.testing.assert_array_equal(sub[1].coords, ds[0].coords)
    assert sub.splits == {}
    assert len(ds.subset([])) == 0


def test_save_failure_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ds.npz"
    path.write_bytes(b"the previous dataset")

    def failing_savez(f, **arrays) -> None:
        f.write(b"half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module.np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        small_dataset().save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ds.npz"]
    assert path.read_bytes() == b"the previous dataset"


def test_save_interrupted_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(f, **arrays) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset_module.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        small_dataset().save(tmp_path / "ds.npz")
    assert list(tmp_path.iterdir()) == []


def test_saved_file_has_the_permissions_of_any_new_file(tmp_path: Path) -> None:
    # mkstemp creates 0600 files; a dataset should be as readable as any file the user writes
    # (umask applies), or another account (CI, the service) cannot read it.
    small_dataset().save(tmp_path / "ds.npz")
    (tmp_path / "plain").write_bytes(b"")
    mode = stat.S_IMODE(os.stat(tmp_path / "ds.npz").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode), oct(mode)


def test_load_rejects_other_files(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(InputError, match="foreign.npz"):
        SkeletonDataset.load(foreign)
    with pytest.raises(InputError, match="no such dataset file"):
        SkeletonDataset.load(tmp_path / "missing.npz")


def test_validate_rejects_inconsistent_arrays() -> None:
    with pytest.raises(InputError, match="label 2 has no name"):
        SkeletonDataset.from_sequences(
            [sequence("a", 2, 1, label=2)],
            layout="kinect20",
            coordinate_space="camera",
            units="m",
            fps=30,
            label_names=["x"],
        )
    with pytest.raises(InputError, match="indexes past"):
        SkeletonDataset.from_sequences(
            [sequence("a", 2, 1)], layout="kinect20", coordinate_space="camera", units="m", fps=30, splits={"s": [1]}
        )
    with pytest.raises(InputError, match="expected"):
        SkeletonDataset.from_sequences(
            [sequence("a", 2, 1, joints=13)], layout="kinect20", coordinate_space="camera", units="m", fps=30
        )
    with pytest.raises(InputError, match="no sequences"):
        SkeletonDataset.from_sequences([], layout="kinect20", coordinate_space="camera", units="m", fps=30)


def _edited(path: Path, **changes: np.ndarray) -> Path:
    """``small_dataset`` saved to ``path`` with some of its arrays replaced, as a hand edit would."""
    small_dataset().save(path)
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    np.savez(path, **{**arrays, **changes})
    return path


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"header": np.array("[1, 2]")}, "its header is not a JSON object"),
        ({"labels": np.array([0.0, 1.0, -1.0])}, "labels holds float64 values, not integers"),
        ({"split/cross-subject/test": np.array([1.0])}, "split 'cross-subject/test' holds float64 values"),
        ({"image_sizes": np.zeros(3, dtype=np.int64)}, r"image_sizes has shape \(3,\), expected \(3, 2\)"),
        ({"labels": np.array([0, -2, -1])}, "label -2 is neither a class index nor -1"),
        ({"lengths": np.array([6, 0, 3])}, "sequence 1 has 0 frames"),
    ],
)
def test_load_refuses_a_hand_edited_file_naming_it(tmp_path: Path, changes: dict, message: str) -> None:
    path = _edited(tmp_path / "edited.npz", **changes)
    with pytest.raises(InputError, match=message) as error:
        SkeletonDataset.load(path)
    assert str(error.value).startswith(f"{path}: ")


# -- the model card -------------------------------------------------------------------------


def _card_metadata(**window_changes: object) -> dict[str, str]:
    from skeleton.artifact import ModelCard
    from skeleton.windows import WindowSpec

    spec = WindowSpec(layout="kinect20", dims=3, length=8, fps=15.0, normalization="centre-torso")
    card = ModelCard(name="toy", labels=("a", "b"), window=spec, embedding_size=16, input_space="camera")
    metadata = {**card.to_metadata(), "actionrec.training_data": "toy.npz, split all", "actionrec.protocol": "toy"}
    metadata.update({"actionrec.accuracy": '{"test": 0.5}', "actionrec.source_commit": "abc"})
    window = {**json.loads(metadata["actionrec.window"]), **window_changes}
    return {**metadata, "actionrec.window": json.dumps(window)}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"actionrec.labels": json.dumps("ab")}, "labels must be a list of names, not a str"),
        ({"actionrec.labels": json.dumps({"a": 0, "b": 1})}, "labels must be a list of names, not a dict"),
        ({"actionrec.labels": "[]"}, "labels must be a non-empty list"),
        ({"actionrec.embedding_size": "16.0"}, "embedding size must be a positive integer, not 16.0"),
        ({"actionrec.embedding_size": "true"}, "embedding size must be a positive integer, not True"),
        ({"actionrec.card_version": "true"}, "model card version True is not supported"),
        ({"actionrec.window": _card_metadata(length=8.0)["actionrec.window"]}, "window length .* not 8.0"),
        ({"actionrec.window": _card_metadata(length="8")["actionrec.window"]}, "window length .* not '8'"),
        ({"actionrec.window": _card_metadata(dims=3.0)["actionrec.window"]}, "window dims must be 2 or 3, not 3.0"),
        ({"actionrec.window": _card_metadata(dims=True)["actionrec.window"]}, "window dims must be 2 or 3, not True"),
        ({"actionrec.window": _card_metadata(fps="15")["actionrec.window"]}, "frame rate must be a number"),
        ({"actionrec.window": _card_metadata(layout=["kinect20"])["actionrec.window"]}, "layout must be a layout"),
    ],
)
def test_card_refuses_metadata_of_the_wrong_types(changes: dict, message: str) -> None:
    """Hand-edited metadata: a string or an object is not a list of labels, and a float or a bool
    is not a count, though Python would take each for the other."""
    from skeleton.artifact import ModelCard

    with pytest.raises(InputError, match=message) as error:
        ModelCard.from_metadata({**_card_metadata(), **changes}, "toy.onnx")
    assert str(error.value).startswith("toy.onnx: ")


# -- mapping --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("mediapipe33", "penn13"),
        ("mediapipe33", "kinect20"),
        ("ntu25", "kinect20"),
        ("bandai21", "kinect20"),
        ("cmu31", "kinect20"),
        ("msr20", "kinect20"),
    ],
)
def test_mappings_exist_and_are_affine(source: str, target: str) -> None:
    mapping = layout_mapping(source, target)
    assert mapping.weights.shape == (get_layout(target).num_joints, get_layout(source).num_joints)
    # Each target joint is a weighted mean (weights add up to 1): a translation moves it alike.
    np.testing.assert_allclose(mapping.weights.sum(axis=1), 1.0, atol=1e-6)
    coords = RNG.normal(size=(2, 1, mapping.source.num_joints, 3)).astype(np.float32)
    shift = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    moved, _ = mapping.apply(coords + shift)
    np.testing.assert_allclose(moved, mapping.apply(coords)[0] + shift, atol=1e-5)
    assert layout_mapping(source, target) is mapping  # cached


def test_same_named_joints_are_copied() -> None:
    for source in ("ntu25", "cmu31", "msr20"):
        mapping = layout_mapping(source, "kinect20")
        for d, name in enumerate(KINECT20.joints):
            expected = np.zeros(mapping.source.num_joints)
            expected[mapping.source.index(name)] = 1.0
            np.testing.assert_array_equal(mapping.weights[d], expected, err_msg=f"{source}: {name}")


def test_msr20_to_kinect20_reorders_file_order() -> None:
    msr = get_layout("msr20")
    coords = np.arange(20 * 3, dtype=np.float32).reshape(1, 20, 3)
    mapped, _ = layout_mapping("msr20", "kinect20").apply(coords)
    for name in KINECT20.joints:
        np.testing.assert_array_equal(mapped[0, KINECT20.index(name)], coords[0, msr.index(name)])


def test_impossible_mapping_raises() -> None:
    with pytest.raises(InputError, match="kinect20.*mediapipe33"):
        layout_mapping("kinect20", "mediapipe33")
    with pytest.raises(InputError, match="unknown joint layout"):
        layout_mapping("kinect21", "kinect20")


def test_derived_joints_have_the_documented_recipes() -> None:
    coords = RNG.normal(size=(5, 2, 33, 3)).astype(np.float32)
    j = {name: coords[..., MEDIAPIPE33.index(name), :] for name in MEDIAPIPE33.joints}
    mid_hips = 0.5 * (j["left_hip"] + j["right_hip"])
    np.testing.assert_allclose(derive_joint(coords, MEDIAPIPE33, "pelvis"), mid_hips, atol=1e-6)
    mapped, _ = layout_mapping("mediapipe33", "kinect20").apply(coords)
    k = {name: mapped[..., KINECT20.index(name), :] for name in KINECT20.joints}
    np.testing.assert_allclose(k["pelvis"], mid_hips, atol=1e-5)
    np.testing.assert_allclose(k["neck"], 0.5 * (j["left_shoulder"] + j["right_shoulder"]), atol=1e-5)
    np.testing.assert_allclose(k["spine"], 0.5 * (k["pelvis"] + k["neck"]), atol=1e-5)
    np.testing.assert_allclose(k["head"], 0.5 * (j["left_ear"] + j["right_ear"]), atol=1e-5)
    np.testing.assert_allclose(k["left_hand"], 0.5 * (j["left_index"] + j["left_pinky"]), atol=1e-5)
    np.testing.assert_allclose(k["right_foot"], j["right_foot_index"], atol=1e-6)
    bandai = get_layout("bandai21")
    b = RNG.normal(size=(3, bandai.num_joints, 3)).astype(np.float32)
    mapped, _ = layout_mapping("bandai21", "kinect20").apply(b)
    wrist, elbow = b[:, bandai.index("left_wrist")], b[:, bandai.index("left_elbow")]
    np.testing.assert_allclose(mapped[:, KINECT20.index("left_hand")], wrist + 0.2 * (wrist - elbow), atol=1e-5)


def test_mapping_keeps_nan_local() -> None:
    coords = RNG.normal(size=(4, 1, 33, 3)).astype(np.float32)
    confidence = np.full((4, 1, 33), 0.9, dtype=np.float32)
    coords[1, 0, MEDIAPIPE33.index("left_index")] = np.nan  # only feeds left_hand
    coords[2, 0, MEDIAPIPE33.index("left_hip"), 2] = np.nan  # one channel is enough to be missing
    confidence[3, 0, MEDIAPIPE33.index("right_pinky")] = 0.2
    mapped, conf = layout_mapping("mediapipe33", "kinect20").apply(coords, confidence)
    missing = np.isnan(mapped).any(axis=-1)[:, 0]  # (T, 20)
    names = np.array(KINECT20.joints)
    assert names[missing[0]].tolist() == []
    assert names[missing[1]].tolist() == ["left_hand"]
    assert sorted(names[missing[2]].tolist()) == ["left_hip", "pelvis", "spine"]
    assert names[missing[3]].tolist() == []
    assert np.isnan(mapped[:, 0][missing]).all()  # the whole joint, every channel
    assert conf[3, 0, KINECT20.index("right_hand")] == pytest.approx(0.2)  # the weakest ingredient
    assert conf[3, 0, KINECT20.index("left_hand")] == pytest.approx(0.9)


# -- normalisation --------------------------------------------------------------------------


def test_normalize_centres_and_scales_by_torso() -> None:
    base = standing_kinect20()
    frames = np.stack([base * 1.7 + np.array([0.3 + 0.01 * t, 1.0, 3.0]) for t in range(10)])[:, None]
    out = normalize(frames, KINECT20, "camera")
    assert out.shape == frames.shape and out.dtype == np.float32
    pelvis, neck = out[:, 0, KINECT20.index("pelvis")], out[:, 0, KINECT20.index("neck")]
    np.testing.assert_allclose(pelvis.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(neck - pelvis, axis=-1), 1.0, rtol=1e-5)


def test_normalize_image_space_turns_y_up() -> None:
    penn = get_layout("penn13")
    image = np.zeros((1, 1, 13, 2), dtype=np.float32)
    y = {"head": 100, "shoulder": 150, "elbow": 200, "wrist": 240, "hip": 300, "knee": 400, "ankle": 500}
    for i, name in enumerate(penn.joints):
        part = name.split("_", 1)[-1]
        x = 320 + {"left": 40, "right": -40}.get(name.split("_")[0], 0)
        image[0, 0, i] = (x, y[part])
    out = normalize(image, penn, "image")
    height = {name: out[0, 0, penn.index(name), 1] for name in ("head", "left_hip", "left_ankle")}
    assert height["head"] > height["left_hip"] > height["left_ankle"]
    # x is kept as is: only y changes sign.
    assert out[0, 0, penn.index("left_shoulder"), 0] > out[0, 0, penn.index("right_shoulder"), 0]
    torso = np.linalg.norm(
        derive_joint(out, penn, "neck") - derive_joint(out, penn, "pelvis"),
        axis=-1,
    )
    np.testing.assert_allclose(torso, 1.0, rtol=1e-5)


def test_a_window_whose_torso_is_never_seen_is_scaled_by_its_body_not_by_one_pixel() -> None:
    """Hips out of view (or not annotated) in every frame: no torso to measure. The window is
    scaled by the spread of the joints it has, so pixel coordinates come out body-sized, not
    hundreds of units wide (which a model, and its INT8 variant most of all, cannot take)."""
    penn = get_layout("penn13")
    image = np.zeros((4, 1, 13, 2), dtype=np.float32)
    y = {"head": 100, "shoulder": 150, "elbow": 200, "wrist": 240, "hip": 300, "knee": 400, "ankle": 500}
    for i, name in enumerate(penn.joints):
        x = 320 + {"left": 40, "right": -40}.get(name.split("_")[0], 0)
        image[:, 0, i] = (x, y[name.split("_", 1)[-1]])
    seen = normalize(image, penn, "image")
    image[:, 0, [penn.index("left_hip"), penn.index("right_hip")]] = np.nan
    unseen = normalize(image, penn, "image")
    assert np.isfinite(unseen[:, :, [penn.index("head"), penn.index("left_ankle")]]).all()
    assert np.nanmax(np.abs(unseen)) < 3.0
    # the same body, about the same size: the head-to-ankle length within a factor of 1.5
    length = lambda out: out[0, 0, penn.index("head"), 1] - out[0, 0, penn.index("left_ankle"), 1]  # noqa: E731
    assert 1 / 1.5 < length(unseen) / length(seen) < 1.5


@pytest.mark.parametrize("angle", [0.0, 0.7, np.pi / 2, 2.5, -2.0])
def test_align_turns_hips_onto_x_and_person_to_face_plus_z(angle: float) -> None:
    base = standing_kinect20() @ yaw(angle).T.astype(np.float32) + np.array([0.5, 0.0, 2.5], dtype=np.float32)
    frames = np.repeat(base[None, None], 3, axis=0)
    out = normalize(frames, KINECT20, "camera", "centre-torso-align")
    hips = out[0, 0, KINECT20.index("left_hip")] - out[0, 0, KINECT20.index("right_hip")]
    assert hips[0] > 0
    assert abs(hips[2]) < 1e-5 and abs(hips[1]) < 1e-5
    toes = out[0, 0, KINECT20.index("left_foot")] - out[0, 0, KINECT20.index("left_ankle")]
    assert toes[2] > 0 and abs(toes[0]) < 1e-5  # faces +z: left = cross(up, facing) holds
    # A rotation about y: heights and distances do not change.
    plain = normalize(frames, KINECT20, "camera")
    np.testing.assert_allclose(out[..., 1], plain[..., 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(plain, axis=-1), atol=1e-5)


def pitch(angle: float) -> np.ndarray:
    """A rotation about x: a positive ``angle`` leans a standing person's top towards +z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def roll(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def spine_tilt_deg(out: np.ndarray) -> np.ndarray:
    """The angle of each frame's spine (pelvis -> neck) to +y, in degrees."""
    spine = out[:, 0, KINECT20.index("neck")] - out[:, 0, KINECT20.index("pelvis")]
    return np.degrees(np.arccos(spine[:, 1] / np.linalg.norm(spine, axis=-1)))


def test_upright_undoes_the_cameras_pitch_and_roll() -> None:
    """The same standing person seen level and by a camera looking down and rolled comes out the
    same once stood upright; without "upright" the tilt stays in the window."""
    level = np.repeat(standing_kinect20()[None, None], 3, axis=0)
    tilted = (level @ (pitch(0.45) @ roll(0.15)).T).astype(np.float32) + np.float32([0.3, 1.0, 3.0])
    expected = normalize(level, KINECT20, "camera", "centre-torso-align")
    upright = normalize(tilted, KINECT20, "camera", "centre-torso-upright-align")
    np.testing.assert_allclose(upright, expected, atol=1e-5)
    assert spine_tilt_deg(normalize(tilted, KINECT20, "camera", "centre-torso-align")).min() > 20


def test_upright_keeps_a_bend_and_stops_at_the_steepest_camera() -> None:
    """The frames in which the person stands say where up is, so a bend later in the window is
    kept; a window spent lying down is leaned back by at most MAX_UPRIGHT_DEG, not stood up."""
    standing = standing_kinect20()
    bent = standing @ pitch(np.radians(60)).T  # about the pelvis, which is the origin
    window = np.stack([standing] * 4 + [bent] * 6)[:, None] @ pitch(np.radians(20)).T
    tilt = spine_tilt_deg(normalize(window.astype(np.float32), KINECT20, "camera", "centre-torso-upright-align"))
    np.testing.assert_allclose(tilt[:4], 0.0, atol=1e-3)
    np.testing.assert_allclose(tilt[4:], 60.0, atol=1e-3)
    lying = np.repeat((standing @ pitch(np.radians(90)).T)[None, None], 5, axis=0).astype(np.float32)
    tilt = spine_tilt_deg(normalize(lying, KINECT20, "camera", "centre-torso-upright-align"))
    np.testing.assert_allclose(tilt, 90.0 - MAX_UPRIGHT_DEG, atol=1e-3)


def test_upright_ignores_a_glitched_spine_and_survives_windows_with_no_clear_up() -> None:
    """A frame whose neck fell onto its pelvis (a tracking glitch) does not decide where up is;
    frames leaning opposite ways, or a person upside down, give a finite window, never NaN."""
    standing = standing_kinect20()
    window = np.repeat((standing @ pitch(np.radians(20)).T)[None, None], 6, axis=0).astype(np.float32)
    glitch = window[2, 0].copy()
    glitch[KINECT20.index("neck")] = glitch[KINECT20.index("pelvis")] + np.float32([0.0, 0.05, 0.0])
    window[2, 0] = glitch
    tilt = spine_tilt_deg(normalize(window, KINECT20, "camera", "centre-torso-upright-align"))
    np.testing.assert_allclose(np.delete(tilt, 2), 0.0, atol=1e-3)
    forwards, backwards = standing @ pitch(np.radians(90)).T, standing @ pitch(np.radians(-90)).T
    lying = np.stack([forwards, backwards] * 3)[:, None].astype(np.float32)
    upside_down = np.repeat((standing @ pitch(np.pi).T)[None, None], 4, axis=0).astype(np.float32)
    nearly = np.repeat((standing @ pitch(np.pi - 1e-4).T)[None, None], 4, axis=0).astype(np.float32)
    for frames in (lying, upside_down, nearly):
        out = normalize(frames, KINECT20, "camera", "centre-torso-upright-align")
        assert np.isfinite(out).all()
    # upside down, exactly or a hair off, is leaned back by the same MAX_UPRIGHT_DEG
    for frames in (upside_down, nearly):
        tilt = spine_tilt_deg(normalize(frames, KINECT20, "camera", "centre-torso-upright-align"))
        np.testing.assert_allclose(tilt, 180.0 - MAX_UPRIGHT_DEG, atol=0.01)


@pytest.mark.parametrize("method", NORMALIZATIONS)
@pytest.mark.parametrize(("layout", "dims", "space"), [("kinect20", 3, "camera"), ("penn13", 2, "image")])
def test_normalize_all_nan_gives_all_nan_without_warnings(method: str, layout: str, dims: int, space: str) -> None:
    coords = np.full((4, 2, get_layout(layout).num_joints, dims), np.nan, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize(coords, get_layout(layout), space, method)
    assert out.shape == coords.shape
    assert np.isnan(out).all()


def test_normalize_keeps_nan_where_it_was_and_adds_none() -> None:
    frames = np.repeat(standing_kinect20()[None, None], 4, axis=0) + RNG.normal(scale=0.01, size=(4, 2, 20, 3))
    frames = frames.astype(np.float32)
    frames[:, 1] = np.nan  # a second person never seen
    frames[2, 0, KINECT20.index("left_hand")] = np.nan
    for method in ("centre-torso", "centre-torso-align", "centre-torso-upright-align"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = normalize(frames, KINECT20, "camera", method)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(frames))


def test_bones_give_each_joint_as_the_offset_from_its_parent_after_aligning() -> None:
    frames = np.repeat(standing_kinect20()[None, None], 3, axis=0) + RNG.normal(scale=0.01, size=(3, 1, 20, 3))
    frames = frames.astype(np.float32)
    frames[1, 0, KINECT20.index("left_elbow")] = np.nan
    joints = normalize(frames, KINECT20, "camera", "centre-torso-align")
    bones = normalize(frames, KINECT20, "camera", "centre-torso-align-bones")
    children = {child for child, _ in KINECT20.bones}
    (root,) = [j for j in KINECT20.joints if j not in children]
    np.testing.assert_array_equal(bones[..., KINECT20.index(root), :], joints[..., KINECT20.index(root), :])
    for child, parent in KINECT20.bones:
        offset = joints[..., KINECT20.index(child), :] - joints[..., KINECT20.index(parent), :]
        np.testing.assert_allclose(bones[..., KINECT20.index(child), :], offset, atol=1e-6)
    # a missing joint leaves its own bone and its children's missing, nothing else
    missing = {KINECT20.index(c) for c, p in KINECT20.bones if "left_elbow" in (c, p)}
    assert set(np.flatnonzero(np.isnan(bones[1, 0]).any(axis=1))) == missing


def test_normalize_unknown_method() -> None:
    with pytest.raises(InputError, match="unknown normalisation"):
        normalize(np.zeros((1, 1, 20, 3)), KINECT20, "camera", "whiten")


# -- resampling -----------------------------------------------------------------------------


def test_30_to_15_fps_takes_every_other_frame_exactly() -> None:
    values = RNG.normal(size=(31, 2, 20, 3)).astype(np.float32)
    out, times = resample_to_fps(values, uniform_timestamps(31, 30.0), 15.0)
    np.testing.assert_array_equal(out, values[::2])
    np.testing.assert_allclose(times, uniform_timestamps(16, 15.0))


def test_25_to_30_fps_interpolates_linearly() -> None:
    values = np.array([0.0, 10.0, 30.0, 60.0, 100.0], dtype=np.float32)[:, None]  # at 0, 40, 80, 120, 160 ms
    out, times = resample_to_fps(values, uniform_timestamps(5, 25.0), 30.0)
    np.testing.assert_allclose(times, [0.0, 100 / 3, 200 / 3, 100.0, 400 / 3])  # 166.7 ms is past the end
    # 33.3 ms: 5/6 of the way from 0 to 10; 66.7: 2/3 of 10..30; 100: half of 30..60; 133.3: 1/3 of 60..100.
    np.testing.assert_allclose(out[:, 0], [0.0, 25 / 3, 10 + 20 * 2 / 3, 45.0, 60 + 40 / 3], rtol=1e-5)


def test_resample_is_exact_on_a_linear_signal() -> None:
    stamps = np.array([0.0, 13.0, 40.0, 41.0, 90.0, 200.0])
    values = (3.0 * stamps - 7.0).astype(np.float32)[:, None, None]
    targets = np.linspace(0.0, 200.0, 37)
    np.testing.assert_allclose(resample(values, stamps, targets)[:, 0, 0], 3.0 * targets - 7.0, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("stamps", [[0.0, 33.0, 33.0, 66.0], [0.0, 33.0, 20.0, 66.0]])
def test_non_increasing_timestamps_raise(stamps: list[float]) -> None:
    with pytest.raises(InputError, match="increase"):
        resample(np.zeros((4, 3), dtype=np.float32), np.array(stamps), np.array([10.0]))


def test_frame_and_timestamp_counts_must_match() -> None:
    with pytest.raises(InputError, match="frames but"):
        resample(np.zeros((4, 3), dtype=np.float32), np.arange(3.0), np.array([1.0]))


def test_gap_longer_than_max_gap_gives_nan() -> None:
    stamps = np.array([0.0, 33.0, 66.0, 500.0, 533.0])  # the person was lost for 434 ms
    values = np.arange(5, dtype=np.float32)[:, None]
    targets = np.array([16.5, 66.0, 100.0, 300.0, 499.0, 500.0, 516.5])
    out = resample(values, stamps, targets, max_gap_ms=100.0)[:, 0]
    assert out[0] == pytest.approx(0.5)
    assert out[1] == 2.0  # exactly on the frame before the gap
    assert np.isnan(out[2:5]).all()
    assert out[5] == 3.0 and out[6] == pytest.approx(3.5)
    # Without a limit the gap is bridged.
    assert resample(values, stamps, targets)[3, 0] == pytest.approx(2 + (300 - 66) / 434)


def test_times_outside_the_observed_span_give_nan() -> None:
    stamps = np.array([100.0, 200.0, 300.0])
    values = np.array([1.0, 2.0, 3.0], dtype=np.float32)[:, None]
    out = resample(values, stamps, np.array([0.0, 99.9, 100.0, 250.0, 300.0, 300.1, 1000.0]))[:, 0]
    assert np.isnan(out[[0, 1, 5, 6]]).all()
    np.testing.assert_allclose(out[[2, 3, 4]], [1.0, 2.5, 3.0])


def test_missing_values_stay_local() -> None:
    values = np.array([[0.0, 0.0], [np.nan, 10.0], [20.0, 20.0]], dtype=np.float32)
    out = resample(values, np.array([0.0, 10.0, 20.0]), np.array([0.0, 5.0, 10.0, 20.0]))
    np.testing.assert_array_equal(np.isnan(out[:, 0]), [False, True, True, False])
    np.testing.assert_allclose(out[:, 1], [0.0, 5.0, 10.0, 20.0])


def test_resample_edge_cases() -> None:
    empty = resample(np.zeros((0, 20, 3), dtype=np.float32), np.zeros(0), np.array([0.0, 10.0]))
    assert empty.shape == (2, 20, 3) and np.isnan(empty).all()
    single = resample(np.ones((1, 2), dtype=np.float32), np.array([5.0]), np.array([5.0, 6.0]))
    np.testing.assert_array_equal(single[0], [1.0, 1.0])
    assert np.isnan(single[1]).all()
    assert sample_times(0.0, 100.0, 30.0).tolist() == pytest.approx([0.0, 100 / 3, 200 / 3, 100.0])
    with pytest.raises(InputError, match="not positive"):
        sample_times(0.0, 100.0, 0.0)
    # The last sample time computed a rounding error past the last frame is that frame, not missing.
    end = np.arange(21) * 1000 / 15
    assert 10 * (1000 / 7.5) > end[-1]
    values = np.arange(21, dtype=np.float32)[:, None]
    resampled, times = resample_to_fps(values, end, 7.5)
    assert times[-1] == end[-1] and resampled[:, 0].tolist() == list(range(0, 21, 2))


def test_remap_gives_a_model_the_clips_the_original_gives_it_gaps_included() -> None:
    """``remap`` stores a dataset at a model's layout and rate; a sensor loss in a sequence (its
    frames dropped, the others keeping their times) must stay a gap, not be bridged."""
    from export.data import clips_from_dataset
    from skeleton.resample import MAX_INTERPOLATED_GAP_MS
    from skeleton.transform import remap
    from skeleton.windows import WindowSpec

    lost = sequence("lost", 40, 1, label=0)
    kept = np.r_[0:10, 25:40]  # 15 frames at 30 fps (500 ms) unseen: over the limit
    assert (kept[10] - kept[9]) * 1000 / 30 > MAX_INTERPOLATED_GAP_MS
    lost = SkeletonSequence(
        name="lost",
        coords=lost.coords[kept],
        confidence=lost.confidence[kept],
        timestamps_ms=lost.timestamps_ms[kept],
        label=0,
    )
    original = SkeletonDataset.from_sequences(
        [lost], layout="kinect20", coordinate_space="camera", units="m", fps=30.0, label_names=["wave"]
    )
    spec = WindowSpec(layout="kinect20", dims=3, length=8, fps=15.0, normalization="centre-torso")
    [direct] = clips_from_dataset(original, spec)
    [stored] = clips_from_dataset(remap(original, "kinect20", 15.0), spec)
    np.testing.assert_allclose(stored.frames, direct.frames, equal_nan=True, atol=1e-6)
    seen = np.isfinite(direct.frames).all(axis=(1, 2))
    assert not seen.all() and seen[:5].all() and seen[-7:].all()


@pytest.mark.parametrize(
    "argv, line",
    [
        (["serve", "--port", "abc"], "actionrec serve: error: argument --port: invalid int value: 'abc'"),
        ([], "actionrec: error: the following arguments are required: COMMAND"),
        (["train"], "actionrec train: error: the following arguments are required: --config"),
        (
            ["client", "0", "--width", "8"],
            "actionrec client: error: argument --width: 8 pixels is too narrow to pose (0, or at least 64)",
        ),
    ],
)
def test_a_malformed_command_line_is_refused_in_one_line(argv: list[str], line: str, capsys) -> None:
    from actionrec.cli import main

    with pytest.raises(SystemExit) as refused:
        main(argv)
    err = capsys.readouterr().err
    assert refused.value.code == 2
    assert err.splitlines() == [f"{line} (see {line.split(': error')[0]} --help)"]
