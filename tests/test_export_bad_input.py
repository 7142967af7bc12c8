"""`actionrec export` refuses a bad run folder, model name or output file in one line, before it
scores, exports or writes anything, and a re-export leaves no variant of an earlier model."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.cli import main
from export.config import Benchmark, Experiment, TrainConfig, dump_config
from export.encoder import Classifier, EncoderConfig, SkeletonEncoder
from export.runtime import classifier_checkpoint, save_atomic
from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.layouts import get_layout
from skeleton.provenance import file_digest
from skeleton.windows import WindowSpec

WINDOW = WindowSpec(layout="kinect20", dims=3, length=16, fps=15.0, normalization="centre-torso-align")
ENCODER = EncoderConfig(layout="kinect20", dims=3, channels=(8, 8), strides=(1, 2))
CLASSES = ("wave", "clap", "kick")


def _dataset(path: Path) -> Path:
    """Twelve short random 3-D clips of three classes, half of them a test split."""
    rng = np.random.default_rng(0)
    joints = get_layout("kinect20").num_joints
    sequences = [
        SkeletonSequence(
            name=f"clip{i}",
            coords=rng.normal(size=(20, 1, joints, 3)).astype(np.float32),
            confidence=np.ones((20, 1, joints), dtype=np.float32),
            timestamps_ms=uniform_timestamps(20, 15.0),
            label=i % len(CLASSES),
            subject=i // 6,
        )
        for i in range(12)
    ]
    dataset = SkeletonDataset.from_sequences(
        sequences,
        layout="kinect20",
        coordinate_space="camera",
        units="m",
        fps=15.0,
        label_names=CLASSES,
        splits={"cross-subject/train": range(6), "cross-subject/test": range(6, 12)},
    )
    dataset.save(path)
    return path


def _run(
    folder: Path,
    mode: str = "scratch",
    window: WindowSpec = WINDOW,
    encoder: EncoderConfig = ENCODER,
    occlusion: float = 0.0,
) -> Path:
    """A run folder as `actionrec train` leaves it: its config, and (for a trained classifier) an
    untrained model.pt of ``window`` and ``encoder``, which a config may contradict."""
    data = folder.parent / "data.npz"
    if not data.is_file():
        _dataset(data)
    config = TrainConfig(
        experiment=Experiment(name=folder.name, output=str(folder)),
        window=WINDOW,
        encoder=ENCODER,
        benchmark=Benchmark(path=str(data), train_split="cross-subject/train", test_split="cross-subject/test"),
        mode=mode,
        pretrained="" if mode == "scratch" else str(folder.parent / "encoder.pt"),
        occlusion=occlusion,
    )
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(dump_config(config))
    (folder / "results.json").write_text(json.dumps({"read_sha256": {"benchmark.path": file_digest(data)}}))
    if mode in ("finetune", "scratch"):
        torch.manual_seed(0)
        model = Classifier(SkeletonEncoder(encoder), len(CLASSES)).eval()
        save_atomic(classifier_checkpoint(model, window, CLASSES), folder / "model.pt")
    return folder


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return _run(tmp_path / "runs" / "tiny")


def _refused(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """The one line `export` refuses ``args`` with."""
    assert main(["export", *[str(a) for a in args]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("actionrec export: error: "), err
    return err[0]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any scoring or export fails the test: a refusal comes before both."""
    import export.onnx_export
    import export.supervised

    def forbidden(*args, **kwargs):
        raise AssertionError("the export started its work before refusing")

    monkeypatch.setattr(export.supervised, "predict_clips", forbidden)
    monkeypatch.setattr(export.onnx_export, "export_model", forbidden)


def test_an_output_path_that_is_a_folder_is_refused_before_any_work(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "out" / "tiny.onnx").mkdir(parents=True)
    line = _refused([run, "--name", "tiny", "-o", tmp_path / "out" / "tiny.onnx"], capsys)
    assert f"{tmp_path / 'out' / 'tiny.onnx'}: is a folder" in line


def test_an_output_beside_a_folder_of_its_card_is_refused(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "out" / "tiny.md").mkdir(parents=True)
    line = _refused([run, "--name", "tiny", "-o", tmp_path / "out" / "tiny.onnx"], capsys)
    assert f"{tmp_path / 'out' / 'tiny.md'}: is a folder" in line


@pytest.mark.parametrize("below", ["m.onnx", "sub/m.onnx"])
def test_an_output_under_a_file_is_refused_before_any_work(
    run: Path, tmp_path: Path, below: str, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "ro").write_text("a file, not a folder")
    line = _refused([run, "--name", "m", "-o", tmp_path / "ro" / below], capsys)
    assert f"{tmp_path / 'ro'} is a file, not a folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any folder")
