"""Malformed dataset files and model cards: each one refused as one line naming the file and
what is wrong, before any work starts, and never passed on to a step that fails later."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from actionrec.cli import main
from skeleton.artifact import ModelCard, read_models
from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.resample import MAX_SEQUENCE_SPAN_MS, sample_times
from skeleton.windows import WindowSpec
from tests.test_training import _train_config

RNG = np.random.default_rng(0)
LABELS = ["wave", "kick", "bow"]
NAMES = [f"s{i}" for i in range(6)]  # the sequences of _dataset, FRAMES frames each
FRAMES = 12


def _sequence(name: str, label: int, subject: int) -> SkeletonSequence:
    return SkeletonSequence(
        name=name,
        coords=RNG.normal(size=(FRAMES, 1, 20, 3)).astype(np.float32),
        confidence=np.ones((FRAMES, 1, 20), dtype=np.float32),
        timestamps_ms=uniform_timestamps(FRAMES, 30.0),
        label=label,
        subject=subject,
    )


def _dataset(**changes: object) -> SkeletonDataset:
    """Six labelled kinect20 sequences, two subjects, with a cross-subject split."""
    sequences = [_sequence(name, i % len(LABELS), 1 + i // 3) for i, name in enumerate(NAMES)]
    values = dict(
        layout="kinect20",
        coordinate_space="camera",
        units="m",
        fps=30.0,
        label_names=LABELS,
        splits={"cross-subject/train": [0, 1, 2], "cross-subject/test": [3, 4, 5]},
        source="synthetic",
    )
    return SkeletonDataset.from_sequences(sequences, **{**values, **changes})


def _written(path: Path, header: dict | None = None, **arrays: np.ndarray) -> Path:
    """``_dataset`` saved to ``path`` with header fields and arrays replaced, as a file edited by
    hand or written by another program would have them (nothing checks them on the way)."""
    _dataset().save(path)
    with np.load(path) as data:
        stored = {key: data[key] for key in data.files}
    edited = {**json.loads(str(stored["header"])), **(header or {})}
    np.savez(path, **{**stored, "header": np.array(json.dumps(edited)), **arrays})
    return path


def _refused(path: Path) -> str:
    with pytest.raises(InputError) as error:
        SkeletonDataset.load(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


# -- label names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "names, expected",
    [
        (["wave", "kick", "wave"], "labels must be distinct ('wave' more than once)"),
        (["wave", "", "bow"], "every label must be a non-empty name, not ''"),
        (["wave", "  ", "bow"], "every label must be a non-empty name, not '  '"),
        ([0, 1, 2], "every label must be a non-empty name, not 0, 1, 2"),
        ("abc", "'label_names' must be a list of class names, not 'abc'"),
        (None, "'label_names' must be a list of class names, not None"),
    ],
)
def test_a_dataset_with_label_names_no_model_could_carry_is_refused_on_load(
    tmp_path: Path, names: object, expected: str
) -> None:
    message = _refused(_written(tmp_path / "bad.npz", header={"label_names": names}))
    assert expected in message and "label_names" in message


def test_a_dataset_and_a_model_card_follow_one_label_rule() -> None:
    with pytest.raises(InputError, match="label_names: labels must be distinct"):
        _dataset(label_names=["wave", "kick", "kick"])
    with pytest.raises(InputError, match=r"model 'toy': labels must be distinct \('kick' more than once\)"):
        _card(labels=("wave", "kick", "kick"))
    assert (
        SkeletonDataset.from_sequences(
            [_sequence("u", -1, -1)], layout="kinect20", coordinate_space="camera", units="m", fps=30.0
        ).label_names
        == ()
    )  # an unlabelled corpus has no names at all


@pytest.mark.parametrize(
    "header, arrays, expected",
    [
        ({"label_names": ["wave", "wave", "bow"]}, {}, "'wave' more than once"),
        ({}, {"timestamps_ms": np.full(FRAMES * len(NAMES), np.nan)}, "the timestamp nan of its frame 0 is not finite"),
        ({}, {"timestamps_ms": np.tile(uniform_timestamps(FRAMES, 30.0), len(NAMES)) * 1e9}, "may last"),
    ],
)
def test_training_refuses_a_bad_dataset_before_writing_anything(
    tmp_path: Path, capsys, header: dict, arrays: dict, expected: str
) -> None:
    data = _written(tmp_path / "bad.npz", header=header, **arrays)
    assert main(["train", "--config", str(_train_config(tmp_path, data, "scratch", None))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data) in err[0] and expected in err[0], err
    assert not (tmp_path / "scratch").exists()


# -- header fields and arrays of the wrong type ----------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ({"dims": "x"}, "header field 'dims' must be 2 or 3, not 'x'"),
        ({"dims": 3.7}, "header field 'dims' must be 2 or 3, not 3.7"),
        ({"dims": True}, "header field 'dims' must be 2 or 3, not True"),
        ({"fps": "fast"}, "header field 'fps' must be a frame rate, not 'fast'"),
        ({"layout": ["kinect20"]}, "header field 'layout' must be a layout name, not ['kinect20']"),
        ({"coordinate_space": 3}, "header field 'coordinate_space' must be one of image, camera, world, not 3"),
        ({"units": None}, "header field 'units' must be a unit name, not None"),
        ({"view_names": 5}, "header field 'view_names' must be a list of view names, not 5"),
        ({"view_names": ["front", 2]}, "header field 'view_names' must be a list of view names, not ['front', 2]"),
        ({"source": {"a": 1}}, "header field 'source' must be a text, not {'a': 1}"),
        ({"reader": 2}, "header field 'reader' must be the converting reader's format and revision, not 2"),
    ],
)
def test_a_header_field_of_the_wrong_type_is_refused_naming_it(tmp_path: Path, header: dict, expected: str) -> None:
    assert expected in _refused(_written(tmp_path / "bad.npz", header=header))


@pytest.mark.parametrize(
    "header, refused",
    [
        ({"reader": "nw-ucla 2"}, False),
        ({"reader": "nw-ucla 1"}, True),
        ({"reader": "bvh 1"}, False),
        # converted before readers signed their files, known by the source text
        ({"reader": "", "source": "NW-UCLA Multiview Action3D (nw-ucla/all_sqe)"}, True),
        ({"reader": "", "source": "Penn Action (penn-action-train); views index view_names"}, True),
        ({"reader": ""}, False),  # no reader's: the project's synthetic data, a user's own
    ],
)
def test_a_file_converted_by_an_older_reader_is_refused(tmp_path: Path, header: dict, refused: bool) -> None:
    """It would train and score on the old reading without a word."""
    path = _written(tmp_path / "data.npz", header=header)
    if refused:
        message = _refused(path)
        assert "revision 1 of the" in message and "revision 2 reads the source differently" in message
        assert "convert it again (`make data`" in message
    else:
        assert SkeletonDataset.load(path).reader == header["reader"]


def test_a_readers_signature_survives_subsets_remapping_and_files(tmp_path: Path) -> None:
    from skeleton.transform import remap

    signed = _dataset(reader="nw-ucla 2")
    remapped = remap(signed.subset([0, 1]), "kinect20", 15.0)
    remapped.save(tmp_path / "compact.npz", compact=True)
    assert SkeletonDataset.load(tmp_path / "compact.npz").reader == "nw-ucla 2"


@pytest.mark.parametrize("key", ["coords", "confidence", "timestamps_ms"])
def test_an_array_of_strings_is_refused_naming_it(tmp_path: Path, key: str) -> None:
    with np.load(_written(tmp_path / "ok.npz")) as data:
        as_text = data[key].astype(str)
    message = _refused(_written(tmp_path / "bad.npz", **{key: as_text}))
    assert f"{key} holds <U" in message and "not numbers" in message


def test_integer_arrays_and_optional_fields_still_load(tmp_path: Path) -> None:
    """Whole-number timestamps and a header without source or view names are valid files."""
    path = _written(tmp_path / "ok.npz", timestamps_ms=np.arange(FRAMES * len(NAMES)) % FRAMES * 33)
    header = json.loads(str(np.load(path)["header"]))
    del header["source"], header["view_names"]
    with np.load(path) as data:
        stored = {key: data[key] for key in data.files}
    np.savez(path, **{**stored, "header": np.array(json.dumps(header))})
    dataset = SkeletonDataset.load(path)
    assert dataset.timestamps_ms.dtype == np.float64 and dataset.coords.dtype == np.float32
    assert (dataset.source, dataset.view_names, dataset.dims) == ("", (), 3)


# -- timestamps and people ------------------------------------------------------------------


def _scaled(times: np.ndarray) -> None:
    times *= 1e9  # read from a clock in nanoseconds, taken for milliseconds


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda t: t.__setitem__(14, np.nan), "sequence 1 ('s1'): the timestamp nan of its frame 2 is not finite"),
        (lambda t: t.__setitem__(30, np.inf), "sequence 2 ('s2'): the timestamp inf of its frame 6 is not finite"),
        (_scaled, "sequence 0 ('s0'): the timestamp 3.66667e+11 of its frame 11 is more than 24 h"),
        (lambda t: t.__setitem__(5, t[4]), "sequence 0 ('s0'): the timestamp 133.333 of its frame 5 is not after"),
        (lambda t: np.negative(t, out=t), "the timestamp -33.3333 of its frame 1 is not after the one before it"),
    ],
)
def test_timestamps_no_resampling_could_use_are_refused_on_load(tmp_path: Path, change, expected: str) -> None:
    times = np.tile(uniform_timestamps(FRAMES, 30.0), len(NAMES))
    change(times)
    assert expected in _refused(_written(tmp_path / "bad.npz", timestamps_ms=times))


def test_sequences_may_start_at_any_time_and_last_up_to_the_limit() -> None:
    long = np.array([0.0, MAX_SEQUENCE_SPAN_MS])
    sequence = SkeletonSequence("long", np.zeros((2, 1, 20, 3)), np.zeros((2, 1, 20)), long + 2400.0)
    dataset = SkeletonDataset.from_sequences(
        [sequence, sequence], layout="kinect20", coordinate_space="camera", units="m", fps=30.0
    )
    assert dataset.timestamps_ms.tolist() == [2400.0, 2400.0 + MAX_SEQUENCE_SPAN_MS] * 2


def test_a_dataset_without_a_person_slot_is_refused(tmp_path: Path) -> None:
    with np.load(_written(tmp_path / "ok.npz")) as data:
        coords, confidence = data["coords"][:, :0], data["confidence"][:, :0]
    message = _refused(_written(tmp_path / "bad.npz", coords=coords, confidence=confidence))
    assert "coords has no person slot (P = 0)" in message


def test_sample_times_refuses_times_it_cannot_count() -> None:
    with pytest.raises(InputError, match="are not all finite"):
        sample_times(0.0, math.nan, 15.0)
    with pytest.raises(InputError, match="a sequence may last"):
        sample_times(0.0, 3.6e12, 15.0)  # an hour in nanoseconds read as milliseconds
    assert len(sample_times(0.0, MAX_SEQUENCE_SPAN_MS, 1.0)) == MAX_SEQUENCE_SPAN_MS / 1000 + 1


# -- the model card -------------------------------------------------------------------------


def _card(**changes: object) -> ModelCard:
    spec = WindowSpec(layout="kinect20", dims=3, length=8, fps=15.0, normalization="centre-torso")
    values = dict(name="toy", labels=("a", "b"), window=spec, embedding_size=16, input_space="camera")
    values.update(training_data="toy.npz, split all", protocol="fine-tune", source_commit="abc")
    return ModelCard(**{**values, **changes})


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"actionrec.accuracy": '{"test": NaN}'}, "accuracy 'test' must be a number from 0 to 1, not nan"),
        ({"actionrec.accuracy": '{"test": Infinity}'}, "accuracy 'test' must be a number from 0 to 1, not inf"),
        ({"actionrec.accuracy": '{"test": 5.0}'}, "accuracy 'test' must be a number from 0 to 1, not 5.0"),
        ({"actionrec.accuracy": '{"test": -1}'}, "accuracy 'test' must be a number from 0 to 1, not -1"),
        ({"actionrec.accuracy": '{"test": true}'}, "accuracy 'test' must be a number from 0 to 1, not True"),
        ({"actionrec.accuracy": '{"test": "0.9"}'}, "accuracy 'test' must be a number from 0 to 1, not '0.9'"),
        ({"actionrec.accuracy": "[0.9]"}, "accuracy must map each scored part to a number, not a list"),
        ({"actionrec.name": ""}, "model name must be a non-empty name on one line, not ''"),
        ({"actionrec.name": "  "}, "model name must be a non-empty name on one line, not '  '"),
        ({"actionrec.name": "toy\nfake line"}, r"not 'toy\\nfake line'"),
        ({"actionrec.name": "toy\x1b[2J"}, r"not 'toy\\x1b\[2J'"),
        ({"actionrec.card_version": '"1"'}, "model card version '1' is not supported: it must be the number 1"),
    ],
)
def test_card_refuses_accuracies_and_names_no_listing_could_show(changes: dict, expected: str) -> None:
    with pytest.raises(InputError, match=expected) as error:
        ModelCard.from_metadata({**_card(accuracy={"test": 0.5}).to_metadata(), **changes}, "toy.onnx")
    assert str(error.value).startswith("toy.onnx: ")


def test_card_accuracies_are_shares_from_0_to_1() -> None:
    card = _card(accuracy={"test": 1, "validation": 0.0, "other": np.float32(0.25)})
    assert card.accuracy == {"test": 1.0, "validation": 0.0, "other": 0.25}
    assert all(type(value) is float for value in card.accuracy.values())
    assert ModelCard.from_metadata(card.to_metadata(), "toy.onnx") == card
    with pytest.raises(InputError, match="accuracy 'test' must be a number from 0 to 1, not 93.4"):
        _card(accuracy={"test": 93.4})  # a percentage, not a share


def test_the_model_listing_names_a_model_with_a_nan_accuracy_and_keeps_the_others(tmp_path: Path) -> None:
    from service.devmodel import build_model, daily3d_card

    good = daily3d_card()
    metadata = {**good.to_metadata(), "actionrec.accuracy": '{"test": NaN}'}
    build_model(tmp_path / "good.onnx", good)
    build_model(tmp_path / "nan.onnx", good, metadata=metadata)
    usable, problems = read_models(tmp_path)
    assert [path.name for path, _ in usable] == ["good.onnx"]
    assert len(problems) == 1 and problems[0].startswith(str(tmp_path / "nan.onnx"))
    assert "accuracy 'test' must be a number from 0 to 1, not nan" in problems[0]
