"""Pose extraction on real footage, the tracker, and extraction's bad-input behaviour."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from actionrec.cli import main
from benchmarks.pose_vs_kinect import compare
from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.pose.estimator import MAX_IMAGE_SIDE, MediaPipePose
from skeleton.pose.tracker import LONE_MAX_GAP_MS, LONE_MAX_JUMP, PersonTracker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VIDEOS = DATA / "videos"


def test_extract_still_image_finds_the_player(tmp_path: Path) -> None:
    out = tmp_path / "ball.npz"
    assert main(["extract", str(VIDEOS / "basketball1.png"), "-o", str(out)]) == 0
    image, world = SkeletonDataset.load(out), SkeletonDataset.load(tmp_path / "ball.world.npz")
    assert (image.layout, image.dims, image.coordinate_space) == ("mediapipe33", 2, "image")
    assert (world.dims, world.coordinate_space, world.units) == (3, "camera", "m")
    person = image[0].coords[0, 0]
    assert np.isfinite(person).all()
    assert image[0].image_size == (640, 480)
    assert (person[:, 0] >= 0).all() and (person[:, 0] <= 640).all()
    # World landmarks in Kinect axes: y up, so the nose is above the ankles.
    skeleton = world[0].coords[0, 0]
    assert skeleton[0, 1] > skeleton[27:29, 1].max()


def test_labelled_folder_takes_labels_from_subfolders(tmp_path: Path) -> None:
    for label in ("dribble", "shoot"):
        (tmp_path / "clips" / label).mkdir(parents=True)
        shutil.copy(VIDEOS / "basketball1.png", tmp_path / "clips" / label / f"{label}.png")
    out = tmp_path / "labelled.npz"
    assert main(["extract", str(tmp_path / "clips"), "-o", str(out)]) == 0
    dataset = SkeletonDataset.load(out)
    assert dataset.label_names == ("dribble", "shoot")
    assert list(dataset.labels) == [0, 1]


def test_mediapipe_agrees_with_kinect_on_the_ntu_sample() -> None:
    """The real-footage check: MediaPipe on the NTU RGB video vs the Kinect joints."""
    result = compare()
    assert result.frames == 103 and result.frames_with_person >= 100
    assert result.pck_02_torso >= 0.9
    assert result.median_error_px < 20
    assert result.mpjpe_mm < 90
    # Same axes: the alignment needs little rotation. Swapping sides makes everything worse,
    # which is what a left/right mix-up in a layout or in the video's mirroring would show.
    assert result.alignment_rotation_deg < 25
    assert result.swapped_pck_02_torso < result.pck_02_torso - 0.3
    assert result.swapped_mpjpe_mm > result.mpjpe_mm * 1.5


def test_tracker_keeps_identities_when_detection_order_changes() -> None:
    rng = np.random.default_rng(0)
    base = [rng.uniform(0, 50, (33, 2)) + offset for offset in (0.0, 300.0)]
    tracker = PersonTracker()
    visibility = [np.ones(33), np.ones(33)]
    first = tracker.update(base, visibility, 0)
    for t in range(1, 20):
        moved = [b + t * 2.0 for b in base]
        order = [1, 0] if t % 2 else [0, 1]
        ids = tracker.update([moved[i] for i in order], [visibility[i] for i in order], t * 33)
        assert [ids[order.index(k)] for k in (0, 1)] == first
    assert tracker.active_tracks == 2


def test_tracker_starts_new_track_after_a_person_leaves_for_long() -> None:
    tracker = PersonTracker(max_age_ms=500)
    person = [np.tile(np.array([[100.0, 100.0]]), (33, 1)) + np.arange(33)[:, None]]
    (a,) = tracker.update(person, [np.ones(33)], 0)
    assert tracker.update([], [], 200) == []
    (b,) = tracker.update(person, [np.ones(33)], 400)
    (c,) = tracker.update(person, [np.ones(33)], 2000)
    assert a == b != c


def test_a_lone_sensor_skeleton_keeps_its_track_through_a_bounded_jump_right_after_a_frame_of_one() -> None:
    """With ``lone_person_stays`` (a sensor's skeletons: every body in each frame), one skeleton
    right after a frame of one skeleton is the same person though it jumped (within limits of time
    and distance), unless it is near another track; after a frame of nobody, or of two people,
    distance decides alone."""
    person = np.tile(np.array([[0.0, 0.0, 3.0]]), (20, 1)) + np.linspace(0.0, 1.7, 20)[:, None] * [0, 1, 0]
    jumped = person + [1.5, 0.0, 0.0]  # nearly a body's height sideways between two frames
    seen = [np.ones(20)]
    by_distance, sensor = PersonTracker(), PersonTracker(lone_person_stays=True)
    assert [by_distance.update([p], seen, t)[0] for t, p in enumerate((person, jumped, person))] == [0, 1, 0]
    assert [sensor.update([p], seen, t)[0] for t, p in enumerate((person, jumped, person))] == [0, 0, 0]
    assert sensor.update([], [], 3) == [] and sensor.update([jumped], seen, 4) == [1]  # nobody between
    other = person + [4.0, 0.0, 0.0]
    assert sensor.update([jumped, other], seen * 2, 5) == [1, 2]
    assert sensor.update([person + [0.0, 0.0, 3.0]], seen, 6) == [3]  # two before, near neither: a new one
    assert sensor.update([other], seen, 7) == [2]  # lone after lone, but near the track it is on
    assert sensor.update([person], seen, 8) == [0] and sensor.active_tracks == 4
    # "Right after" is within LONE_MAX_GAP_MS, and the jump at most LONE_MAX_JUMP body sizes.
    sensor = PersonTracker(lone_person_stays=True)
    step = [0.0, 0.0, 1.0]  # 0.59 body sizes (1.7 m): over the distance rule's 0.5
    assert sensor.update([person], seen, 0) == [0] and sensor.update([person + step], seen, LONE_MAX_GAP_MS + 1) == [1]
    far = person + step + [LONE_MAX_JUMP * 1.7 * 1.05, 0.0, 0.0]
    assert sensor.update([far], seen, LONE_MAX_GAP_MS + 2) == [2]
    assert sensor.update([far + step], seen, LONE_MAX_GAP_MS + 3) == [2]


def test_tracker_keeps_at_most_max_tracks_and_never_a_person_in_view() -> None:
    """People who match nothing arrive every millisecond: the oldest tracks end early, so the
    tracker stays at max_tracks, and a person present throughout keeps their id."""
    rng = np.random.default_rng(3)
    steady = rng.uniform(0, 20, (33, 2))
    tracker = PersonTracker(max_tracks=12)
    ids = []
    for t in range(300):
        strangers = [rng.uniform(0, 20, (33, 2)) + rng.uniform(100, 10_000, 2) for _ in range(3)]
        ids.append(tracker.update([steady + 0.01 * t, *strangers], [np.ones(33)] * 4, float(t))[0])
        assert tracker.active_tracks <= 12
    assert set(ids) == {ids[0]}
    crowd = [rng.uniform(0, 20, (33, 2)) + 1000.0 * i for i in range(20)]  # more than the limit at once
    assert len(set(tracker.update(crowd, [np.ones(33)] * 20, 300.0))) == 20 and tracker.active_tracks == 20


def test_tracker_matches_on_the_joints_seen_in_both_and_takes_3d_joints() -> None:
    rng = np.random.default_rng(1)
    near, far = rng.uniform(0, 1, (17, 3)), rng.uniform(0, 1, (17, 3)) + 5.0
    visible = np.ones(17)
    tracker = PersonTracker()
    first = tracker.update([near, far], [visible, visible], 0)
    # Joints a person does not show may hold anything, NaN included: they are not compared.
    hidden = np.ones(17)
    hidden[:10] = 0.0
    far_moved, near_moved = far + 0.05, near + 0.05
    far_moved[:10] = np.nan
    near_moved[:10] = 1000.0
    assert tracker.update([far_moved, near_moved], [hidden, hidden], 33) == first[::-1]
    # Nothing seen in common, so every joint is compared, and with NaN there is no distance: a
    # new track rather than an error.
    (new,) = tracker.update([far], [np.zeros(17)], 66)
    assert new not in first


def test_tracker_compares_all_joints_when_fewer_than_three_are_seen_in_both() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 1, (33, 2))
    b = a + 3.0
    tracker = PersonTracker()
    first = tracker.update([a, b], [np.ones(33)] * 2, 0)
    # Each person's one visible joint lies on the other's track; all their other joints on their own.
    near_a, near_b = a + 0.05, b + 0.05
    near_a[0], near_b[0] = b[0], a[0]
    one = np.zeros(33)
    one[0] = 1.0
    assert tracker.update([near_a, near_b], [one, one], 33) == first


def test_a_1080p_frame_decoded_at_half_size_gives_the_landmarks_of_a_full_decode(monkeypatch) -> None:
    """Scaled JPEG decoding (service.frames) poses the same people at the same pose width as a
    full decode, in the frame's own pixels."""
    import service.frames
    from service.frames import FrameLimits, check_frame
    from service.generated.actionrec.v1 import actionrec_pb2 as pb
    from service.posing import FramePoser
    from service.testing import encoded_frames
    from skeleton.windows import WindowSpec

    spec = WindowSpec(length=32, fps=15.0, layout="mediapipe33", dims=2, normalization="centre-torso")
    checked = [
        check_frame(pb.Frame(timestamp_ms=t, encoded=jpeg), i, FrameLimits())
        for i, (jpeg, t) in enumerate(encoded_frames(VIDEOS / "hugging_ntu_style.mp4", 8))
    ]

    def pose_all() -> list:
        poser = FramePoser(MediaPipePose(max_people=2), spec, 640)
        try:
            return [poser.pose(frame) for frame in checked]
        finally:
            poser.close()

    assert service.frames.decode_scale(checked[0], 640) == 2
    scaled = pose_all()
    monkeypatch.setattr(service.frames, "decode_scale", lambda frame, max_width: 1)
    full = pose_all()
    errors = []
    for a, b in zip(scaled, full):
        assert len(a.track_ids) == len(b.track_ids) >= 1
        # Match the people by their centres, then compare their visible joints.
        order = [int(np.argmin([np.linalg.norm(p.mean(0) - q.mean(0)) for q in b.image_xy])) for p in a.image_xy]
        visible = (a.visibility > 0.5) & (b.visibility[order] > 0.5)
        errors.extend(np.linalg.norm(a.image_xy - b.image_xy[order], axis=-1)[visible])
    assert np.median(errors) < 0.005 * 1920  # under 10 pixels of a 1920-pixel frame


def test_pose_refuses_non_increasing_timestamps() -> None:
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    with MediaPipePose(max_people=1) as pose:
        pose.estimate(frame, 10)
        with pytest.raises(InputError, match="does not follow"):
            pose.estimate(frame, 10)
        assert pose.estimate(frame, 11) == []  # still usable after the refusal


def test_pose_refuses_an_image_with_a_side_mediapipe_cannot_take() -> None:
    """MediaPipe aborts the process (SIGABRT, no exception) on a side of 32767 pixels or more."""
    with MediaPipePose(max_people=1) as pose:
        for shape in ((MAX_IMAGE_SIDE + 1, 1, 3), (1, MAX_IMAGE_SIDE + 1, 3)):
            with pytest.raises(InputError, match=f"has a side over {MAX_IMAGE_SIDE}"):
                pose.estimate(np.zeros(shape, dtype=np.uint8), 10)
        assert pose.estimate(np.zeros((MAX_IMAGE_SIDE, 1, 3), dtype=np.uint8), 11) == []


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _blank_video(path: Path, frames: int = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for _ in range(frames):
        writer.write(np.full((120, 160, 3), 90, dtype=np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: _write(d / "empty.mp4", b""), "empty file"),
        (lambda d: _write(d / "noise.mp4", b"\x00garbage" * 100), "not a readable video"),
        # FFmpeg would play it as a video of its characters
        (lambda d: _write(d / "labels.txt", b"0 drink water\n1 eat meal\n" * 40), "a text file, not a video"),
        (lambda d: _blank_video(d / "nobody.avi"), "no person found"),
    ],
    ids=["missing", "empty", "not-a-video", "text", "no-person"],
)
def test_extract_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, make_input, message) -> None:
    source = make_input(tmp_path)
    out = tmp_path / "out.npz"
    assert main(["extract", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("actionrec extract: error: ")
    assert source.name in err[-1] and message in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not out.exists() and not (tmp_path / "out.world.npz").exists()


def _posed(dims: int, coordinate_space: str, units: str) -> SkeletonDataset:
    """One short clip of one person, as extraction gives it (without posing anything)."""
    sequence = SkeletonSequence(
        name="clip",
        coords=np.zeros((4, 1, 33, dims), dtype=np.float32),
        confidence=np.ones((4, 1, 33), dtype=np.float32),
        timestamps_ms=uniform_timestamps(4, 30.0),
    )
    return SkeletonDataset.from_sequences(
        [sequence], layout="mediapipe33", coordinate_space=coordinate_space, units=units, fps=30.0
    )


def test_extract_writes_neither_file_when_the_world_file_fails(tmp_path: Path, monkeypatch) -> None:
    """The image and world files are a pair: a failure writing the second leaves neither."""
    image, world = _posed(2, "image", "px"), _posed(3, "camera", "m")
    monkeypatch.setattr("skeleton.pose.extract.extract_videos", lambda inputs, options: (image, world))
    save = SkeletonDataset.save

    def save_but_not_the_world_file(dataset: SkeletonDataset, path: Path, compact: bool = False) -> None:
        if dataset is world:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        save(dataset, path, compact)

    monkeypatch.setattr(SkeletonDataset, "save", save_but_not_the_world_file)
    out = tmp_path / "out" / "clips.npz"
    with pytest.raises(OSError, match="No space left"):
        main(["extract", str(VIDEOS / "basketball1.png"), "-o", str(out)])
    assert list(out.parent.iterdir()) == []  # no temporary file left either
