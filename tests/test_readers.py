"""``actionrec convert`` and ``actionrec info`` on the real data, and on broken input.

Each format is converted through the CLI entry point (``actionrec.cli.main``), written to a
temporary folder and read back with ``SkeletonDataset.load``: what a user gets is checked, not
the reader's in-memory result. Broken input must end in one line on stderr that names the
file, a non-zero exit, no traceback, and no output file.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, SOURCES, converted

from actionrec.cli import main
from skeleton.dataset import SkeletonDataset
from skeleton.provenance import READER_REVISIONS, reader_signature, unsigned_reader
from skeleton.readers import FORMATS
from skeleton.readers.penn_action import UNPLACED_WITHIN_PX


def convert(fmt: str, out_dir: Path, source: Path | None = None) -> Path:
    out = out_dir / f"{fmt}.npz"
    rc = main(["convert", "--format", fmt, str(source or DATA / SOURCES[fmt]), "-o", str(out)])
    assert rc == 0
    assert out.is_file()
    assert [p.name for p in out_dir.iterdir() if p.name.endswith(".tmp")] == []
    return out


# -- conversions of the real data -----------------------------------------------------------


def test_msr_action3d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = SkeletonDataset.load(convert("msr-action3d", tmp_path))
    assert "a13_s09_e02" in capsys.readouterr().err  # the all-zero sequence is reported, not kept
    assert (ds.layout, ds.dims, ds.coordinate_space, ds.units, ds.fps) == ("msr20", 3, "camera", "m", 15.0)
    assert len(ds) == 566
    names = {str(n).removesuffix("_skeleton3D") for n in ds.names}
    assert "a13_s09_e02" not in names
    # 1,113 all-zero frames in 20 files (38 of them the dropped sequence) are gone.
    assert ds.num_frames == 23478 - 1113
    # The frames kept keep their capture times: a sensor loss mid-sequence stays a gap.
    lost = ds[[str(n) for n in ds.names].index("a13_s02_e02_skeleton3D")]
    assert np.allclose(np.diff(lost.timestamps_ms), np.where(np.arange(17) == 12, 13, 1) * 1000 / 15)
    assert not np.isnan(ds.coords).any()
    assert (np.abs(ds.coords).sum(axis=(1, 2, 3)) > 0).all()
    assert len(ds.label_names) == 20 and ds.label_names[0] == "high arm wave"
    assert sorted(set(ds.labels.tolist())) == list(range(20))
    # Cross-subject protocol over the sequences of the CVPR'12 list (less the defective one).
    listed = set((DATA / "msr-action3d" / "files_used_in_cvpr12_paper.txt").read_text().split())
    listed.discard("a13_s09_e02")
    train, test = ds.splits["cross-subject/train"], ds.splits["cross-subject/test"]
    assert not set(train) & set(test)
    split_names = {str(ds.names[i]).removesuffix("_skeleton3D") for i in np.concatenate([train, test])}
    assert split_names == listed
    assert len(listed) == 557
    assert set(ds.subjects[train].tolist()) == {1, 3, 5, 7, 9}
    assert set(ds.subjects[test].tolist()) == {2, 4, 6, 8, 10}


def test_nw_ucla(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = SkeletonDataset.load(convert("nw-ucla", tmp_path))
    assert "relabelled 24 takes labelled as the reverse of their action" in capsys.readouterr().err
    assert (ds.layout, ds.dims, ds.units, ds.fps, ds.reader) == ("kinect20", 3, "m", 15.0, "nw-ucla 2")
    assert len(ds) == 1484
    assert ds.num_frames == 58534
    assert len(ds.label_names) == 10
    assert len(ds.splits["cross-view/train"]) == 1020
    test = ds.splits["cross-view/test"]
    assert len(test) == 464
    assert set(ds.views[test].tolist()) == {3}
    with open(DATA / "nw-ucla" / "val_label.pkl", "rb") as f:  # the community's list (a test-only read)
        reference = pickle.load(f)
    assert {str(ds.names[i]) for i in test} == {r["file_name"] for r in reference}
    by_name = {r["file_name"]: r["label"] - 1 for r in reference}
    assert all(ds.labels[i] == by_name[str(ds.names[i])] for i in test)  # no test label is corrected


def test_nw_ucla_relabels_only_the_reversed_takes(nw_ucla: SkeletonDataset) -> None:
    """The 24 takes of ``REVERSED_TAKES`` get the reverse of their file label; every other file keeps its own."""
    from skeleton.readers.nw_ucla import LABEL_NAMES

    ds = nw_ucla  # what `actionrec convert` writes (test_nw_ucla checks that path)
    changed = {}
    for i, name in enumerate(ds.names):
        record = json.loads((DATA / "nw-ucla" / "all_sqe" / f"{name}.json").read_text())
        if ds.labels[i] != record["label"] - 1:
            changed[str(name)] = (LABEL_NAMES[record["label"] - 1], ds.label_names[ds.labels[i]])
    assert len(changed) == 24
    takes = {f"s04_e{e:02d}_v02" for e in range(6)} | {f"s05_e{e:02d}_v02" for e in range(7)}
    assert {n[4:] for n in changed} == takes
    assert set(changed.values()) == {
        ("sit down", "stand up"),
        ("stand up", "sit down"),
        ("donning", "doffing"),
        ("doffing", "donning"),
    }
    assert not set(np.flatnonzero(np.isin(ds.names, list(changed)))) & set(ds.splits["cross-view/test"])


def test_nw_ucla_has_no_joint_at_the_sensor(nw_ucla: SkeletonDataset) -> None:
    # A joint at exactly (0, 0, 0) would sit inside the sensor: it is how the files mark a
    # joint the tracker lost (12 joints in 2 frames: a04_s01_e01_v01 frame 34, a04_s04_e02_v01
    # frame 45). They must be missing (NaN, confidence 0), not points a model learns from.
    at_origin = (nw_ucla.coords == 0).all(axis=-1) & (nw_ucla.confidence > 0)
    frames = np.flatnonzero(at_origin.any(axis=(1, 2)))
    owners = {str(nw_ucla.names[i]) for i in np.searchsorted(nw_ucla.offsets, frames, side="right") - 1}
    assert at_origin.sum() == 0, f"{at_origin.sum()} joints at the sensor origin in {sorted(owners)}"


def test_penn_action(tmp_path: Path) -> None:
    ds = SkeletonDataset.load(convert("penn-action", tmp_path))
    assert (ds.layout, ds.dims, ds.coordinate_space, ds.units) == ("penn13", 2, "image", "px")
    assert len(ds) == 1258
    assert len(ds.label_names) == 15
    assert sorted(set(ds.labels.tolist())) == list(range(15))
    assert ds.view_names == ("front", "back", "left", "right")
    assert set(ds.views.tolist()) == {0, 1, 2, 3}
    assert len(ds.splits["official/train"]) == 1258  # this folder is the official train split
    assert (ds.image_sizes > 0).all()
    # Joints the annotators did not place are stored near the image's corner: read as missing.
    near_corner = (ds.coords < UNPLACED_WITHIN_PX).all(axis=-1)
    assert not near_corner.any(), f"{near_corner.sum()} joints at the image's corner"
    missing = np.isnan(ds.coords).any(axis=-1)
    assert 80_000 < missing.sum() < 100_000 and (ds.confidence[missing] == 0).all()


@pytest.mark.parametrize("fmt", sorted(READER_REVISIONS))
def test_a_reader_past_revision_1_is_known_by_its_source_text(fmt: str) -> None:
    """Files converted before readers signed them carry only their source text: what the reader
    writes there must name it, or such a file of an old reading would load as current."""
    dataset = converted(fmt)
    assert dataset.reader == reader_signature(fmt)
    assert unsigned_reader(dataset.source) == fmt


@pytest.mark.parametrize(("fmt", "dims"), [("ntu", 3), ("ntu-color", 2)])
def test_ntu(tmp_path: Path, fmt: str, dims: int) -> None:
    ds = SkeletonDataset.load(convert(fmt, tmp_path))
    assert (ds.layout, ds.dims) == ("ntu25", dims)
    assert len(ds) == 1
    assert ds.num_frames == 103
    assert ds.persons_per_sequence().tolist() == [1]
    assert ds.label_names[ds.labels[0]] == "drink water"
    assert not np.isnan(ds.coords).any()


def test_cmu_bvh(tmp_path: Path) -> None:
    ds = SkeletonDataset.load(convert("bvh", tmp_path))
    assert ds.layout == "cmu31"
    assert sorted(ds.names.tolist()) == ["131_01", "131_02", "131_03"]
    assert ds.fps == pytest.approx(120.0, abs=0.5)
    assert ds.lengths.tolist() == [994, 1247, 1102]
    assert np.diff(ds[0].timestamps_ms).mean() == pytest.approx(1000 / 120, rel=1e-3)


def test_bandai_positions(tmp_path: Path) -> None:
    ds = SkeletonDataset.load(convert("bandai-positions", tmp_path))
    assert (ds.layout, ds.coordinate_space, ds.units) == ("bandai21", "world", "m")
    assert len(ds) == 2902
    assert ds.num_frames == 384931
    assert ds.fps == pytest.approx(30.0, rel=1e-5)
    assert "walk" in ds.label_names


@pytest.mark.parametrize("fmt", ["msr-action3d", "ntu"])
def test_info_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    path = convert(fmt, tmp_path)
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert {"sequences", "frames", "classes", "layout", "fps"} <= set(summary)
    ds = SkeletonDataset.load(path)
    assert summary["sequences"] == len(ds)
    assert summary["frames"] == ds.num_frames
    assert summary["layout"] == ds.layout
    assert (summary["fps"], summary["reader"]) == (ds.fps, ds.reader) and ds.reader
    assert list(summary["classes"]) == list(ds.label_names)
    # Hours span each sequence's first to last timestamp: a stretch the sensor lost counts.
    spans = [(s.timestamps_ms[-1] - s.timestamps_ms[0]) / 1000 + 1 / ds.fps for s in ds]
    assert summary["hours"] == pytest.approx(sum(spans) / 3600, abs=1e-3)
    assert len(out) > 1  # the readable summary comes first


# -- broken input ---------------------------------------------------------------------------

# Each builder makes a broken source under the folder it is given and returns
# (format, source to pass, the path the error message must name).
Builder = Callable[[Path], tuple[str, Path, Path]]


def _missing_folder(tmp: Path) -> tuple[str, Path, Path]:
    return "msr-action3d", tmp / "no-such-folder", tmp / "no-such-folder"


def _empty_folder(tmp: Path) -> tuple[str, Path, Path]:
    (tmp / "empty").mkdir()
    return "nw-ucla", tmp / "empty", tmp / "empty"


def _empty_file(fmt: str, name: str) -> Builder:
    def build(tmp: Path) -> tuple[str, Path, Path]:
        folder = tmp / "src"
        folder.mkdir()
        (folder / name).touch()
        # bandai-positions reads one file; the others read a folder.
        return fmt, (folder / name if fmt == "bandai-positions" else folder), folder / name

    return build


def _truncated_ntu(fmt: str, by_lines: bool) -> Builder:
    def build(tmp: Path) -> tuple[str, Path, Path]:
        real = DATA / "ntu-sample" / "S001C001P001R001A001.skeleton"
        folder = tmp / "src"
        folder.mkdir()
        text = real.read_text()
        if by_lines:  # ends cleanly at a line boundary, mid-frame
            lines = text.splitlines(keepends=True)
            cut = "".join(lines[: len(lines) // 2])
        else:  # ends in the middle of a line
            cut = text[: len(text) // 2]
        (folder / real.name).write_text(cut)
        return fmt, folder, folder / real.name

    return build


def _penn_mat_that_is_text(tmp: Path) -> tuple[str, Path, Path]:
    folder = tmp / "src"
    folder.mkdir()
    (folder / "0001.mat").write_text("this is a text file, not a MATLAB file\n" * 5)
    return "penn-action", folder, folder / "0001.mat"


def _ucla_broken_json(tmp: Path) -> tuple[str, Path, Path]:
    real = sorted((DATA / "nw-ucla" / "all_sqe").glob("*.json"))[0]
    folder = tmp / "src"
    folder.mkdir()
    text = real.read_text()
    (folder / real.name).write_text(text[: len(text) // 2])
    return "nw-ucla", folder, folder / real.name


def _msr_three_columns(tmp: Path) -> tuple[str, Path, Path]:
    real = DATA / "msr-action3d" / "a01_s01_e01_skeleton3D.txt"
    folder = tmp / "src"
    folder.mkdir()
    np.savetxt(folder / real.name, np.loadtxt(real)[:, :3])
    return "msr-action3d", folder, folder / real.name


BROKEN: dict[str, Builder] = {
    "missing-folder": _missing_folder,
    "empty-folder": _empty_folder,
    "empty-msr-file": _empty_file("msr-action3d", "a01_s01_e01_skeleton3D.txt"),
    "empty-nw-ucla-file": _empty_file("nw-ucla", "a01_s01_e01_v01.json"),
    "empty-penn-file": _empty_file("penn-action", "0001.mat"),
    "empty-ntu-file": _empty_file("ntu", "S001C001P001R001A001.skeleton"),
    "empty-bvh-file": _empty_file("bvh", "131_01.bvh"),
    "empty-bandai-file": _empty_file("bandai-positions", "dataset-2-positions.npz"),
    "ntu-cut-mid-line": _truncated_ntu("ntu", by_lines=False),
    "ntu-cut-at-line": _truncated_ntu("ntu", by_lines=True),
    "ntu-color-cut-mid-line": _truncated_ntu("ntu-color", by_lines=False),
    "penn-mat-that-is-text": _penn_mat_that_is_text,
    "nw-ucla-broken-json": _ucla_broken_json,
    "msr-three-columns": _msr_three_columns,
}


_HIDDEN_BY_DEFAULT = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def assert_one_line_error(err: str, rc: int, caught: list, named: Path) -> str:
    assert rc != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    assert str(named) in lines[0]
    # A warning escaping to the user would be printed as extra stderr lines by the real CLI
    # (pytest captures warnings, so they are counted here instead). Categories Python hides by
    # default are left out.
    shown = [str(w.message) for w in caught if not issubclass(w.category, _HIDDEN_BY_DEFAULT)]
    assert shown == [], f"warnings would reach stderr: {shown}"
    return lines[0]


@pytest.mark.parametrize("case", list(BROKEN))
def test_convert_broken_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    fmt, source, named = BROKEN[case](tmp_path)
    out_dir = tmp_path / "out"
    out = out_dir / "dataset.npz"
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["convert", "--format", fmt, str(source), "-o", str(out)])
    assert_one_line_error(capsys.readouterr().err, rc, caught, named)
    assert not out.exists()
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_convert_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dataset.npz"
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--format", "kinect-v3", str(DATA / "msr-action3d"), "-o", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "kinect-v3" in err and "Traceback" not in err
    assert not out.exists()


def test_every_format_is_known_to_the_cli() -> None:
    assert set(FORMATS) == set(SOURCES)


def _real_text_file(tmp: Path) -> Path:
    return DATA / "msr-action3d" / "a01_s01_e01_skeleton3D.txt"


def _foreign_npz(tmp: Path) -> Path:
    return DATA / "bandai-namco" / "dataset-2-positions.npz"  # an .npz, but not a dataset


def _truncated_dataset(tmp: Path) -> Path:
    (tmp / "full").mkdir()
    full = convert("ntu", tmp / "full")
    data = full.read_bytes()
    cut = tmp / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _missing_dataset(tmp: Path) -> Path:
    return tmp / "nothing-here.npz"


@pytest.mark.parametrize("make", [_real_text_file, _foreign_npz, _truncated_dataset, _missing_dataset])
def test_info_on_non_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], Path]) -> None:
    path = make(tmp_path)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["info", str(path), "--json"])
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, rc, caught, path)
    assert captured.out == ""


def test_convert_writes_nothing_over_an_existing_file_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "dataset.npz"
    shutil.copy(DATA / "msr-action3d" / "SOURCE.txt", out)
    before = out.read_bytes()
    assert main(["convert", "--format", "ntu", str(tmp_path / "missing"), "-o", str(out)]) != 0
    assert out.read_bytes() == before
