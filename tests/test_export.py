"""ONNX export (parity, metadata, variants) and the shipped models on real data."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime
import pytest
import torch

from export.encoder import Classifier, EncoderConfig, SkeletonEncoder
from export.evaluate import evaluate, load_model
from export.onnx_export import export_model
from export.runtime import classifier_checkpoint, encoder_checkpoint, read_checkpoint, save_atomic
from service.devmodel import build_model, sports2d_card
from skeleton.artifact import (
    INPUT_NAME,
    ModelCard,
    model_listing,
    model_names,
    open_model,
    read_models,
    resolve_model_path,
)
from skeleton.errors import InputError
from skeleton.windows import WindowSpec

ROOT = Path(__file__).resolve().parents[1]
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
        [checkpoint],
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
    # INT8 weights of 7 bits: CPUs without VNNI add uint8 x int8 products in int16 pairs, which
    # 8-bit weights can saturate (export.onnx_export.quantised).
    weights = [i for i in onnx.load(str(reports[2].path)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(np.abs(onnx.numpy_helper.to_array(w)).max()) for w in weights) <= 64
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

    _, reports = export_model([path], tmp_path / "m.onnx", "m", windows.numpy(), "toy data", "toy", {"test": 0.5})
    assert reports[0].max_abs_difference < 1e-4
    session = onnxruntime.InferenceSession(str(reports[0].path), providers=["CPUExecutionProvider"])
    onnx_scores, _ = session.run(None, {INPUT_NAME: windows.numpy()})
    onnx_mirrored, _ = session.run(None, {INPUT_NAME: mirrored.numpy()})
    np.testing.assert_allclose(onnx_scores, onnx_mirrored, atol=1e-5)
    np.testing.assert_allclose(onnx_scores, scores.numpy(), atol=1e-4)


def test_export_refuses_a_model_with_nan_weights(tmp_path: Path) -> None:
    """ONNX and PyTorch then differ by NaN, which is not within any tolerance (a NaN model would
    answer one class for everything)."""
    torch.manual_seed(0)
    model = Classifier(SkeletonEncoder(EncoderConfig(layout="penn13", dims=2, channels=(8, 8, 16, 16, 16, 16))), 3)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    save_atomic(classifier_checkpoint(model.eval(), WINDOW, ("a", "b", "c")), tmp_path / "model.pt")
    windows = np.random.default_rng(0).normal(size=(4, WINDOW.length, 13, 2)).astype(np.float32)
    with pytest.raises(InputError, match="ONNX and PyTorch differ by nan"):
        export_model([tmp_path / "model.pt"], tmp_path / "x.onnx", "x", windows, "toy.npz, split all", "toy", {})
    assert not (tmp_path / "x.onnx").exists()


def test_export_refuses_windows_that_do_not_fit(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="do not fit"):
        export_model([checkpoint], tmp_path / "x.onnx", "x", np.zeros((2, 8, 13, 2), np.float32), "", "", {})
    assert not (tmp_path / "x.onnx").exists()


SHIPPED = ("daily3d", "msr3d", "sports2d")
VARIANTS = ("", ".fp16", ".int8")


def _card_rows(name: str) -> dict[str, str]:
    """The rows of ``models/NAME.md``'s tables, first cell -> last cell: the description table's
    fields, and the variants table's files (without their backquotes) with their accuracies."""
    rows = {}
    for line in (ROOT / "models" / f"{name}.md").read_text().splitlines():
        if line.startswith("|") and line.endswith("|"):
            cells = [cell.strip() for cell in line[1:-1].split("|")]
            rows[cells[0].strip("`")] = cells[-1]
    return rows


