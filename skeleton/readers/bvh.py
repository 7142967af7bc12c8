"""Read BVH motion-capture files into global joint positions (plain numpy).

BVH stores a skeleton as a tree of local offsets plus, per frame, a list of channel
values (translations and Euler angles) for every joint. Action-recognition code wants
global joint positions, so this module parses the file and runs forward kinematics once,
vectorised over frames.

Conventions (they differ between exporters, so each is honoured per joint, not assumed):

* Every joint has its own ``CHANNELS`` list and order. CMU clips use ``Zrotation
  Yrotation Xrotation`` for legs and spine but ``Zrotation Xrotation Yrotation`` for
  arms; Bandai-Namco clips give every joint 6 channels.
* Euler angles are in degrees and intrinsic: channels listed ``A1 A2 A3`` give the local
  rotation ``R = R_A1 @ R_A2 @ R_A3``.
* Position channels *replace* the matching ``OFFSET`` component as the joint's local
  translation (Bandai-Namco writes the bone offset again in every frame; CMU roots have
  a zero offset).
* A joint's global transform is ``parent_global @ [R | translation]``.

Every problem with the file is an :class:`~skeleton.errors.InputError` whose one-line
message starts with the path, because a bad file is the user's to fix, not a bug.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skeleton.errors import InputError, read_input_file

_AXES = "XYZ"
_POSITION = "position"
_ROTATION = "rotation"


@dataclass(frozen=True)
class BvhClip:
    """A parsed BVH clip with global joint positions.

    ``positions`` is in the file's own length unit (CMU: about 5.6 cm per unit;
    Bandai-Namco: centimetres): converting is the caller's decision, since no unit is
    stated in the file.
    """

    joint_names: tuple[str, ...]  # every JOINT/ROOT in file order (End Sites excluded)
    parents: tuple[int, ...]  # parent index per joint, -1 for the root
    positions: np.ndarray  # (T, J, 3) float32 global positions, in the file's units
    fps: float  # 1 / Frame Time


@dataclass(frozen=True)
class _Joint:
    """One JOINT/ROOT of the hierarchy as written in the file."""

    name: str
    parent: int
    offset: np.ndarray  # (3,) float64
    channels: tuple[tuple[str, int], ...]  # (kind, axis index) in file order


@dataclass(frozen=True)
class _Motion:
    """The MOTION section: channel values for every frame."""

    values: np.ndarray  # (T, C) float64
    frame_time: float


class _Tokens:
    """A cursor over the hierarchy's tokens.

    Tokens keep their line numbers so that error messages can point at the bad line.
    """

    def __init__(self, path: Path, tokens: list[tuple[str, int]]) -> None:
        self._path = path
        self._tokens = tokens
        self._pos = 0

    def fail(self, what: str) -> InputError:
        """Build an error that names the file and, when known, the current line."""
        if self._pos < len(self._tokens):
            return InputError(f"{self._path}: line {self._tokens[self._pos][1]}: {what}")
        return InputError(f"{self._path}: {what} (hierarchy ends early)")

    def peek(self) -> str | None:
        """The next token without consuming it, or None at the end."""
        return self._tokens[self._pos][0] if self._pos < len(self._tokens) else None

    def take(self, what: str) -> str:
        """Consume and return the next token; ``what`` names it in an error."""
        token = self.peek()
        if token is None:
            raise self.fail(f"expected {what}")
        self._pos += 1
        return token

    def expect(self, keyword: str) -> None:
        """Consume a required keyword (case-insensitive, as exporters vary in case)."""
        token = self.peek()
        if token is None or token.upper() != keyword.upper():
            raise self.fail(f"expected {keyword!r}, found {token!r}")
        self._pos += 1

    def at_end(self) -> bool:
        """Whether every token has been consumed."""
        return self._pos >= len(self._tokens)


def read_bvh(path: Path) -> BvhClip:
    """Parse a BVH file and compute global joint positions for every frame."""
    path = Path(path)
    hierarchy_lines, motion_lines = _split_sections(path, _read_lines(path))
    joints = _parse_hierarchy(path, hierarchy_lines)
    n_channels = sum(len(j.channels) for j in joints)
    motion = _parse_motion(path, motion_lines, n_channels)
    positions = _forward_kinematics(joints, motion.values)
    return BvhClip(
        joint_names=tuple(j.name for j in joints),
        parents=tuple(j.parent for j in joints),
        positions=positions.astype(np.float32),
        fps=1.0 / motion.frame_time,
    )


def _read_lines(path: Path) -> list[tuple[str, int]]:
    """Return the non-blank, comment-free lines as (text, 1-based line number).

    BVH has no official comment syntax, but hand-edited files use ``#`` and ``//``;
    tolerating them (and CRLF endings, tabs, a UTF-8 BOM) costs nothing.
    """
    raw = read_input_file(path, "BVH file")
    text = raw.decode("utf-8-sig", errors="replace")
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].split("//", 1)[0].strip()
        if line:
            lines.append((line, number))
    if not lines:
        raise InputError(f"{path}: file is empty")
    return lines


def _split_sections(path: Path, lines: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Split the lines at the MOTION keyword into hierarchy and motion parts."""
    if lines[0][0].split()[0].upper() != "HIERARCHY":
        raise InputError(f"{path}: no HIERARCHY section (file does not start with HIERARCHY)")
    for index, (line, _) in enumerate(lines):
        if line.split()[0].upper() == "MOTION":
            return lines[:index], lines[index + 1 :]
    raise InputError(f"{path}: no MOTION section")


