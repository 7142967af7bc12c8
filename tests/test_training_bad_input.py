"""Training and evaluation on awkward input: 3-D data for a 2-D model, joints never seen, classes
a model does not know, dotted model names, empty split names, and runs that fail part way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.cli import main
from export.config import TrainConfig, load_config
from export.encoder import Classifier, SkeletonEncoder
from export.runtime import classifier_checkpoint, encoder_checkpoint, save_atomic
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from tests.test_training import _train_config

TRAIN, TEST = 16, 8  # sequences of each part of the small MSR file


def _small_msr(msr_npz: Path, folder: Path, edit=None) -> Path:
    """TRAIN and TEST sequences of MSR's cross-subject parts, of several classes, as one file (the
    train part first); ``edit`` may change its coordinates before it is saved."""
    msr = SkeletonDataset.load(msr_npz)
    train, test = msr.splits["cross-subject/train"], msr.splits["cross-subject/test"]
    parts = train[:: len(train) // TRAIN][:TRAIN], test[:: len(test) // TEST][:TEST]
    small = msr.subset(np.concatenate(parts))
    small.splits = {"cross-subject/train": np.arange(TRAIN), "cross-subject/test": np.arange(TRAIN, TRAIN + TEST)}
    if edit:
        edit(small)
    path = folder / "small.npz"
    small.save(path)
    return path


def _sequence_frames(dataset: SkeletonDataset, i: int) -> slice:
    return slice(dataset.offsets[i], dataset.offsets[i] + dataset.lengths[i])


def _one_epoch(folder: Path, data: Path, mode: str, pretrained: Path | None = None, top: str = "") -> Path:
    return _train_config(folder, data, mode, pretrained, top=top, optim={"epochs": 1})


def _two_dimensional(config: Path) -> Path:
    """The config with a 2-D window and encoder (its data stays 3-D)."""
    config.write_text(config.read_text().replace("dims = 3", "dims = 2"))
    return config


# -- a 2-D model on 3-D data -----------------------------------------------------------------


def test_scoring_windows_of_3d_clips_for_a_2d_model_are_projected_like_training_ones(
    tmp_path: Path, msr_npz: Path
) -> None:
    from export.data import clips_from_dataset, evaluation_windows

    dataset = SkeletonDataset.load(msr_npz)
    config = load_config(_two_dimensional(_one_epoch(tmp_path, msr_npz, "scratch")), TrainConfig)
    clips = clips_from_dataset(dataset, config.window, range(3))
    windows, owners = evaluation_windows(clips, config.window)
    assert windows.shape[1:] == (config.window.length, config.window.num_joints, 2)
    assert sorted(set(owners)) == [0, 1, 2]
    again, _ = evaluation_windows(clips, config.window)
    assert np.array_equal(windows, again)  # the same cameras at every call


@pytest.mark.parametrize("protocol", ["test", "validation", "linear", "knn"])
def test_a_2d_model_trains_and_scores_on_3d_data(tmp_path: Path, msr_npz: Path, protocol: str) -> None:
    data = _small_msr(msr_npz, tmp_path)
    mode = protocol if protocol in ("linear", "knn") else "scratch"
    encoder = tmp_path / "encoder.pt" if mode != "scratch" else None
    top = "validation = true\n" if protocol == "validation" else ""
    config = _two_dimensional(_one_epoch(tmp_path, data, mode, encoder, top))
    if encoder:
        loaded = load_config(config, TrainConfig)
        save_atomic(encoder_checkpoint(SkeletonEncoder(loaded.encoder), loaded.window), encoder)
    assert main(["train", "--config", str(config)]) == 0
    results = json.loads((tmp_path / mode / "results.json").read_text())
    assert results["scored"] == ("validation" if protocol == "validation" else "test")
    assert results["accuracy"] is not None and results["n_train"] + results["n_test"] == (
        TRAIN if protocol == "validation" else TRAIN + TEST
    )


# -- the run folder --------------------------------------------------------------------------


def _earlier_run(folder: Path) -> dict[str, bytes]:
    earlier = {"config.toml": b"# the earlier run\n", "model.pt": b"earlier model", "results.json": b'{"earlier": 1}'}
    folder.mkdir(parents=True)
    for name, content in earlier.items():
        (folder / name).write_bytes(content)
    return earlier


def test_a_run_that_fails_after_training_leaves_the_earlier_run_whole(
    tmp_path: Path, msr_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.supervised

    def fail(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(export.supervised, "predict_clips", fail)
    config = _one_epoch(tmp_path, _small_msr(msr_npz, tmp_path), "scratch")
    earlier = _earlier_run(tmp_path / "scratch")
    with pytest.raises(RuntimeError, match="scoring failed"):
        main(["train", "--config", str(config)])
    assert {p.name: p.read_bytes() for p in (tmp_path / "scratch").iterdir()} == earlier


def test_a_probe_run_leaves_no_earlier_model_beside_its_config(tmp_path: Path, msr_npz: Path) -> None:
    data = _small_msr(msr_npz, tmp_path)
    config = _one_epoch(tmp_path, data, "knn", tmp_path / "encoder.pt")
    loaded = load_config(config, TrainConfig)
    save_atomic(encoder_checkpoint(SkeletonEncoder(loaded.encoder), loaded.window), tmp_path / "encoder.pt")
    _earlier_run(tmp_path / "knn")
    assert main(["train", "--config", str(config)]) == 0
    assert sorted(p.name for p in (tmp_path / "knn").iterdir()) == ["config.toml", "confusion.png", "results.json"]
    assert json.loads((tmp_path / "knn" / "results.json").read_text())["mode"] == "knn"
    assert load_config(tmp_path / "knn" / "config.toml", TrainConfig) == loaded


# -- joints and frames never seen ------------------------------------------------------------


def _without_joint(joint: int, sequences: list[int] | None = None):
    def edit(dataset: SkeletonDataset) -> None:
        for i in range(len(dataset)) if sequences is None else sequences:
            dataset.coords[_sequence_frames(dataset, i), :, joint] = np.nan

    return edit


@pytest.mark.parametrize("sequences", [[TRAIN], None], ids=["one test sequence", "every sequence"])
def test_a_joint_missing_in_every_frame_still_trains_and_scores_every_sequence(
    tmp_path: Path, msr_npz: Path, sequences: list[int] | None
) -> None:
    from export.data import clips_from_dataset

    data = _small_msr(msr_npz, tmp_path, _without_joint(19, sequences))
    config = _one_epoch(tmp_path, data, "scratch")
    clips = clips_from_dataset(SkeletonDataset.load(data), load_config(config, TrainConfig).window)
    assert [c.name for c in clips] == list(SkeletonDataset.load(data).names)
    assert main(["train", "--config", str(config)]) == 0
    results = json.loads((tmp_path / "scratch" / "results.json").read_text())
    assert (results["n_train"], results["n_test"]) == (TRAIN, TEST)


def test_a_sequence_never_seen_is_refused_naming_how_many(tmp_path: Path, msr_npz: Path, capsys) -> None:
    def unseen(dataset: SkeletonDataset) -> None:
        for i in (TRAIN, TRAIN + 3):
            dataset.coords[_sequence_frames(dataset, i)] = np.nan

    data = _small_msr(msr_npz, tmp_path, unseen)
    assert main(["train", "--config", str(_one_epoch(tmp_path, data, "scratch"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"2 of the {TEST} sequences have no frame in which their actor is seen" in err[0]
    assert not (tmp_path / "scratch").exists()
    assert main(["evaluate", "--data", str(data), "--split", "all", "--model", "msr3d"]) == 2
    assert f"2 of the {TRAIN + TEST} sequences have no frame" in capsys.readouterr().err


# -- evaluate: unknown classes and variants --------------------------------------------------


def test_evaluate_says_which_sequences_of_unknown_classes_it_left_out(tmp_path: Path, msr_npz: Path, capsys) -> None:
    data = _small_msr(msr_npz, tmp_path)
    dataset = SkeletonDataset.load(data)
    config = load_config(_one_epoch(tmp_path, data, "scratch"), TrainConfig)
    test_classes = sorted({dataset.label_names[label] for label in dataset.labels[TRAIN:]})
    assert len(test_classes) >= 2
    known = tuple(name for name in dataset.label_names if name != test_classes[0])
    torch.manual_seed(0)
    model = Classifier(SkeletonEncoder(config.encoder), len(known)).eval()
    save_atomic(classifier_checkpoint(model, config.window, known), tmp_path / "model.pt")
    command = ["evaluate", "--data", str(data), "--split", "cross-subject", "--model", str(tmp_path / "model.pt")]
    assert main([*command, "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out.strip().splitlines()[-1])
    left_out = int((dataset.labels[TRAIN:] == dataset.label_names.index(test_classes[0])).sum())
    assert result["n_unknown_class"] == left_out and result["n_test"] == TEST - left_out
    assert f"left out {left_out} of the {TEST} test sequences" in err and test_classes[0] in err
    assert {"accuracy", "n_train", "n_test"} <= result.keys()


@pytest.mark.parametrize("file, suffix", [("toy.onnx", ""), ("toy.fp16.onnx", ".fp16"), ("toy.int8.onnx", ".int8")])
def test_an_evaluated_variant_is_named_as_itself(tmp_path: Path, file: str, suffix: str) -> None:
    from export.evaluate import load_model
    from service.devmodel import build_model, sports2d_card

    build_model(tmp_path / file, sports2d_card())
    assert load_model(str(tmp_path / file)).name == sports2d_card().name + suffix


def test_the_model_listing_takes_only_fp16_and_int8_files_for_variants(tmp_path: Path) -> None:
    from service.devmodel import build_model, sports2d_card
    from skeleton.artifact import model_listing

    models = tmp_path / "models"
    models.mkdir()
    for file in ("tiny.onnx", "tiny.fp16.onnx", "tiny.v2.onnx", "tiny.v2.int8.onnx"):
        build_model(models / file, sports2d_card())
    cards, problems = model_listing(models, relative_to=tmp_path)
    assert not problems
    assert {card["file"]: card["variants"] for card in cards} == {
        "models/tiny.onnx": ["tiny.fp16.onnx"],
        "models/tiny.v2.onnx": ["tiny.v2.int8.onnx"],
    }


# -- the benchmark's splits ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["train_split", "test_split"])
def test_an_empty_split_name_is_refused_before_training(tmp_path: Path, msr_npz: Path, capsys, key: str) -> None:
    from export.supervised import choose_parts

    config = _one_epoch(tmp_path, _small_msr(msr_npz, tmp_path), "scratch")
    split = "cross-subject/train" if key == "train_split" else "cross-subject/test"
    config.write_text(config.read_text().replace(f'{key} = "{split}"', f'{key} = ""'))
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"[benchmark] {key} is empty" in err[0] and str(tmp_path / "small.npz") in err[0]
    assert not (tmp_path / "scratch").exists()
    with pytest.raises(InputError, match=f"{key} is empty"):  # `export` of such a run is refused too
        choose_parts(SkeletonDataset.load(tmp_path / "small.npz"), load_config(config, TrainConfig))


# -- the launch environment (torchrun's variables, the loader's) ----------------------------------


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"WORLD_SIZE": "abc"}, "environment variable WORLD_SIZE must be a whole number, 1 or more, not 'abc'"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be a whole number, 1 or more, not '0'"),
        ({"WORLD_SIZE": "2", "RANK": "-1"}, "RANK must be a whole number, 0 or more, not '-1'"),
        ({"WORLD_SIZE": "2", "RANK": "5"}, "RANK 5 is not below WORLD_SIZE 2"),  # it would wait for ranks forever
        ({"WORLD_SIZE": "2", "RANK": "0"}, "WORLD_SIZE > 1 needs MASTER_ADDR and MASTER_PORT"),
    ],
)
def test_a_launch_environment_that_cannot_work_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
) -> None:
    from export.runtime import start

    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=message):
        start(0)


def test_a_loader_worker_count_that_is_not_a_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from export.runtime import loader_workers

    monkeypatch.setenv("ACTIONREC_LOADER_WORKERS", "-1")
    with pytest.raises(InputError, match="ACTIONREC_LOADER_WORKERS must be a whole number, 0 or more, not '-1'"):
        loader_workers()


def test_a_probe_is_refused_a_train_part_of_one_class(msr_npz: Path, tmp_path: Path, capsys) -> None:
    """One class to fit on: the probe would answer it for every clip, a score that means nothing."""
    msr = SkeletonDataset.load(msr_npz)
    train, test = msr.splits["cross-subject/train"], msr.splits["cross-subject/test"]
    one_class = msr.subset(np.concatenate([train[msr.labels[train] == 0], test[:5]]))
    count = int((msr.labels[train] == 0).sum())
    one_class.splits = {"cross-subject/train": np.arange(count), "cross-subject/test": np.arange(count, count + 5)}
    one_class.save(tmp_path / "one.npz")
    command = ["evaluate", "--data", str(tmp_path / "one.npz"), "--split", "cross-subject", "--probe", "linear"]
    assert main([*command, "--model", "msr3d"]) == 2
    assert "train part holds one class, and a linear probe needs two or more" in capsys.readouterr().err