def test_every_shipped_model_describes_itself() -> None:
    """Each shipped model, its variants included, carries the same card in its metadata, and the
    human-readable card beside it says what that metadata says: the same classes, data, protocol
    and accuracy figures, and a variants table for exactly the files shipped."""
    usable, problems = read_models(ROOT / "models")
    assert not problems
    cards = {path.name: card for path, card in usable}
    assert set(SHIPPED) <= {card.name for card in cards.values()}
    for name in SHIPPED:
        card = cards[f"{name}.onnx"]
        assert card.labels and card.accuracy and card.embedding_size > 0
        assert all(0.0 < value <= 1.0 for value in card.accuracy.values()), card.accuracy
        for variant in VARIANTS[1:]:
            assert cards[f"{name}{variant}.onnx"] == card  # a variant states its FP32 model's card
        rows, text = _card_rows(name), (ROOT / "models" / f"{name}.md").read_text()
        assert rows["accuracy"] == ", ".join(f"{key}: {value:.1%}" for key, value in card.accuracy.items())
        assert rows["classes"] == f"{len(card.labels)}: {', '.join(card.labels)}"
        assert rows["embedding"].startswith(f"{card.embedding_size} values")
        assert f"`{card.window.layout}`" in rows["input"] and f"`{card.window.normalization}`" in rows["input"]
        assert f"{card.window.length} frames at {card.window.fps:g} fps" in rows["input"]
        assert (rows["training data"], rows["protocol"]) == (card.training_data, card.protocol)
        assert (rows["source commit"], rows["exported"]) == (card.source_commit, card.created)
        variants = {file: figure for file, figure in rows.items() if file.endswith(".onnx")}
        assert sorted(variants) == sorted(f"{name}{variant}.onnx" for variant in VARIANTS)
        if list(card.accuracy) == ["test"]:  # the variants were scored on the part the metadata's figure is from
            assert "Accuracy on the test part" in text
            assert variants[f"{name}.onnx"] == f"{card.accuracy['test']:.1%}"
        else:  # a held-back test part: the variants were compared on the training clips
            assert "Accuracy on the train part (seen in training" in text


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"actionrec.labels": '["a", "b"]'}, r"scores has shape \['batch', 15\], but its card says \(None, 2\)"),
        ({"actionrec.labels": json.dumps([*sports2d_card().labels, "extra"])}, "scores has shape"),
        ({"actionrec.window": sports2d_card(length=16).to_metadata()["actionrec.window"]}, "skeleton has shape"),
        (
            {
                "actionrec.window": json.dumps(
                    {**json.loads(sports2d_card().to_metadata()["actionrec.window"]), "length": 32.0}
                )
            },
            "window length",
        ),
        ({}, None),
    ],
)
def test_opening_a_model_checks_its_card_against_its_graph(tmp_path: Path, changes: dict, message: str | None) -> None:
    """The one way evaluate, the model listing and the service open an ONNX model: a card that
    promises other labels or windows than the graph takes and gives is refused, naming the file."""
    path = build_model(tmp_path / "m.onnx", sports2d_card(), metadata={**sports2d_card().to_metadata(), **changes})
    if message is None:
        card, session = open_model(path)
        assert card == sports2d_card() and session.get_inputs()[0].name == INPUT_NAME
        return
    with pytest.raises(InputError, match=message) as error:
        open_model(path)
    assert str(error.value).startswith(f"{path}: ")


def _edited_graph(source: Path, path: Path, edit) -> Path:
    import onnx

    model = onnx.load(str(source))
    edit(model.graph)
    onnx.save(model, str(path))
    return path


def _fixed_batch(graph) -> None:
    graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1


def _extra_input(graph) -> None:
    from onnx import TensorProto, helper

    graph.input.append(helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1]))


@pytest.mark.parametrize(
    "edit, message",
    [
        (_fixed_batch, "skeleton has a fixed batch size of 1; exported models take any"),
        (_extra_input, "the model takes inputs other than 'skeleton': gain, skeleton"),
    ],
)
def test_opening_a_model_refuses_a_graph_the_service_cannot_batch(tmp_path: Path, edit, message: str) -> None:
    """Such graphs pass onnxruntime's own loading and fail only when the service runs a batch."""
    path = _edited_graph(build_model(tmp_path / "m.onnx", sports2d_card()), tmp_path / "edited.onnx", edit)
    with pytest.raises(InputError, match=message) as error:
        open_model(path)
    assert str(error.value).startswith(f"{path}: ")


