"""`actionrec pretrain` refuses what it cannot run or continue, in one line, before it writes anything.

The runs here pretrain a tiny encoder for a step or two on a small synthetic corpus: what they
check is which runs and checkpoints are accepted, not what is learnt.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from actionrec.cli import main
from export.config import MAX_SEED
from export.runtime import prepare_output_folder, save_atomic, seed_process
from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError

CONFIG = """projector_width = 16
{top}
[experiment]
name = "tiny"
output = "{out}"
seed = 0

[window]
layout = "kinect20"
dims = 3
length = 8
fps = 15.0
normalization = "centre-torso-align"

[encoder]
layout = "kinect20"
dims = 3
channels = [4, 4]
strides = [1, 2]

[optim]
epochs = 2
batch_size = 4
warmup_epochs = 0

[[data]]
path = "{data}"
"""


def _corpus(path: Path, sequences: int = 10, frames: int = 20) -> Path:
    """Unlabelled kinect20 3-D sequences: a random pose per sequence, moving a little each frame."""
    rng = np.random.default_rng(0)
    clips = []
    for i in range(sequences):
        pose = rng.normal(size=(1, 1, 20, 3))
        coords = pose + np.cumsum(rng.normal(scale=0.02, size=(frames, 1, 20, 3)), axis=0)
        clips.append(
            SkeletonSequence(
                name=f"s{i}",
                coords=coords.astype(np.float32),
                confidence=np.ones((frames, 1, 20), dtype=np.float32),
                timestamps_ms=uniform_timestamps(frames, 15.0),
                subject=i % 3,
            )
        )
    dataset = SkeletonDataset.from_sequences(
        clips, layout="kinect20", coordinate_space="camera", units="m", fps=15.0, source="synthetic"
    )
    dataset.save(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("corpus") / "corpus.npz")


def _config(folder: Path, data: Path, out: Path | None = None, top: str = "", name: str = "pretrain.toml") -> Path:
    path = folder / name
    path.write_text(CONFIG.format(top=top, out=out or folder / "run", data=data))
    return path


def _edited(config: Path, old: str, new: str) -> Path:
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return config


def _refused(argv: list[str], capsys) -> str:
    """The one line of error that `actionrec` answers ``argv`` with (exit 2)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """A finished two-epoch pretraining's folder (copy it before running on it)."""
    folder = tmp_path_factory.mktemp("finished")
    assert main(["pretrain", "--config", str(_config(folder, corpus))]) == 0
    return folder / "run"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _copy(run: Path, folder: Path) -> Path:
    copy = folder / "run"
    shutil.copytree(run, copy)
    return copy


# -- --resume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, key",
    [
        ('layout = "kinect20"', 'layout = "msr20"', "encoder.layout"),  # as many joints, another graph
        ("length = 8", "length = 10", "window.length"),
        ('normalization = "centre-torso-align"', 'normalization = "centre-torso"', "window.normalization"),
        ("batch_size = 4", "batch_size = 2", "optim.batch_size"),
        ("seed = 0", "seed = 1", "experiment.seed"),
        ("projector_width = 16", "projector_width = 16\noff_diagonal_weight = 0.01", "off_diagonal_weight"),
        ("[[data]]", "[masking]\nmax_probability = 0.3\n\n[[data]]", "masking.max_probability"),
    ],
)
def test_resuming_with_other_settings_is_refused_and_leaves_the_run_as_it_was(
    tmp_path: Path, corpus: Path, finished: Path, capsys, old: str, new: str, key: str
) -> None:
    run = _copy(finished, tmp_path)
    before = _files(run)
    config = _edited(_config(tmp_path, corpus), old, new)
    message = _refused(["pretrain", "--config", str(config), "--resume", "--epochs", "3"], capsys)
    assert str(run / "checkpoint.pt") in message and key in message
    assert _files(run) == before  # neither config.toml nor encoder.pt rewritten


def test_resuming_with_another_dataset_list_is_refused(tmp_path: Path, corpus: Path, finished: Path, capsys) -> None:
    run = _copy(finished, tmp_path)
    config = _config(tmp_path, corpus)
    config.write_text(config.read_text() + f'\n[[data]]\npath = "{corpus}"\n')
    message = _refused(["pretrain", "--config", str(config), "--resume", "--epochs", "3"], capsys)
    assert "other settings (data)" in message and str(run / "checkpoint.pt") in message


