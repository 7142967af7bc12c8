"""Readers from each real source format into the project's dataset format.

``READERS`` maps the ``--format`` names of ``actionrec convert`` to a function of one path
(a folder or a file) returning a ``SkeletonDataset``; every reader raises ``InputError`` with
the file's name for input it cannot read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError


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


# A reader's revision goes up when it reads the same files differently, so that a file converted
# before is refused (it would train and score on the old reading, silently) instead of used. Each
# entry says what changed; a format not listed is at revision 1.
READER_REVISIONS: dict[str, tuple[int, str]] = {
    "nw-ucla": (2, "its clips are read at 15 fps, not 30"),
    "penn-action": (2, "joints the annotators did not place are missing, not at the image's corner"),
}
# Files converted before readers signed them, known by the source text their reader writes.
_UNSIGNED_SOURCES = {"NW-UCLA Multiview Action3D (": "nw-ucla", "Penn Action (": "penn-action"}


def reader_signature(fmt: str) -> str:
    """What a dataset converted by ``fmt``'s reader records as its ``reader``."""
    return f"{fmt} {READER_REVISIONS.get(fmt, (1, ''))[0]}"


def outdated_conversion(reader: str, source: str) -> str | None:
    """Why a dataset converted by an older revision of its reader must be converted again (None:
    it need not). ``reader`` and ``source`` are the dataset's."""
    if reader:
        fmt, _, revision_text = reader.partition(" ")
        revision = int(revision_text) if revision_text.isdigit() else 0
    else:
        fmt = next((f for prefix, f in _UNSIGNED_SOURCES.items() if source.startswith(prefix)), "")
        revision = 1
    if fmt not in READER_REVISIONS or revision >= READER_REVISIONS[fmt][0]:
        return None
    current, change = READER_REVISIONS[fmt]
    return (
        f"converted by revision {revision} of the {fmt} reader; revision {current} reads the source differently"
        f" ({change}): convert it again (`make data`, or `actionrec convert --format {fmt}`)"
    )


def read_source(fmt: str, source: Path) -> SkeletonDataset:
    """Read ``source`` in format ``fmt`` (one of ``FORMATS``), signed with the reader's revision."""
    readers = _readers()
    if fmt not in readers:
        raise InputError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    dataset = readers[fmt](Path(source))
    dataset.reader = reader_signature(fmt)
    return dataset