def test_the_model_listing_refuses_a_variant_unlike_its_model_and_lists_one_alone(tmp_path: Path) -> None:
    """daily3d.int8.onnx holding another model would answer with its labels under daily3d's name."""
    card = sports2d_card()
    build_model(tmp_path / "good.onnx", card)
    build_model(tmp_path / "good.fp16.onnx", card)  # other weights, the same card: a copy
    reversed_labels = {**card.to_metadata(), "actionrec.labels": json.dumps(card.labels[::-1])}
    build_model(tmp_path / "good.int8.onnx", card, metadata=reversed_labels)
    build_model(tmp_path / "orphan.int8.onnx", card)
    usable, problems = read_models(tmp_path)
    assert [path.name for path, _ in usable] == ["good.fp16.onnx", "good.onnx", "orphan.int8.onnx"]
    assert problems == [f"{tmp_path / 'good.int8.onnx'}: its card differs from good.onnx's in labels"]
    # A variant without its model is served alone (an edge box given only the INT8 file), and listed so.
    cards, _ = model_listing(tmp_path)
    assert sorted((Path(c["file"]).name, c["variants"]) for c in cards) == [
        ("good.onnx", ["good.fp16.onnx"]),
        ("orphan.int8.onnx", []),
    ]


def test_the_model_listing_names_a_renamed_file_as_the_service_serves_it(tmp_path: Path) -> None:
    """Streams ask for a model by its file's stem: a sports2d exported and then renamed is served
    as its new name, and listed under it, with the name its card gives."""
    build_model(tmp_path / "gym.onnx", sports2d_card())
    # A variant without its model, not renamed: listed alone, under its own file's stem.
    build_model(tmp_path / f"{sports2d_card().name}.int8.onnx", sports2d_card())
    cards, _ = model_listing(tmp_path)
    assert sorted((c["served_as"], c["name"]) for c in cards) == [
        ("gym", sports2d_card().name),
        (f"{sports2d_card().name}.int8", sports2d_card().name),
    ]
    listing = subprocess.run(
        [sys.executable, "-m", "actionrec.cli", "models"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ACTIONREC_MODELS_DIR": str(tmp_path)},
    )
    assert listing.returncode == 0, listing.stderr
    lines = [line for line in listing.stdout.splitlines() if not line.startswith(" ")]
    renamed = [line for line in lines if "its card calls it" in line]
    assert len(lines) == 2 and len(renamed) == 1, lines
    assert renamed[0].startswith("gym ") and renamed[0].endswith(f"(its card calls it {sports2d_card().name})")


def test_the_model_listing_names_each_bad_file_and_keeps_the_good_ones(tmp_path: Path) -> None:
    good = build_model(tmp_path / "good.onnx", sports2d_card())
    (tmp_path / "good.fp16.onnx").write_bytes(good.read_bytes())
    (tmp_path / "corrupt.onnx").write_bytes(b"not protobuf")
    build_model(tmp_path / "foreign.onnx", sports2d_card(), metadata={"author": "someone else"})
    build_model(
        tmp_path / "fewer.onnx",
        sports2d_card(),
        metadata={**sports2d_card().to_metadata(), "actionrec.labels": '["a"]'},
    )
    usable, problems = read_models(tmp_path)
    assert [path.name for path, _ in usable] == ["good.fp16.onnx", "good.onnx"]
    assert len(problems) == 3
    for name, why in (
        ("corrupt", "not a loadable ONNX model"),
        ("fewer", "scores has shape"),
        ("foreign", "not an actionrec model"),
    ):
        assert any(p.startswith(str(tmp_path / f"{name}.onnx")) and why in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_every_name_a_models_folder_offers_resolves_to_its_file(tmp_path: Path) -> None:
    for name in ("daily3d.onnx", "daily3d.fp16.onnx", "daily3d.int8.onnx"):
        (tmp_path / name).write_bytes(b"")
    assert model_names(tmp_path) == ["daily3d", "daily3d.fp16", "daily3d.int8"]
    for name in model_names(tmp_path):
        assert resolve_model_path(name, tmp_path) == tmp_path / f"{name}.onnx"
    # A file's own name or a path is a path; a name not there is still a name (reported as missing).
    assert resolve_model_path("other.onnx", tmp_path) == Path("other.onnx")
    assert resolve_model_path("run/model.pt", tmp_path) == Path("run/model.pt")
    assert resolve_model_path("model.pt", tmp_path) == Path("model.pt")
    assert resolve_model_path("missing", tmp_path) == tmp_path / "missing.onnx"


def _hand_edited(checkpoint: Path, tmp_path: Path, edit) -> Path:
    saved = torch.load(checkpoint, weights_only=True)
    edit(saved)
    path = tmp_path / "edited.pt"
    save_atomic(saved, path)
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["encoder_config"].update(channels=[8, 8, 16, 16, 32, 32]), "weights do not fit .* size mismatch"),
        (lambda c: c.update(labels=["a", "b"]), "weights do not fit .* head.weight"),
        (lambda c: c.pop("window"), "checkpoint lacks window"),
        (lambda c: c.update(labels="abc"), "labels must be a list of names, not a str"),
        (lambda c: c["window"].update(length=16.0), "window length"),
        (lambda c: c["encoder_config"].update(depth=3), "malformed checkpoint"),
        (lambda c: c["window"].update(layout="kinect20", dims=3), "does not fit its encoder's input"),
    ],
)
def test_a_hand_edited_checkpoint_is_refused_naming_it(checkpoint: Path, tmp_path: Path, edit, message: str) -> None:
    path = _hand_edited(checkpoint, tmp_path, edit)
    with pytest.raises(InputError, match=message) as error:
        load_model(str(path))  # evaluate's way in
    assert str(error.value).startswith(f"{path}: ")


