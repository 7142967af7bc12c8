"""Readers from each real source format into the project's dataset format.

``read_source`` reads one path (a folder or a file) in one of the ``--format`` names of
``actionrec convert`` into a ``SkeletonDataset`` signed with its reader's revision
(``skeleton.provenance``); every reader raises ``InputError`` with the file's name for input it
cannot read. Readers are called only through ``read_source``, which signs what they return.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from skeleton.provenance import reader_signature


def _readers() -> dict[str, Callable[[Path], SkeletonDataset]]:
    # Imported here so that `import skeleton.readers` stays cheap (scipy is only for Penn).
    from skeleton.readers.mocap import read_bandai_positions, read_bvh_clips
    from skeleton.readers.msr_action3d import read_msr_action3d
    from skeleton.readers.ntu import read_ntu, read_ntu_color
    from skeleton.readers.nw_ucla import read_nw_ucla
    from skeleton.readers.penn_action import read_penn_action

    return {
        "msr-action3d": read_msr_action3d,
        "nw-ucla": read_nw_ucla,
        "penn-action": read_penn_action,
        "ntu": read_ntu,
        "ntu-color": read_ntu_color,
        "bvh": read_bvh_clips,
        "bandai-positions": read_bandai_positions,
    }


FORMATS: tuple[str, ...] = (
    "msr-action3d",
    "nw-ucla",
    "penn-action",
    "ntu",
    "ntu-color",
    "bvh",
    "bandai-positions",
)


def read_source(fmt: str, source: Path) -> SkeletonDataset:
    """Read ``source`` in format ``fmt`` (one of ``FORMATS``), signed with the reader's revision."""
    readers = _readers()
    if fmt not in readers:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    dataset = readers[fmt](Path(source))
    dataset.reader = reader_signature(fmt)
    return dataset
