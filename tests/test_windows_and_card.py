"""The train/serve contract: window preparation and the model card in ONNX metadata."""

from __future__ import annotations

import numpy as np
import pytest

from skeleton.artifact import ModelCard
from skeleton.errors import InputError
from skeleton.windows import WindowSpec, fit_length, prepare_window, to_model_space, window_starts

SPEC = WindowSpec(layout="penn13", dims=2, length=8, fps=15.0, normalization="centre-torso")


def _card(**changes) -> ModelCard:
    values = dict(name="toy", labels=("a", "b"), window=SPEC, embedding_size=16, input_space="image")
    values.update(training_data="toy.npz, split all", protocol="fine-tune", accuracy={"test": 0.5}, source_commit="abc")
    return ModelCard(**{**values, **changes})


def test_fit_length_crops_centred_and_pads_by_holding_edges() -> None:
    frames = np.arange(10)[:, None]
    assert fit_length(frames, 4).ravel().tolist() == [3, 4, 5, 6]
    assert fit_length(frames, 4, start=9).ravel().tolist() == [6, 7, 8, 9]
    assert fit_length(np.arange(3)[:, None], 7).ravel().tolist() == [0, 0, 0, 1, 2, 2, 2]
    with pytest.raises(InputError):
        fit_length(np.zeros((0, 2)), 4)


def test_window_starts_cover_the_clip_to_its_end() -> None:
    assert window_starts(5, 8, 4) == [0]
    assert window_starts(20, 8, 4) == [0, 4, 8, 12]
    assert window_starts(19, 8, 4) == [0, 4, 8, 11]


def test_mediapipe_maps_into_a_2d_model_and_3d_is_refused() -> None:
    coords = np.random.default_rng(0).normal(size=(5, 33, 2)).astype(np.float32)
    mapped, _ = to_model_space(coords, None, "mediapipe33", SPEC)
    assert mapped.shape == (5, 13, 2)
    with pytest.raises(InputError, match="2-D"):
        to_model_space(np.zeros((5, 33, 3)), None, "mediapipe33", SPEC)


def test_prepare_window_fills_missing_joints_with_zeros() -> None:
    window = np.random.default_rng(1).normal(size=(8, 13, 2)).astype(np.float32) * 50 + 300
    window[2, 5] = np.nan
    prepared = prepare_window(window, SPEC, "image")
    assert prepared.shape == (8, 13, 2) and np.isfinite(prepared).all()
    assert prepared[2, 5].tolist() == [0.0, 0.0]


def test_window_spec_rejects_nonsense() -> None:
    for bad in (
        dict(dims=4),
        dict(length=1),
        dict(fps=0),
        dict(fps=float("inf")),
        dict(fps=float("nan")),
        dict(fps=0.5),
        dict(fps=1e5),
        dict(normalization="zscore"),
        dict(layout="nope"),
    ):
        with pytest.raises(InputError):
            WindowSpec(**{**SPEC.__dict__, **bad})