def test_an_output_in_a_folder_without_write_permission_is_refused(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        line = _refused([run, "--name", "m", "-o", locked / "new" / "m.onnx"], capsys)
    finally:
        locked.chmod(0o755)
    assert f"no permission to write in {locked}" in line


def test_an_output_without_the_onnx_suffix_is_refused_and_nothing_written(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    line = _refused([run, "--name", "noext", "-o", tmp_path / "out" / "noext"], capsys)
    assert "not an ONNX file name (end it in .onnx)" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name", ["../evil", "", " ", "tiny ", ".hidden", "tiny.fp16", "tiny.int8", "a/b", "tab\there", "m.onnx", "m.pt"]
)
def test_a_name_that_is_no_file_stem_is_refused_before_any_work(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    import export.evaluate

    monkeypatch.setattr(export.evaluate, "MODELS_DIR", tmp_path / "models")
    line = _refused([run, "--name", name], capsys)
    assert f"--name {name!r}: not a model name" in line
    assert not (tmp_path / "models").exists() and not (tmp_path / "evil.onnx").exists()


def test_an_output_whose_stem_is_no_model_name_is_refused(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    line = _refused([run, "-o", tmp_path / "tiny.fp16.onnx"], capsys)
    assert f"{tmp_path / 'tiny.fp16.onnx'}: its stem 'tiny.fp16': not a model name" in line
    assert "tiny.fp16.onnx would be a variant of another model" in line


@pytest.mark.parametrize("name", ["daily3d", "tiny.v2", "sports 2d"])
def test_a_name_that_finds_its_file_again_is_taken(name: str) -> None:
    from export.onnx_export import check_model_name

    check_model_name(name)


def test_a_name_other_than_the_output_files_stem_is_refused(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    line = _refused([run, "--name", "other", "-o", tmp_path / "tiny.onnx"], capsys)
    assert "a model named 'other' is written as other.onnx" in line


def test_neither_name_nor_output_is_refused(run: Path, no_work: None, capsys: pytest.CaptureFixture) -> None:
    assert "name the model with --name, or its file with -o" in _refused([run], capsys)


def test_a_missing_run_folder_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    line = _refused([tmp_path / "nope", "--name", "m", "-o", tmp_path / "m.onnx"], capsys)
    assert line.endswith(f"{tmp_path / 'nope'}: no such run folder")


def test_a_file_given_as_the_run_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "run.toml").write_text("")
    assert f"{tmp_path / 'run.toml'}: not a run folder" in _refused([tmp_path / "run.toml", "--name", "m"], capsys)


@pytest.mark.parametrize("mode", ["knn", "linear"])
def test_a_probe_run_is_said_to_have_no_classifier(tmp_path: Path, mode: str, capsys: pytest.CaptureFixture) -> None:
    folder = _run(tmp_path / "runs" / mode, mode=mode)
    line = _refused([folder, "--name", "m", "-o", tmp_path / "m.onnx"], capsys)
    assert f"{folder}: a {mode} probe run has no classifier to export" in line


@pytest.mark.parametrize(
    "checkpoint, said",
    [
        ({"window": dataclasses.replace(WINDOW, length=32)}, "window length 32 in model.pt, 16 in config.toml"),
        (
            {"encoder": dataclasses.replace(ENCODER, channels=(8, 16))},
            "encoder channels (8, 16) in model.pt, (8, 8) in config.toml",
        ),
    ],
)
def test_a_checkpoint_unlike_its_config_is_refused_before_any_work(
    tmp_path: Path, checkpoint: dict, said: str, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    folder = _run(tmp_path / "runs" / "mixed", **checkpoint)
    line = _refused([folder, "--name", "m", "-o", tmp_path / "m.onnx"], capsys)
    assert f"{folder}: model.pt and config.toml disagree" in line and said in line


def test_a_checkpoint_of_other_classes_than_the_benchmarks_is_refused(
    run: Path, tmp_path: Path, no_work: None, capsys: pytest.CaptureFixture
) -> None:
    dataset = SkeletonDataset.load(tmp_path / "runs" / "data.npz")
    dataset.label_names = ("wave", "kick", "clap")
    dataset.save(tmp_path / "runs" / "data.npz")
    # A dataset converted again since the run read it: refused by its bytes.
    line = _refused([run, "--name", "m", "-o", tmp_path / "m.onnx"], capsys)
    assert f"read another dataset than {tmp_path / 'runs' / 'data.npz'} holds now" in line
    # Had the run read that file, its classes (model.pt's) are still not the dataset's.
    digest = file_digest(tmp_path / "runs" / "data.npz")
    (run / "results.json").write_text(json.dumps({"read_sha256": {"benchmark.path": digest}}))
    line = _refused([run, "--name", "m", "-o", tmp_path / "m.onnx"], capsys)
    assert "model.pt and config.toml disagree" in line and "model.pt's classes are not those of" in line


def test_a_re_export_removes_the_variants_of_the_earlier_model(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Variants and a figure of an earlier model named alike would be listed and served as the new
    model's: an export removes those it does not write, and says so."""
    out = tmp_path / "models"
    out.mkdir()
    for stale in ("tiny.fp16.onnx", "tiny.int8.onnx", "tiny.confusion.png"):
        (out / stale).write_bytes(b"an earlier model's")
    (out / "other.fp16.onnx").write_bytes(b"another model's")
    assert main(["export", str(run), "--name", "tiny", "-o", str(out / "tiny.onnx")]) == 0
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["other.fp16.onnx", "tiny.md", "tiny.onnx"]
    for stale in ("tiny.fp16.onnx", "tiny.int8.onnx"):
        assert f"removed {out / stale}: a variant of an earlier model named 'tiny'" in err
    card = (out / "tiny.md").read_text()
    assert "fp16" not in card and "int8" not in card and "confusion" not in card


@pytest.mark.parametrize(
    "mode, occlusion, protocol",
    [
        ("scratch", 0.0, "trained from scratch, no pretraining (100% of the labels, seed 0, "),
        ("finetune", 0.0, "finetune of the CFSEM encoder (100% of the labels, seed 0, "),
        (
            "finetune",
            0.3,
            "finetune of the CFSEM encoder (100% of the labels, seed 0, 100 epochs,"
            " joints hidden in 30% of the windows)",
        ),
    ],
)
def test_the_card_names_the_runs_protocol(tmp_path: Path, mode: str, occlusion: float, protocol: str) -> None:
    """A run trained from scratch is not described as using the CFSEM encoder; what a run's
    training windows went through is named."""
    run = _run(tmp_path / "runs" / mode, mode=mode, occlusion=occlusion)
    out = tmp_path / "models" / "tiny.onnx"
    assert main(["export", str(run), "-o", str(out)]) == 0
    assert f"| protocol | {protocol}" in out.with_suffix(".md").read_text()