def _parse_hierarchy(path: Path, lines: list[tuple[str, int]]) -> list[_Joint]:
    """Parse ``HIERARCHY ROOT ... { ... }`` into joints, parents first (file order)."""
    tokens = []
    for line, number in lines:
        spaced = line.replace("{", " { ").replace("}", " } ")
        tokens.extend((token, number) for token in spaced.split())
    cursor = _Tokens(path, tokens)
    cursor.expect("HIERARCHY")
    joints: list[_Joint] = []
    while not cursor.at_end():
        cursor.expect("ROOT")
        _parse_joint(cursor, joints, parent=-1)
    if not joints:
        raise InputError(f"{path}: HIERARCHY has no ROOT joint")
    return joints


def _parse_joint(cursor: _Tokens, joints: list[_Joint], parent: int) -> None:
    """Parse one joint body (after ROOT/JOINT), recursing into its children."""
    name = _parse_name(cursor)
    cursor.expect("{")
    cursor.expect("OFFSET")
    offset = _parse_floats(cursor, 3, f"OFFSET of joint {name!r}")
    channels: tuple[tuple[str, int], ...] = ()
    if (cursor.peek() or "").upper() == "CHANNELS":
        channels = _parse_channels(cursor, name)
    index = len(joints)
    joints.append(_Joint(name=name, parent=parent, offset=offset, channels=channels))
    while True:
        keyword = cursor.take("'}' closing joint " + repr(name))
        if keyword == "}":
            return
        if keyword.upper() == "JOINT":
            _parse_joint(cursor, joints, parent=index)
        elif keyword.upper() == "END":
            _skip_end_site(cursor)
        else:
            raise cursor.fail(f"unexpected {keyword!r} inside joint {name!r}")


def _parse_name(cursor: _Tokens) -> str:
    """Read a joint name up to its brace (some exporters put spaces in names)."""
    parts = []
    while cursor.peek() not in ("{", None):
        parts.append(cursor.take("joint name"))
    if not parts:
        raise cursor.fail("joint without a name")
    return " ".join(parts)


def _skip_end_site(cursor: _Tokens) -> None:
    """Consume an ``End Site { OFFSET x y z }`` block: it is a bone tip, not a joint."""
    cursor.expect("Site")
    cursor.expect("{")
    cursor.expect("OFFSET")
    _parse_floats(cursor, 3, "OFFSET of End Site")
    cursor.expect("}")