def test_card_round_trips_through_metadata() -> None:
    card = _card(accuracy={"penn-val": 0.97}, source_commit="abc123")
    metadata = card.to_metadata()
    assert all(isinstance(v, str) for v in metadata.values())
    assert ModelCard.from_metadata(metadata, "toy.onnx") == card


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda m: {}, "not an actionrec model"),
        (lambda m: {k: v for k, v in m.items() if not k.endswith(".labels")}, "lacks actionrec.labels"),
        (lambda m: {k: v for k, v in m.items() if not k.endswith(".accuracy")}, "lacks actionrec.accuracy"),
        (
            lambda m: {k: v for k, v in m.items() if not k.endswith((".training_data", ".source_commit"))},
            "lacks actionrec.training_data, actionrec.source_commit",
        ),
        (lambda m: {**m, "actionrec.window": "{not json"}, "malformed"),
        (lambda m: {**m, "actionrec.card_version": "7"}, "version 7"),
        (lambda m: {**m, "actionrec.labels": '["a", "a"]'}, "distinct"),
        (lambda m: {**m, "actionrec.window": m["actionrec.window"].replace("penn13", "nope")}, "unknown joint layout"),
        (lambda m: {**m, "actionrec.labels": "[0, 1, 2]"}, "every label must be a non-empty name"),
        (lambda m: {**m, "actionrec.labels": '["run", " "]'}, "every label must be a non-empty name"),
        (lambda m: {**m, "actionrec.input_space": "camera"}, "input space 'camera' does not fit 2-D windows"),
        (lambda m: {**m, "actionrec.input_space": "pixels"}, "input space 'pixels' does not fit"),
        (lambda m: {**m, "actionrec.window": m["actionrec.window"].replace("15.0", "Infinity")}, "from 1 to 1000 fps"),
        # as float32 in the service, 1e300 fps is infinite: it would choose frames and cut windows with it
        (lambda m: {**m, "actionrec.window": m["actionrec.window"].replace("15.0", "1e300")}, "from 1 to 1000 fps"),
        (lambda m: {**m, "actionrec.labels": '["run", "jump\\nhigh"]'}, "every label must be a name on one line"),
        (lambda m: {**m, "actionrec.training_data": " "}, "actionrec.training_data is empty"),
        (
            lambda m: {**m, "actionrec.source_commit": "", "actionrec.protocol": ""},
            "protocol, actionrec.source_commit is empty",
        ),
    ],
)
def test_card_refuses_missing_or_inconsistent_metadata(damage, message) -> None:
    with pytest.raises(InputError, match=message) as error:
        ModelCard.from_metadata(damage(_card().to_metadata()), "toy.onnx")
    assert str(error.value).startswith("toy.onnx: ")


def _clip_with_a_loss(frames: int, lost: slice) -> np.ndarray:
    clip = np.random.default_rng(2).normal(size=(frames, 13, 2)).astype(np.float32) * 50 + 300
    clip[lost] = np.nan  # the person unseen
    return clip


def test_evaluation_leaves_out_windows_the_service_would_not_classify() -> None:
    from export.data import Clip, evaluation_windows
    from skeleton.windows import MIN_WINDOW_PRESENCE, presence

    clip = _clip_with_a_loss(24, slice(6, 20))  # windows of 8, stride 4: starts 0, 4, 8, 12, 16
    shares = [presence(fit_length(clip, 8, start)) for start in window_starts(24, 8, 4)]
    assert shares == [0.75, 0.25, 0.0, 0.0, 0.5]
    windows, owners = evaluation_windows([Clip(clip, "image", 0, "lost")], SPEC, stride=4)
    assert len(windows) == sum(share >= MIN_WINDOW_PRESENCE for share in shares) == 2
    # A clip with no window seen enough still gets its best one: every clip is scored.
    sparse = _clip_with_a_loss(24, slice(1, 23))
    windows, owners = evaluation_windows([Clip(sparse, "image", 0, "sparse")], SPEC, stride=4)
    assert owners.tolist() == [0]


def test_training_crops_skip_stretches_the_person_is_missing_from() -> None:
    from export.data import crop_resize
    from skeleton.windows import MIN_WINDOW_PRESENCE, presence

    clip = _clip_with_a_loss(40, slice(5, 35))
    rng = np.random.default_rng(0)
    crops = [crop_resize(clip, 8, 1.0, rng) for _ in range(200)]
    assert min(presence(crop) for crop in crops) >= MIN_WINDOW_PRESENCE
    # Both ends of the clip are still used.
    assert {float(clip[0, 0, 0]), float(clip[39, 0, 0])} <= {float(c[i, 0, 0]) for c in crops for i in (0, -1)}
    # A clip seen too little anywhere still gives its best stretch.
    sparse = _clip_with_a_loss(40, slice(1, 39))
    assert presence(crop_resize(sparse, 8, 1.0, rng)) > 0


def test_a_cards_training_data_names_its_file_and_split_both_ways() -> None:
    from skeleton.artifact import training_data_split, training_data_text

    for less_validation in (False, True):
        text = training_data_text("nw-ucla.npz", "cross-view/train", less_validation)
        assert training_data_split(text) == ("nw-ucla.npz", "cross-view/train")
    assert training_data_text("msr.npz", "cross-subject/train") == "msr.npz, split cross-subject/train"
    assert training_data_split("recorded by hand in the lab") is None and training_data_split("") is None