def test_resuming_continues_with_more_epochs_and_from_a_moved_folder(
    tmp_path: Path, corpus: Path, finished: Path
) -> None:
    # The copy is a moved run folder: its checkpoint records the original experiment.output.
    run = _copy(finished, tmp_path)
    assert main(["pretrain", "--config", str(_config(tmp_path, corpus)), "--resume", "--epochs", "3"]) == 0
    history = torch.load(run / "checkpoint.pt", weights_only=True)["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def test_resuming_with_fewer_epochs_than_already_run_is_refused(
    tmp_path: Path, corpus: Path, finished: Path, capsys
) -> None:
    run = _copy(finished, tmp_path)
    message = _refused(["pretrain", "--config", str(_config(tmp_path, corpus)), "--resume", "--epochs", "1"], capsys)
    assert "has run 2 epochs already" in message and str(run / "checkpoint.pt") in message


def test_resuming_without_a_checkpoint_is_refused(tmp_path: Path, corpus: Path, capsys) -> None:
    message = _refused(["pretrain", "--config", str(_config(tmp_path, corpus)), "--resume"], capsys)
    assert f"{tmp_path / 'run'}: no checkpoint.pt to resume from" in message
    assert not (tmp_path / "run").exists()


def _without_stored_config(checkpoint: Path) -> None:
    """``checkpoint`` as pretrainings wrote it before they recorded their config in it."""
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]
    save_atomic(state, checkpoint)


def test_a_checkpoint_without_its_config_is_compared_with_the_runs_config_toml(
    tmp_path: Path, corpus: Path, finished: Path, capsys
) -> None:
    run = _copy(finished, tmp_path)
    _without_stored_config(run / "checkpoint.pt")
    config = _edited(_config(tmp_path, corpus), "batch_size = 4", "batch_size = 2")
    message = _refused(["pretrain", "--config", str(config), "--resume", "--epochs", "3"], capsys)
    assert "optim.batch_size" in message
    (run / "config.toml").unlink()
    message = _refused(["pretrain", "--config", str(config), "--resume", "--epochs", "3"], capsys)
    assert "records no config" in message and str(run / "config.toml") in message


# -- initial ---------------------------------------------------------------------------------


def _second_stage(folder: Path, data: Path, initial: Path) -> Path:
    return _config(folder, data, out=folder / "second", top=f'initial = "{initial}"', name="second.toml")


def test_a_second_stage_may_change_data_windows_and_schedules(tmp_path: Path, corpus: Path, finished: Path) -> None:
    other = _corpus(tmp_path / "other.npz", sequences=8, frames=24)
    config = _second_stage(tmp_path, other, finished / "checkpoint.pt")
    for old, new in [("length = 8", "length = 12"), ("batch_size = 4", "batch_size = 2"), ("seed = 0", "seed = 3")]:
        _edited(config, old, new)
    assert main(["pretrain", "--config", str(config)]) == 0
    assert (tmp_path / "second" / "encoder.pt").is_file()


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded-config", "weights-only"])
def test_a_second_stage_on_another_joint_graph_is_refused(
    tmp_path: Path, corpus: Path, finished: Path, capsys, recorded: bool
) -> None:
    initial = _copy(finished, tmp_path) / "checkpoint.pt"
    if not recorded:  # only the weights tell: their graph buffers are kinect20's
        _without_stored_config(initial)
    config = _edited(_second_stage(tmp_path, corpus, initial), 'layout = "kinect20"', 'layout = "msr20"')
    message = _refused(["pretrain", "--config", str(config)], capsys)
    assert str(initial) in message and "weights do not fit this experiment's encoder" in message
    assert ("encoder.layout" if recorded else "another joint graph than msr20's") in message
    assert not (tmp_path / "second").exists()


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded-config", "weights-only"])
def test_a_second_stage_of_another_architecture_names_what_differs(
    tmp_path: Path, corpus: Path, finished: Path, capsys, recorded: bool
) -> None:
    initial = _copy(finished, tmp_path) / "checkpoint.pt"
    if not recorded:
        _without_stored_config(initial)
    config = _edited(_second_stage(tmp_path, corpus, initial), "channels = [4, 4]", "channels = [4, 6]")
    message = _refused(["pretrain", "--config", str(config)], capsys)
    assert "Error(s) in loading" not in message
    if recorded:
        assert "encoder.channels [4, 4] there, [4, 6] here" in message
    else:  # the first weights of another shape, by name, and how many more
        assert "encoder.blocks.1.gcn.conv.weight 12x4x1x1 there, 18x4x1x1 here" in message and "more)" in message