def _parse_floats(cursor: _Tokens, count: int, what: str) -> np.ndarray:
    """Read ``count`` finite numbers."""
    values = []
    for _ in range(count):
        token = cursor.take(f"{count} numbers for {what}")
        try:
            value = float(token)
        except ValueError:
            raise cursor.fail(f"non-numeric value {token!r} in {what}") from None
        if not np.isfinite(value):
            raise cursor.fail(f"non-finite value {token!r} in {what}")
        values.append(value)
    return np.array(values, dtype=np.float64)


def _parse_channels(cursor: _Tokens, joint: str) -> tuple[tuple[str, int], ...]:
    """Read ``CHANNELS n name...`` and check that the rotation order is usable.

    Rotations must be absent or exactly three distinct axes: anything else has no
    defined Euler order, and guessing one would silently produce wrong poses.
    """
    cursor.expect("CHANNELS")
    count_token = cursor.take(f"channel count of joint {joint!r}")
    if not count_token.isdigit():
        raise cursor.fail(f"bad channel count {count_token!r} for joint {joint!r}")
    channels = tuple(_parse_channel(cursor, joint) for _ in range(int(count_token)))
    rotations = [axis for kind, axis in channels if kind == _ROTATION]
    positions = [axis for kind, axis in channels if kind == _POSITION]
    if rotations and (len(rotations) != 3 or len(set(rotations)) != 3):
        order = "".join(_AXES[a] for a in rotations)
        raise cursor.fail(f"unknown rotation order {order!r} for joint {joint!r} (need three distinct axes)")
    if len(set(positions)) != len(positions):
        raise cursor.fail(f"repeated position channel for joint {joint!r}")
    return channels


def _parse_channel(cursor: _Tokens, joint: str) -> tuple[str, int]:
    """Turn a name like ``Zrotation`` into ``("rotation", 2)``."""
    token = cursor.take(f"channel name of joint {joint!r}")
    axis, kind = token[:1].upper(), token[1:].lower()
    if axis not in _AXES or kind not in (_POSITION, _ROTATION):
        raise cursor.fail(f"unknown channel {token!r} for joint {joint!r}")
    return kind, _AXES.index(axis)


def _parse_motion(path: Path, lines: list[tuple[str, int]], n_channels: int) -> _Motion:
    """Parse ``Frames:``, ``Frame Time:`` and one line of values per frame."""
    if len(lines) < 2:
        raise InputError(f"{path}: MOTION section lacks 'Frames:' and 'Frame Time:'")
    n_frames = _parse_header(path, lines[0], "Frames", int)
    frame_time = _parse_header(path, lines[1], "Frame Time", float)
    if n_frames < 0:
        raise InputError(f"{path}: line {lines[0][1]}: negative frame count {n_frames}")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise InputError(f"{path}: line {lines[1][1]}: Frame Time must be > 0, got {frame_time}")
    data = lines[2:]
    if len(data) < n_frames:
        raise InputError(f"{path}: truncated motion data: {len(data)} frame lines, header says {n_frames}")
    if len(data) > n_frames:
        raise InputError(f"{path}: {len(data)} frame lines but header says Frames: {n_frames}")
    return _Motion(values=_parse_values(path, data, n_channels), frame_time=frame_time)


def _parse_header(path: Path, line: tuple[str, int], label: str, kind: type[int | float]) -> float:
    """Read a ``Label: value`` MOTION header line (spacing and case vary)."""
    text, number = line
    name, colon, value = text.partition(":")
    if not colon or " ".join(name.split()).lower() != label.lower():
        raise InputError(f"{path}: line {number}: expected '{label}:', found {text[:40]!r}")
    try:
        return kind(value.strip())
    except ValueError:
        raise InputError(f"{path}: line {number}: bad value after '{label}:': {value.strip()[:40]!r}") from None


