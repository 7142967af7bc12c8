"""Shared fixtures: the real recordings under ``../shared/data``, converted once per session.

Every converted dataset comes from ``skeleton.readers.read_source``, the same code path as
``actionrec convert``; the fixtures only cache it, so the real-data tests stay fast. The ``*_npz``
fixtures are those datasets saved once per session as ``actionrec convert`` writes them, for code
that reads a dataset file (training configs, ``actionrec evaluate``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skeleton.dataset import SkeletonDataset
from skeleton.layouts import get_layout
from skeleton.readers import read_source

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Where each converter reads its source, relative to DATA.
SOURCES: dict[str, str] = {
    "msr-action3d": "msr-action3d",
    "nw-ucla": "nw-ucla",
    "penn-action": "penn-action-train",
    "ntu": "ntu-sample",
    "ntu-color": "ntu-sample",
    "bvh": "cmu-mocap",
    "bandai-positions": "bandai-namco/dataset-2-positions.npz",
}

_cache: dict[str, SkeletonDataset] = {}


def converted(fmt: str) -> SkeletonDataset:
    """The real source of ``fmt`` read into a dataset (once per session)."""
    if fmt not in _cache:
        source = DATA / SOURCES[fmt]
        assert source.exists(), f"real data missing: {source} (see ../shared/data/README.md)"
        _cache[fmt] = read_source(fmt, source)
    return _cache[fmt]


def joint(dataset: SkeletonDataset, name: str, person: int = 0) -> np.ndarray:
    """(frames, C) positions of one named joint of one person, over the whole dataset."""
    return dataset.coords[:, person, get_layout(dataset.layout).index(name)].astype(np.float64)


@pytest.fixture(scope="session")
def msr() -> SkeletonDataset:
    return converted("msr-action3d")


@pytest.fixture(scope="session")
def nw_ucla() -> SkeletonDataset:
    return converted("nw-ucla")


@pytest.fixture(scope="session")
def penn() -> SkeletonDataset:
    return converted("penn-action")


@pytest.fixture(scope="session")
def ntu() -> SkeletonDataset:
    return converted("ntu")


@pytest.fixture(scope="session")
def ntu_color() -> SkeletonDataset:
    return converted("ntu-color")


@pytest.fixture(scope="session")
def cmu() -> SkeletonDataset:
    return converted("bvh")


@pytest.fixture(scope="session")
def bandai() -> SkeletonDataset:
    return converted("bandai-positions")


# The file names the shipped models' cards give as their training data: evaluating a shipped
# model on one of these files tells which of the scored clips it was trained on.
def _saved(dataset: SkeletonDataset, factory: pytest.TempPathFactory, name: str) -> Path:
    path = factory.mktemp("converted") / name
    dataset.save(path)
    return path


@pytest.fixture(scope="session")
def msr_npz(msr: SkeletonDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(msr, tmp_path_factory, "msr.npz")


@pytest.fixture(scope="session")
def nw_ucla_npz(nw_ucla: SkeletonDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(nw_ucla, tmp_path_factory, "nw-ucla.npz")


@pytest.fixture(scope="session")
def penn_npz(penn: SkeletonDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(penn, tmp_path_factory, "penn.npz")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with sports2d (2-D) and daily3d (3-D): the shipped files, or stand-ins."""
    from service.testing import models_for_development

    return models_for_development(tmp_path_factory.mktemp("models"))