def test_an_encoder_checkpoint_without_its_window_is_refused(tmp_path: Path) -> None:
    encoder = SkeletonEncoder(EncoderConfig(layout="penn13", dims=2, channels=(8, 8, 16, 16, 16, 16)))
    saved = encoder_checkpoint(encoder, WINDOW)
    del saved["window"]
    save_atomic(saved, tmp_path / "encoder.pt")
    with pytest.raises(InputError, match="encoder.pt: checkpoint lacks window"):
        read_checkpoint(tmp_path / "encoder.pt")


# A shipped 3-D model's real test split: (dataset fixture, split, clips), and the clips of it that
# the accuracy in its metadata stands for.
TEST_SPLITS = {"daily3d": ("nw_ucla_npz", "cross-view", 464, 432), "msr3d": ("msr_npz", "cross-subject", 273, 253)}
COPIES_OF_TRAIN = {"daily3d": 95, "msr3d": 0}  # test sequences identical to one of the train part


# Each file scored as `actionrec evaluate --data DATA --split SPLIT --model FILE` scores it: the
# clips it answers right, and the words of its card that state so.
STATED_ON_TEST = {
    # The variants table of models/daily3d.md.
    "daily3d": (432, r"^\| `daily3d\.onnx` \|.*\| 93\.1% \|$"),
    "daily3d.fp16": (432, r"^\| `daily3d\.fp16\.onnx` \|.*\| 93\.1% \|$"),
    "daily3d.int8": (438, r"^\| `daily3d\.int8\.onnx` \|.*\| 94\.4% \|$"),
    # The variants table of models/msr3d.md (an ensemble of three seeds).
    "msr3d": (253, r"^\| `msr3d\.onnx` \|.*\| 92\.7% \|$"),
    "msr3d.fp16": (253, r"^\| `msr3d\.fp16\.onnx` \|.*\| 92\.7% \|$"),
    "msr3d.int8": (253, r"^\| `msr3d\.int8\.onnx` \|.*\| 92\.7% \|$"),
}


