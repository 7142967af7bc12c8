"""Shared fixtures: the real recordings under ``../shared/data``, converted once per session.

Every converted dataset comes from ``skeleton.readers.read_source``, the same code path as
``actionrec convert``; the fixtures only cache it, so the real-data tests stay fast.
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
