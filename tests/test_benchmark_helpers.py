"""The enrolment benchmark's pieces and the skeleton frames it sends: what reaches the service must be what
the data holds."""

from __future__ import annotations

import numpy as np

from benchmarks.enrolment import KINECT_CENTRE_PX, KINECT_FOCAL_PX, examples_per_action, kinect_pixels, skeleton_clip
from service.testing import skeleton_frames
from skeleton.dataset import SkeletonDataset
from skeleton.layouts import get_layout


def test_kinect_pixels_sees_camera_space_as_the_sensor_does() -> None:
    # On the optical axis, one metre to the sensor's left and half a metre up, 2 m away.
    joints = np.array([[0.0, 0.0, 2.0], [1.0, 0.5, 2.0]])
    pixels = kinect_pixels(joints)
    np.testing.assert_allclose(pixels[0], KINECT_CENTRE_PX)
    expected = (KINECT_CENTRE_PX[0] - KINECT_FOCAL_PX / 2, KINECT_CENTRE_PX[1] - KINECT_FOCAL_PX / 4)
    np.testing.assert_allclose(pixels[1], expected)  # image left and up: x right, y down
    # A joint at or behind the sensor (a tracking error) stays finite rather than flipping sides.
    assert np.isfinite(kinect_pixels(np.array([[0.3, 0.2, 0.0], [0.3, 0.2, -1.0]]))).all()


def test_examples_per_action_draws_distinct_examples_of_each_action_reproducibly() -> None:
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    drawn = examples_per_action(labels, shots=3, seed=7)
    assert sorted(drawn) == [0, 1, 2]
    for label, positions in drawn.items():
        assert len(set(positions.tolist())) == len(positions) == min(3, int((labels == label).sum()))
        assert (labels[positions] == label).all()
    again = examples_per_action(labels, shots=3, seed=7)
    assert all(np.array_equal(drawn[k], again[k]) for k in drawn)
    others = [examples_per_action(labels, shots=3, seed=s)[0] for s in range(8)]
    assert len({tuple(sorted(o.tolist())) for o in others}) > 1  # the seed decides the draw


def test_skeleton_clip_sends_every_frame_at_its_capture_time(msr: SkeletonDataset) -> None:
    # A real MSR sequence in which the sensor loses the person for a while: the lost frames are
    # not in the sequence, and the clip must keep the gap in its timestamps (not close it up).
    period = 1000.0 / msr.fps
    gaps = [np.diff(msr[i].timestamps_ms).max() for i in range(len(msr))]
    index = next(i for i, g in enumerate(gaps) if g > 5 * period)
    sequence, joints = msr[index], msr[index].coords.shape[2]
    seen = np.isfinite(sequence.coords[:, 0]).all(axis=-1)
    for dims, space in ((3, msr.coordinate_space), (2, "image")):
        clip = skeleton_clip(msr, index, dims).skeletons
        assert (clip.format.layout, clip.format.dims, clip.format.coordinate_space) == (msr.layout, dims, space)
        assert [f.timestamp_ms for f in clip.frames] == [int(round(t)) for t in sequence.timestamps_ms]
        assert np.diff([f.timestamp_ms for f in clip.frames]).max() > 5 * period
        assert [len(f.people) for f in clip.frames] == seen.any(axis=-1).astype(int).tolist()
        for t, frame in enumerate(clip.frames):
            for person in frame.people:
                assert len(person.coords) == joints * dims and np.isfinite(person.coords).all()
                # No confidences means every joint is seen (service.skeletons reads it so).
                assert (list(person.confidence) or [1.0] * joints) == seen[t].astype(np.float32).tolist()
    sent = np.array(skeleton_clip(msr, index, 3).skeletons.frames[0].people[0].coords).reshape(joints, 3)
    np.testing.assert_allclose(sent, np.nan_to_num(sequence.coords[0, 0]), rtol=1e-6)


def test_skeleton_frames_sends_what_a_sensor_missed_as_missing() -> None:
    person = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2)
    person[1, 2] = np.nan  # one joint lost
    person[2] = np.nan  # the whole person lost
    frames = skeleton_frames([person], [0, 40, 80])
    assert [len(f.people) for f in frames] == [1, 1, 0]
    assert list(frames[0].people[0].confidence) == []  # every joint seen
    assert list(frames[0].people[0].coords) == person[0].ravel().tolist()
    assert list(frames[1].people[0].confidence) == [1.0, 1.0, 0.0, 1.0]
    assert np.isfinite(frames[1].people[0].coords).all()


def test_a_camera_looking_further_down_leans_the_real_skeletons_towards_it(nw_ucla: SkeletonDataset) -> None:
    """Positive pitch is what a sensor mounted higher sees: up (+y) tilts towards the camera (-z),
    by the angle asked, and nothing else about the recording changes."""
    from benchmarks.camera_pitch import pitched, scored_part

    clip = nw_ucla.subset(scored_part(nw_ucla, "cross-view/train", view=2)[:3])
    turned = pitched(clip, 30.0)
    neck, pelvis = (clip.coords[:, 0, get_layout(clip.layout).index(j)] for j in ("neck", "pelvis"))
    neck_t, pelvis_t = (turned.coords[:, 0, get_layout(clip.layout).index(j)] for j in ("neck", "pelvis"))

    def lean(n: np.ndarray, p: np.ndarray) -> np.ndarray:
        spine = n - p
        return np.degrees(np.arctan2(-spine[:, 2], spine[:, 1]))  # towards -z, from +y

    np.testing.assert_allclose(np.median(lean(neck_t, pelvis_t) - lean(neck, pelvis)), 30.0, atol=0.5)
    np.testing.assert_allclose(np.linalg.norm(turned.coords, axis=-1), np.linalg.norm(clip.coords, axis=-1), rtol=1e-5)
    assert np.array_equal(turned.labels, clip.labels) and np.array_equal(turned.lengths, clip.lengths)
