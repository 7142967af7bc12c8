"""Which revision of which reader converted a dataset, and whether that reading is still current.

A reader's revision goes up when it reads the same source files differently, so that a file
converted before is refused on loading (it would train and score on the old reading, silently)
instead of used. Each entry of ``READER_REVISIONS`` says what changed; a format not listed is at
revision 1. ``file_digest`` tells whether two runs read the same file (a dataset, an encoder).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

READER_REVISIONS: dict[str, tuple[int, str]] = {
    "nw-ucla": (2, "its clips are read at 15 fps, not 30"),
    "penn-action": (2, "joints the annotators did not place are missing, not at the image's corner"),
}
# Files converted before readers signed them (revision 1), known by the source text each reader
# writes. Only readers past revision 1 need an entry: an unsigned file of any other is current.
_UNSIGNED_SOURCES = {
    "NW-UCLA Multiview Action3D (": "nw-ucla",
    "Penn Action (": "penn-action",
}


def reader_signature(fmt: str) -> str:
    """What a dataset converted by ``fmt``'s reader records as its ``reader``: "nw-ucla 2"."""
    return f"{fmt} {READER_REVISIONS.get(fmt, (1, ''))[0]}"


def unsigned_reader(source: str) -> str:
    """The reader past revision 1 that writes ``source`` (a dataset's source text), or ""."""
    return next((fmt for prefix, fmt in _UNSIGNED_SOURCES.items() if source.startswith(prefix)), "")


def outdated_conversion(reader: str, source: str) -> str | None:
    """Why a dataset converted by an older revision of its reader must be converted again (None:
    it need not). ``reader`` and ``source`` are the dataset's."""
    if reader:
        fmt, _, revision_text = reader.partition(" ")
        revision = int(revision_text) if revision_text.isdigit() else 0
    else:
        fmt, revision = unsigned_reader(source), 1
    if fmt not in READER_REVISIONS or revision >= READER_REVISIONS[fmt][0]:
        return None
    current, change = READER_REVISIONS[fmt]
    return (
        f"converted by revision {revision} of the {fmt} reader; revision {current} reads the source differently"
        f" ({change}): convert it again (`make data`, or `actionrec convert --format {fmt}`), and remake"
        " any file made from it (such as data/compact/)"
    )


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex): the same digest, the same file, whatever its path."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