def _parse_values(path: Path, data: list[tuple[str, int]], n_channels: int) -> np.ndarray:
    """Convert the frame lines into a (T, C) array, checking every line's length.

    Lines are checked one by one (not just the total) so that a missing value in one
    frame cannot silently shift every later channel.
    """
    tokens: list[str] = []
    for text, number in data:
        words = text.split()
        if len(words) != n_channels:
            raise InputError(
                f"{path}: line {number}: {len(words)} values, expected {n_channels} "
                "(truncated or malformed motion data)"
            )
        tokens.extend(words)
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise InputError(f"{path}: non-numeric value {bad!r} in motion data") from None
    if not np.all(np.isfinite(values)):
        raise InputError(f"{path}: non-finite value in motion data")
    return values.reshape(len(data), n_channels)


def _is_number(token: str) -> bool:
    """Whether ``float`` accepts the token (only used to name the culprit)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _forward_kinematics(joints: list[_Joint], values: np.ndarray) -> np.ndarray:
    """Global positions (T, J, 3): a loop over joints, vectorised over frames.

    Joints come parents-first (file order), so each parent's global transform is ready
    when its children need it. A global rotation is dropped after its last child has
    used it, so a long clip holds only a few (T, 3, 3) arrays at a time.
    """
    last_child = {joint.parent: index for index, joint in enumerate(joints)}
    rotations: dict[int, np.ndarray] = {}
    positions = np.empty((values.shape[0], len(joints), 3))
    column = 0
    for index, joint in enumerate(joints):
        local = values[:, column : column + len(joint.channels)]
        column += len(joint.channels)
        rotation = _local_rotation(joint.channels, local)
        translation = _local_translation(joint, local)
        if joint.parent < 0:
            positions[:, index] = translation
        else:
            parent_rotation = rotations[joint.parent]
            rotation = parent_rotation @ rotation
            moved = np.einsum("tij,tj->ti", parent_rotation, translation)
            positions[:, index] = positions[:, joint.parent] + moved
            if last_child[joint.parent] == index:
                del rotations[joint.parent]
        if index in last_child:
            rotations[index] = rotation
    return positions


def _local_translation(joint: _Joint, local: np.ndarray) -> np.ndarray:
    """The joint's (T, 3) translation: OFFSET, overridden by its position channels."""
    translation = np.broadcast_to(joint.offset, (local.shape[0], 3)).copy()
    for column, (kind, axis) in enumerate(joint.channels):
        if kind == _POSITION:
            translation[:, axis] = local[:, column]
    return translation


def _local_rotation(channels: tuple[tuple[str, int], ...], local: np.ndarray) -> np.ndarray:
    """The joint's (T, 3, 3) rotation: intrinsic Euler product in channel order."""
    rotation = np.broadcast_to(np.eye(3), (local.shape[0], 3, 3)).copy()
    for column, (kind, axis) in enumerate(channels):
        if kind == _ROTATION:
            rotation = rotation @ _axis_rotation(axis, np.radians(local[:, column]))
    return rotation


def _axis_rotation(axis: int, angles: np.ndarray) -> np.ndarray:
    """Right-handed rotation matrices (T, 3, 3) about one coordinate axis."""
    # The plane each rotation turns, in cyclic order (x->y for Z, y->z for X, z->x for
    # Y), so that positive angles are counter-clockwise looking down the axis.
    first, second = {0: (1, 2), 1: (2, 0), 2: (0, 1)}[axis]
    cos, sin = np.cos(angles), np.sin(angles)
    matrices = np.zeros((angles.shape[0], 3, 3))
    matrices[:, axis, axis] = 1.0
    matrices[:, first, first] = cos
    matrices[:, second, second] = cos
    matrices[:, first, second] = -sin
    matrices[:, second, first] = sin
    return matrices
