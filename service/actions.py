"""Few-shot custom actions: enrolled examples' embeddings, matched by cosine similarity.

An action is enrolled for one model (embeddings of different models, or of two versions of
one model, live in different spaces): its examples' embeddings are kept, and its prototype is
their normalised mean. Actions are grouped in named action sets; a stream names the set it
wants matched. Everything is kept in one JSON file, rewritten atomically (temporary file,
fsync, rename) on every change, so enrolled actions survive a restart or a crash mid-write.
A starting server opens the file with ``open_store``: a damaged file is set aside, not fatal.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from service.errors import NotFound, ServiceError
from skeleton.errors import InputError

log = logging.getLogger(__name__)

FILE_FORMAT = "actionrec-actions"
FILE_VERSION = 1
DEFAULT_SET = "default"
MAX_NAME = 64
MAX_EXAMPLES = 32  # example clips an EnrollAction call may carry
# A store's bounds: each example is kept (the prototype is their mean) and every change rewrites
# the whole file, so neither may grow without end across calls.
MAX_EXAMPLES_PER_ACTION = 256
MAX_ACTIONS = 1024


def check_name(kind: str, name: str) -> str:
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        shown = repr(name) if len(name) <= 2 * MAX_NAME else f"{name[:MAX_NAME]!r}... ({len(name)} characters)"
        raise InputError(f"{kind} name {shown} must be 1 to {MAX_NAME} printable characters, no outer spaces")
    return name


def unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


@dataclass(frozen=True)
class EnrolledAction:
    model: str
    model_version: str
    action_set: str
    action: str
    embeddings: np.ndarray  # (examples, E), unit rows
    updated: str

    @property
    def prototype(self) -> np.ndarray:
        return unit(self.embeddings.mean(axis=0))

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "model_version": self.model_version,
            "action_set": self.action_set,
            "action": self.action,
            "updated": self.updated,
            "embeddings": self.embeddings.tolist(),
        }

    @classmethod
    def from_json(cls, item: dict) -> EnrolledAction:
        return cls(
            model=str(item["model"]),
            model_version=str(item["model_version"]),
            action_set=str(item["action_set"]),
            action=str(item["action"]),
            embeddings=np.asarray(item["embeddings"], dtype=np.float32).reshape(len(item["embeddings"]), -1),
            updated=str(item["updated"]),
        )


@dataclass(frozen=True)
class Prototypes:
    """One action set of one model version, ready to match."""

    names: tuple[str, ...]
    matrix: np.ndarray  # (actions, E), unit rows

    def match(self, embedding: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        similarity = self.matrix @ unit(np.asarray(embedding, dtype=np.float32))
        best = np.argsort(-similarity)[:top_k]
        return [(self.names[i], float(similarity[i])) for i in best]


class DamagedStore(InputError):
    """The actions file was read, but it is not a store of this version (cut short, edited by
    hand, another program's file)."""


def _fsync_directory(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)  # a rename or unlink in it survives a crash
    finally:
        os.close(directory)


class StoreUnwritable(ServiceError):
    """The store file could not be written (disk full, read-only, permissions): the server's
    problem, not the caller's; the change was not made."""

    code = "UNAVAILABLE"


class ActionStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # Changes take _write_lock for their whole length, disk writes included, one at a time;
        # _lock guards the state in memory and is never held across disk I/O. Streams match
        # their events' embeddings against the prototypes from the batcher's result path, which
        # must not wait for an enrolment's fsync (tens of milliseconds, seconds on a busy disk).
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()
        self._actions: dict[tuple[str, str, str], EnrolledAction] = {}  # (model, set, action)
        self._prototypes: dict[tuple[str, str, str], Prototypes | None] = {}  # cache by (model, version, set)
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            content = self.path.read_bytes()
        except OSError as e:
            raise InputError(f"{self.path}: cannot read the enrolled actions ({e.strerror or e})") from None
        try:
            data = json.loads(content)
            if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or data.get("version") != FILE_VERSION:
                raise ValueError(f"not a {FILE_FORMAT} file of version {FILE_VERSION}")
            actions = [EnrolledAction.from_json(item) for item in data["actions"]]
        except (ValueError, KeyError, TypeError) as e:
            raise DamagedStore(f"{self.path}: unreadable enrolled actions ({type(e).__name__}: {e})") from None
        self._actions = {(a.model, a.action_set, a.action): a for a in actions}

    def _commit(self, actions: dict[tuple[str, str, str], EnrolledAction]) -> None:
        """Make ``actions`` the store: written to a temporary file beside it, renamed into place,
        and only then taken in memory. A failed write changes nothing, on disk or in memory.
        The caller holds ``_write_lock``."""
        data = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "actions": [a.to_json() for _, a in sorted(actions.items())],
        }
        temporary = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
            with os.fdopen(handle, "w") as f:
                json.dump(data, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)  # the change is made here, on disk and then in memory
            temporary = None
        except OSError as e:
            raise StoreUnwritable(
                f"{self.path}: the enrolled actions could not be stored ({e.strerror or e}); nothing was changed"
            ) from None
        finally:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
        with self._lock:
            self._actions = actions
            self._prototypes.clear()
        try:
            _fsync_directory(self.path.parent)  # so that the rename itself survives a power cut
        except OSError as e:
            log.warning(
                "enrolled actions stored, but their folder could not be synced",
                extra={"fields": {"path": str(self.path), "error": e.strerror or str(e)}},
            )

    def check_room(self, model: str, model_version: str, action_set: str, action: str, examples: int) -> None:
        """InputError unless ``examples`` more examples of the action fit the store's bounds."""
        with self._lock:
            old = self._actions.get((model, action_set, action))
            kept = len(old.embeddings) if old is not None and old.model_version == model_version else 0
            if old is None and len(self._actions) >= MAX_ACTIONS:
                raise InputError(
                    f"the store holds {len(self._actions)} actions, its limit: delete some before enrolling {action!r}"
                )
        if kept + examples > MAX_EXAMPLES_PER_ACTION:
            raise InputError(
                f"action {action!r} has {kept} examples; {examples} more would pass the limit of"
                f" {MAX_EXAMPLES_PER_ACTION} an action (delete it and enrol it again from fewer)"
            )

    def enroll(
        self, model: str, model_version: str, action_set: str, action: str, embeddings: np.ndarray
    ) -> tuple[EnrolledAction, float]:
        """Add examples (embeddings (n, E)) to an action, created if new; a new model version
        starts the action afresh. Returns it and its examples' mean similarity to the prototype."""
        check_name("action set", action_set)
        check_name("action", action)
        embeddings = unit(np.asarray(embeddings, dtype=np.float32))
        with self._write_lock:  # only changes replace _actions, so it holds still under this lock
            self.check_room(model, model_version, action_set, action, len(embeddings))
            key = (model, action_set, action)
            old = self._actions.get(key)
            same_space = old is not None and old.model_version == model_version
            if same_space and old.embeddings.shape[1] == embeddings.shape[1]:
                embeddings = np.concatenate([old.embeddings, embeddings])
            enrolled = EnrolledAction(
                model, model_version, action_set, action, embeddings, datetime.now(UTC).isoformat(timespec="seconds")
            )
            self._commit({**self._actions, key: enrolled})
        return enrolled, float(np.mean(embeddings @ enrolled.prototype))

    def delete(self, model: str, action_set: str, action: str) -> EnrolledAction:
        key = (model, action_set, action)
        with self._write_lock:
            enrolled = self._actions.get(key)
            if enrolled is None:
                # Actions are named by model and set too: say where one of that name is, if anywhere.
                elsewhere = sorted(
                    f"set {a.action_set!r} for model {a.model!r}" for a in self._actions.values() if a.action == action
                )
                hint = f" (there is one in {'; '.join(elsewhere[:3])})" if elsewhere else ""
                raise NotFound(f"no action {action!r} in set {action_set!r} for model {model!r}{hint}")
            self._commit({k: a for k, a in self._actions.items() if k != key})
        return enrolled

    def list(self, model: str = "", action_set: str = "") -> list[EnrolledAction]:
        with self._lock:
            return sorted(
                (
                    a
                    for a in self._actions.values()
                    if (not model or a.model == model) and (not action_set or a.action_set == action_set)
                ),
                key=lambda a: (a.model, a.action_set, a.action),
            )

    def prototypes(self, model: str, model_version: str, action_set: str) -> Prototypes | None:
        """The set's actions enrolled with this model version, or None when it has none. Only sets
        that exist are cached: callers may name any set, and a cache of every name asked for
        would grow with each one."""
        key = (model, model_version, action_set)
        with self._lock:
            if key not in self._prototypes:
                actions = [
                    a
                    for a in self._actions.values()
                    if a.model == model and a.model_version == model_version and a.action_set == action_set
                ]
                if not actions:
                    return None
                actions.sort(key=lambda a: a.action)
                self._prototypes[key] = Prototypes(
                    tuple(a.action for a in actions), np.stack([a.prototype for a in actions])
                )
            return self._prototypes[key]

    def require(self, model: str, model_version: str, action_set: str) -> None:
        """NotFound, saying why, unless the set has actions for this model version (InputError for
        a name no set can have)."""
        check_name("action set", action_set)
        if self.prototypes(model, model_version, action_set) is not None:
            return
        stale = [a for a in self.list(model, action_set)]
        hint = f" ({len(stale)} enrolled with another version of the model: enrol them again)" if stale else ""
        raise NotFound(f"action set {action_set!r} has no actions for model {model!r}{hint}")


