"""Small helpers every reader uses: finding input files and parsing names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from skeleton.errors import InputError


def input_files(source: Path, pattern: str, what: str) -> list[Path]:
    """The files matching ``pattern`` in folder ``source`` (or ``source`` itself if a file)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise InputError(f"{source}: no such file or folder")
    files = sorted(p for p in source.glob(pattern) if p.is_file())
    if not files:
        raise InputError(f"{source}: no {what} files ({pattern}) in this folder")
    return files


def name_fields(path: Path, pattern: str, what: str) -> dict[str, int]:
    """Integer fields of a file name, e.g. ``a01_s02_e03`` -> {'a': 1, 's': 2, 'e': 3}."""
    match = re.fullmatch(pattern, path.name)
    if match is None:
        raise InputError(f"{path}: file name does not follow the {what} pattern {pattern}")
    return {k: int(v) for k, v in match.groupdict().items()}


def one_person(coords: np.ndarray) -> np.ndarray:
    """(T, J, C) -> (T, 1, J, C): datasets always carry a person axis."""
    return coords[:, None]


def read_label_names(path: Path) -> list[str]:
    """One class name per line, or ``id<TAB>name`` per line; blank lines ignored."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            names.append(line.split("\t", 1)[-1].strip())
    if not names:
        raise InputError(f"{path}: no class names in this file")
    return names


def label_names_beside(folder: Path, file_name: str, default: list[str]) -> list[str]:
    """Class names from a names file next to the data, or ``default`` when there is none."""
    names_file = folder / file_name
    return read_label_names(names_file) if names_file.is_file() else default


def label_from_number(path: Path, number: int, label_names: list[str]) -> int:
    """A source's 1-based action number as a 0-based label, checked against the names."""
    if not 1 <= number <= len(label_names):
        raise InputError(f"{path}: action {number} has no name ({len(label_names)} actions known)")
    return number - 1