# Seconds a file with onnxruntime on two idle CPU cores: daily3d 2-6 (it answers every window and
# its mirror image), msr3d 5-15 (three networks); FP16 is no faster than FP32 on a CPU, INT8 is
# the fastest.
@pytest.mark.slow
@pytest.mark.parametrize("model", list(STATED_ON_TEST))
def test_shipped_3d_models_on_their_real_test_splits(model: str, request: pytest.FixtureRequest) -> None:
    """Evaluation is deterministic, so each file scores exactly what its card states, clip for clip.

    The accuracy in the metadata (the same in every variant) is the FP32 model's at export."""
    right, stated = STATED_ON_TEST[model]
    name = model.split(".")[0]
    data, split, clips, exported = TEST_SPLITS[name]
    assert re.search(stated, (ROOT / "models" / f"{name}.md").read_text(), re.MULTILINE), stated
    card, _ = open_model(ROOT / "models" / f"{model}.onnx")
    assert card.accuracy == {"test": round(exported / clips, 4)}
    result = evaluate(request.getfixturevalue(data), split, None, model)
    assert (result["n_test"], round(result["accuracy"] * clips)) == (clips, right), result
    assert result["test_seen_in_training"] == 0  # its own test split: nothing it was trained on
    # NW-UCLA's view 3 of "pick up with two hands" and "drop trash" (95 sequences) holds exact
    # copies of their view-2 sequences, which daily3d trained on: its score without them too.
    copies = COPIES_OF_TRAIN[name]
    assert result["test_copies_of_train"] == copies, result
    without = result["accuracy_without_copies"] * (clips - copies)
    assert round(without) == right - (copies if name == "daily3d" else 0), result  # every copy answered right


# Seconds a file on two idle CPU cores: 2.5 (INT8) to 4.5.
@pytest.mark.slow
@pytest.mark.parametrize("model, right", [("sports2d", 1258), ("sports2d.fp16", 1258), ("sports2d.int8", 1258)])
def test_shipped_sports2d_on_the_real_penn_action_train_clips(model: str, right: int, penn_npz: Path) -> None:
    """Train data, not a held-out figure: sports2d was trained on all 1,258 clips of Penn Action's
    train folder (its test split is held back), and its card can only state, for each file, what
    it answers on those clips (100.0 % each). The card's headline figure, 99.6 % on
    validation, belongs to another training run with the same settings (on 1,005 of these clips,
    scored on the other 253) and cannot be measured on the shipped model."""
    assert _card_rows("sports2d")[f"{model}.onnx"] == f"{right / 1258:.1%}"
    result = evaluate(penn_npz, "all", None, model)
    assert (result["n_test"], round(result["accuracy"] * 1258)) == (1258, right), result
    assert result["test_seen_in_training"] == 1258  # and evaluate says so


def test_evaluate_says_when_the_test_part_was_trained_on(nw_ucla_npz: Path, capsys) -> None:
    """daily3d was trained on NW-UCLA's views 1 and 2 of every subject: an odd/even-subject
    split of the same file scores mostly clips it has seen, and the result says how many. (Its
    INT8 variant, with the same card, answers its 760 clips three times faster.)"""
    result = evaluate(nw_ucla_npz, "cross-subject", None, "daily3d.int8")
    assert 0 < result["test_seen_in_training"] < result["n_test"]
    assert "not a held-out score" in capsys.readouterr().err


def test_evaluate_refuses_data_of_other_dimensions(msr_npz: Path) -> None:
    with pytest.raises(InputError, match="sports2d takes 2-D joints; .* holds 3-D joints"):
        evaluate(msr_npz, "cross-subject", "knn", "sports2d")


def test_unknown_model_names_the_shipped_ones() -> None:
    with pytest.raises(InputError, match="sports2d"):
        load_model("no-such-model")


def _shipped_copy(name: str, folder: Path) -> Path:
    """The shipped FP32 model and its card, copied where a test may rewrite them."""
    for suffix in (".onnx", ".md"):
        (folder / f"{name}{suffix}").write_bytes((ROOT / "models" / f"{name}{suffix}").read_bytes())
    return folder / f"{name}.onnx"


def _config_on(data: Path, config: str, folder: Path) -> Path:
    """A copy of a shipped model's training config that reads the benchmark from ``data``."""
    text = (ROOT / "configs" / "train" / config).read_text()
    path = folder / config
    path.write_text(re.sub(r'^path = ".*"$', f'path = "{data}"', text, count=1, flags=re.MULTILINE))
    return path