def open_store(path: Path) -> ActionStore:
    """The enrolled actions for a starting server. A damaged file must not keep the server and
    its models down, nor be lost: it is moved aside (``set_aside``) with a warning, and the
    server starts with no enrolled actions; the next enrolment writes a fresh file. A file that
    cannot be read at all (permissions, a folder) still stops the start: writing would fail too."""
    try:
        return ActionStore(path)
    except DamagedStore as e:
        backup = set_aside(Path(path))
        log.warning(
            "enrolled actions file damaged: set aside, starting with no enrolled actions",
            extra={"fields": {"path": str(path), "backup": str(backup), "error": str(e)}},
        )
        return ActionStore(path)


def set_aside(path: Path) -> Path:
    """Move ``path`` to ``NAME.corrupt-<UTC time>`` beside it (``.1``, ``.2``, ... after the time
    when that is taken): the copy is created exclusively, so no earlier backup is ever replaced,
    and flushed to disk before the original goes."""
    content = path.read_bytes()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    names = (f"{path.name}.corrupt-{stamp}" + (f".{n}" if n else "") for n in itertools.count())
    for backup in map(path.with_name, names):
        try:
            with open(backup, "xb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            break
        except FileExistsError:
            continue  # an earlier backup's name: the next one
    path.unlink()
    _fsync_directory(path.parent)
    return backup