# -- settings out of range -------------------------------------------------------------------


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("projector_width = 16", "off_diagonal_weight = nan", "off_diagonal_weight must be positive and finite, not"),
        ("projector_width = 16", "off_diagonal_weight = -0.5", "off_diagonal_weight must be positive and finite"),
        ("projector_width = 16", "off_diagonal_weight = 0.0", "off_diagonal_weight must be positive and finite"),
        ("projector_width = 16", "off_diagonal_weight = inf", "off_diagonal_weight must be positive and finite"),
        ("[[data]]", "[masking]\nramp_fraction = inf\n[[data]]", "masking.ramp_fraction must be finite, not inf"),
        ("[[data]]", "[masking]\nmax_probability = nan\n[[data]]", "masking.max_probability is a share"),
        ("batch_size = 4", "batch_size = 4\nlr = nan", "optim.lr must be positive and finite"),
        ("seed = 0", f"seed = {MAX_SEED + 1}", f"experiment.seed must be at most {MAX_SEED} (2**32 - 1), not"),
    ],
)
def test_pretraining_settings_out_of_range_are_refused(
    tmp_path: Path, corpus: Path, capsys, old: str, new: str, message: str
) -> None:
    config = _edited(_config(tmp_path, corpus), old, new)
    line = _refused(["pretrain", "--config", str(config)], capsys)
    assert message in line and str(config) in line
    assert not (tmp_path / "run").exists()


def test_a_training_seed_beyond_32_bits_is_refused(tmp_path: Path, capsys) -> None:
    config = tmp_path / "train.toml"
    text = CONFIG.format(top="", out=tmp_path / "run", data="unread.npz").replace("projector_width = 16\n", "")
    text = 'mode = "scratch"\n' + text.split("[[data]]")[0]
    config.write_text(text + '[benchmark]\npath = "unread.npz"\ntrain_split = "a"\ntest_split = "b"\n')
    line = _refused(["train", "--config", str(config), "--seed", str(2**32)], capsys)
    assert f"--seed must be from 0 to {MAX_SEED}, not {2**32}" in line
    assert not list(tmp_path.glob("run*"))


def test_the_largest_seed_seeds_every_process() -> None:
    seed_process(MAX_SEED, rank=1)  # the second process's seed is one past the largest


def test_a_non_finite_loss_stops_the_pretraining_without_writing_weights(
    tmp_path: Path, corpus: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.pretrain

    monkeypatch.setattr(export.pretrain, "cross_correlation_loss", lambda z1, z2, w: (z1 * float("nan")).sum())
    capsys.readouterr()
    assert main(["pretrain", "--config", str(_config(tmp_path, corpus))]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar's
    assert (
        line.startswith("actionrec pretrain: error: ")
        and ": epoch 1, step 1 of" in line
        and "the loss became nan" in line
    )
    assert not (tmp_path / "run" / "encoder.pt").exists() and not (tmp_path / "run" / "history.json").exists()


# -- files -----------------------------------------------------------------------------------


def test_a_config_that_is_not_utf8_is_refused(tmp_path: Path, corpus: Path, capsys) -> None:
    config = _config(tmp_path, corpus)
    config.write_bytes(config.read_bytes().replace(b'name = "tiny"', 'name = "t\xe9l\xe9"'.encode("latin-1")))
    line = _refused(["pretrain", "--config", str(config)], capsys)
    assert line.startswith(f"actionrec pretrain: error: {config}: not UTF-8 text")


@pytest.mark.parametrize(
    "output, message",
    [("taken", "is a file, not a folder"), ("taken/run", "cannot create the folder")],
)
def test_an_output_folder_that_cannot_be_made_is_refused(
    tmp_path: Path, corpus: Path, capsys, output: str, message: str
) -> None:
    (tmp_path / "taken").write_text("a file")
    line = _refused(["pretrain", "--config", str(_config(tmp_path, corpus, out=tmp_path / output))], capsys)
    assert f"experiment.output {tmp_path / output}: {message}" in line
    with pytest.raises(InputError, match=message):
        prepare_output_folder(tmp_path / output)
    assert prepare_output_folder(tmp_path / "new" / "run").is_dir()
