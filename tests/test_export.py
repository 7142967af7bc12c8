"""ONNX export (parity, metadata, variants) and the shipped models on real data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from export.encoder import Classifier, EncoderConfig, SkeletonEncoder
from export.evaluate import evaluate, load_model, shipped_models
from export.onnx_export import export_model
from export.runtime import classifier_checkpoint, save_atomic
from skeleton.artifact import INPUT_NAME, ModelCard
from skeleton.errors import InputError
from skeleton.windows import WindowSpec

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WINDOW = WindowSpec(layout="penn13", dims=2, length=16, fps=15.0, normalization="centre-torso")


@pytest.fixture(scope="module", params=["single", "multiscale"])
def checkpoint(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A toy classifier of each temporal convolution the encoder has."""
    torch.manual_seed(0)
    config = EncoderConfig(layout="penn13", dims=2, channels=(8, 8, 16, 16, 16, 16), temporal=request.param)
    model = Classifier(SkeletonEncoder(config), 3).eval()
    path = tmp_path_factory.mktemp("run") / "model.pt"
    save_atomic(classifier_checkpoint(model, WINDOW, ("a", "b", "c")), path)
    return path


def test_export_matches_pytorch_and_describes_itself(
    checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    windows = np.random.default_rng(0).normal(size=(9, 16, 13, 2)).astype(np.float32)
    card, reports = export_model(
        checkpoint,
        tmp_path / "toy.onnx",
        "toy",
        windows,
        "toy data",
        "toy protocol",
        {"test": 0.5},
        fp16=True,
        int8=True,
    )
    assert [r.path.name for r in reports] == ["toy.onnx", "toy.fp16.onnx", "toy.int8.onnx"]
    assert reports[0].max_abs_difference < 1e-4
    # The batch norms' 1-D scales are quantised per tensor without a warning each, and the
    # filter that keeps them quiet does not outlive the export.
    assert not [r for r in caplog.records if "out-of-range" in r.getMessage()]
    assert not logging.getLogger().filters
    for report in reports:
        session = onnxruntime.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
        assert ModelCard.from_metadata(session.get_modelmeta().custom_metadata_map, str(report.path)) == card
        for batch in (1, 7):  # the batch axis is dynamic
            scores, embedding = session.run(None, {INPUT_NAME: windows[:batch]})
            assert scores.shape == (batch, 3) and embedding.shape == (batch, 16)


def test_a_mirror_averaged_classifier_answers_alike_for_a_window_and_its_mirror_image(tmp_path: Path) -> None:
    """``mirror_average``: in PyTorch (evaluation) and in the exported ONNX model, a window and
    its mirror image get the same scores and embedding; training runs the plain network."""
    from export.augment import mirror
    from export.runtime import classifier_from_checkpoint, read_checkpoint

    torch.manual_seed(1)
    config = EncoderConfig(layout="penn13", dims=2, channels=(8, 8, 16, 16, 16, 16))
    model = Classifier(SkeletonEncoder(config), 3, mirror_average=True).eval()
    path = tmp_path / "model.pt"
    save_atomic(classifier_checkpoint(model, WINDOW, ("a", "b", "c")), path)
    reloaded, _, _ = classifier_from_checkpoint(read_checkpoint(path))
    assert reloaded.mirror_average

    windows = torch.from_numpy(np.random.default_rng(2).normal(size=(5, 16, 13, 2)).astype(np.float32))
    mirrored = mirror(windows, reloaded.mirror_permutation)
    with torch.no_grad():
        (scores, embedding), (m_scores, m_embedding) = reloaded(windows), reloaded(mirrored)
        plain_scores, _ = Classifier(reloaded.encoder, 3).eval()(windows)
    torch.testing.assert_close(scores, m_scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(embedding, m_embedding, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scores, plain_scores, atol=1e-4)  # the plain network differs with the view

    _, reports = export_model(path, tmp_path / "m.onnx", "m", windows.numpy(), "toy data", "toy", {"test": 0.5})
    assert reports[0].max_abs_difference < 1e-4
    session = onnxruntime.InferenceSession(str(reports[0].path), providers=["CPUExecutionProvider"])
    onnx_scores, _ = session.run(None, {INPUT_NAME: windows.numpy()})
    onnx_mirrored, _ = session.run(None, {INPUT_NAME: mirrored.numpy()})
    np.testing.assert_allclose(onnx_scores, onnx_mirrored, atol=1e-5)
    np.testing.assert_allclose(onnx_scores, scores.numpy(), atol=1e-4)


def test_export_refuses_windows_that_do_not_fit(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="do not fit"):
        export_model(checkpoint, tmp_path / "x.onnx", "x", np.zeros((2, 8, 13, 2), np.float32), "", "", {})
    assert not (tmp_path / "x.onnx").exists()


def test_every_shipped_model_describes_itself() -> None:
    names = {card["name"] for card in shipped_models()}
    assert {"sports2d", "daily3d", "msr3d"} <= names
    for card in shipped_models():
        assert card["labels"] and card["accuracy"] and card["embedding_size"] > 0
        assert (ROOT / "models" / f"{card['name']}.md").is_file()


@pytest.mark.parametrize(
    "model, data, split, floor",
    [("msr3d", "msr.npz", "cross-subject", 0.85), ("daily3d", "nw-ucla.npz", "cross-view", 0.85)],
)
def test_shipped_3d_models_on_their_real_test_splits(model: str, data: str, split: str, floor: float, tmp_path) -> None:
    from skeleton.readers import read_source

    fmt = {"msr.npz": ("msr-action3d", "msr-action3d"), "nw-ucla.npz": ("nw-ucla", "nw-ucla")}[data]
    read_source(fmt[0], DATA / fmt[1]).save(tmp_path / data)
    result = evaluate(tmp_path / data, split, None, model)
    assert result["accuracy"] >= floor, result
    assert result["test_seen_in_training"] == 0  # its own test split: nothing it was trained on


def test_evaluate_says_when_the_test_part_was_trained_on(tmp_path, capsys) -> None:
    """daily3d was trained on NW-UCLA's views 1 and 2 of every subject: an odd/even-subject
    split of the same file scores mostly clips it has seen, and the result says how many."""
    from skeleton.readers import read_source

    read_source("nw-ucla", DATA / "nw-ucla").save(tmp_path / "nw-ucla.npz")
    result = evaluate(tmp_path / "nw-ucla.npz", "cross-subject", None, "daily3d")
    assert 0 < result["test_seen_in_training"] < result["n_test"]
    assert "not a held-out score" in capsys.readouterr().err


def test_evaluate_refuses_data_of_other_dimensions(tmp_path) -> None:
    from skeleton.readers import read_source

    read_source("msr-action3d", DATA / "msr-action3d").save(tmp_path / "msr.npz")
    with pytest.raises(InputError, match="sports2d takes 2-D joints; .* holds 3-D joints"):
        evaluate(tmp_path / "msr.npz", "cross-subject", "knn", "sports2d")


def test_unknown_model_names_the_shipped_ones() -> None:
    with pytest.raises(InputError, match="sports2d"):
        load_model("no-such-model")