@pytest.mark.slow
def test_requantising_a_shipped_model_rewrites_its_int8_file_and_row(tmp_path: Path, nw_ucla_npz: Path) -> None:
    """`python -m export.requantise` quantises daily3d.onnx again with its training config's
    calibration windows: the INT8 file answers as the shipped one does on the real test view (438
    of 464, the 7-bit weights never saturating on an AVX2-only CPU either), and only its row of
    the card and a remark below the table change."""
    from export.requantise import main

    model = _shipped_copy("daily3d", tmp_path)
    card = model.with_suffix(".md")
    as_exported = re.sub(r"\n`daily3d\.int8\.onnx` [^\n]*\n", "", card.read_text())  # no remark yet
    stale_row = "| `daily3d.int8.onnx` | 0.00 MB | 0.0e+00 | 0.0% |"
    card.write_text(re.sub(r"^\| `daily3d\.int8\.onnx` \|.*$", stale_row, as_exported, flags=re.MULTILINE))
    before = card.read_text().splitlines()
    config = _config_on(nw_ucla_npz, "daily3d-ship.toml", tmp_path)
    assert main([str(model), "--config", str(config)]) == 0
    int8 = tmp_path / "daily3d.int8.onnx"
    result = evaluate(nw_ucla_npz, "cross-view", None, str(int8))
    assert round(result["accuracy"] * 464) == 438, result
    after = card.read_text().splitlines()
    at = before.index(stale_row)
    row = after[at]
    assert re.fullmatch(
        rf"\| `daily3d\.int8\.onnx` \| {int8.stat().st_size / 1e6:.2f} MB \| \d\.\de-0[1-3] \| 94\.4% \|", row
    )
    remark = after[at + 2]
    assert remark.startswith("`daily3d.int8.onnx` was quantised again from `daily3d.onnx` on ")
    assert after == [*before[:at], row, *before[at + 1 : at + 2], remark, "", *before[at + 2 :]]
    # Again: the remark is replaced, not repeated.
    assert main([str(model), "--config", str(config)]) == 0
    assert len(card.read_text().splitlines()) == len(after)


@pytest.mark.parametrize(
    "case, message",
    [
        ("another model's config", "is not the model's"),
        ("its config with a validation part", "trains on 'nw-ucla.npz, split cross-view/train less"),
        ("a variant", "not an FP32 model file (its card names it daily3d.onnx)"),
        ("no card", "no card beside the model"),
        ("no INT8 row", "0 rows of daily3d.int8.onnx in its table of variants, not one"),
    ],
)
def test_requantising_refuses_what_it_cannot_rebuild(tmp_path: Path, capsys, case: str, message: str) -> None:
    """Refused before anything is written: the INT8 file (where there is one) and the card stay."""
    from export.requantise import main

    model = _shipped_copy("daily3d", tmp_path)
    trained_as = "msr3d" if case == "another model's config" else "daily3d"
    config = ROOT / "configs" / "train" / f"{trained_as}-ship.toml"
    if case == "its config with a validation part":
        config = tmp_path / "validation.toml"
        config.write_text(
            (ROOT / "configs/train/daily3d-ship.toml")
            .read_text()
            .replace("validation_holds_out", "validation = true\nvalidation_holds_out")
        )
    if case == "a variant":
        model = model.rename(tmp_path / "daily3d.int8.onnx")
    if case == "no card":
        model.with_suffix(".md").unlink()
    if case == "no INT8 row":
        card = model.with_suffix(".md")
        card.write_text(
            "\n".join(line for line in card.read_text().splitlines() if "`daily3d.int8.onnx` |" not in line)
        )
    files = {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()}
    assert main([str(model), "--config", str(config)]) == 2
    assert message in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == files


def test_a_3d_card_says_what_its_normalisation_makes_of_a_camera_looking_down() -> None:
    from export.model_card import limits

    upright = limits(WindowSpec("kinect20", 3, 32, 7.5, "centre-torso-upright-align"))
    kept = limits(WindowSpec("kinect20", 3, 48, 15.0, "centre-torso"))
    assert "stood upright" in upright and "`centre-torso-upright-align`" in upright
    assert "keep the sensor's pitch" in kept and "stood upright" not in kept
    assert "Camera height" not in limits(WindowSpec("penn13", 2, 32, 15.0, "centre-torso"))
