"""The model registry: self-describing ONNX classifiers, loaded, checked and warmed up.

A model is found by name in the models folder (``models/NAME.onnx``) or by path, so shipping a
new model is dropping its file there. Everything the service needs to feed it (labels, layout,
window length and frame rate, normalisation, embedding size) comes from the ``ModelCard`` in
its metadata; a model whose card or graph does not match that contract is refused at start-up
rather than fed wrong data later. onnxruntime is asked for CUDA first and falls back to CPU.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.errors import NotFound
from skeleton.artifact import (
    EMBEDDING_NAME,
    INPUT_NAME,
    SCORES_NAME,
    ModelCard,
    open_model,
    resolve_model_path,
    variant_problem,
)
from skeleton.errors import InputError
from skeleton.provenance import file_digest

log = logging.getLogger(__name__)

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True)
class Classified:
    """One window's answer: class probabilities and its embedding."""

    probabilities: np.ndarray  # (classes,)
    embedding: np.ndarray  # (E,)
    batch_ms: float  # the model call of the batch it was in


@dataclass(frozen=True)
class LoadedModel:
    name: str  # what streams call it: the file's stem
    path: Path
    card: ModelCard
    version: str  # the first 12 hex digits of the file's sha256: two files, two versions
    providers: tuple[str, ...]  # the execution providers it was loaded with
    session: object  # onnxruntime.InferenceSession
    _fell_back: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)

    @property
    def running_on(self) -> tuple[str, ...]:
        """The execution providers it runs on now: onnxruntime moves a session whose CUDA provider
        fails mid-run to the CPU (retrying the batch there) and says so only on stdout."""
        return tuple(self.session.get_providers())

    @property
    def input_shape(self) -> tuple[int, int, int]:
        spec = self.card.window
        return spec.length, spec.num_joints, spec.dims

    def run(self, batch: np.ndarray) -> list[Classified]:
        """Classify a batch (N, length, joints, dims) of prepared windows."""
        started = time.perf_counter()
        scores, embeddings = self.session.run([SCORES_NAME, EMBEDDING_NAME], {INPUT_NAME: batch})
        batch_ms = (time.perf_counter() - started) * 1000.0
        if not self._fell_back.is_set() and self.running_on != self.providers:
            self._fell_back.set()  # once: the model info and this line say it from now on
            fields = {"model": self.name, "loaded_with": list(self.providers), "now": list(self.running_on)}
            log.warning("model fell back to other execution providers", extra={"fields": fields})
        scores = np.asarray(scores, dtype=np.float64)
        exp = np.exp(scores - scores.max(axis=1, keepdims=True))  # the card's scores are logits
        probabilities = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        return [Classified(p, e, batch_ms) for p, e in zip(probabilities, embeddings)]


_cpu_arena_lock = threading.Lock()
_cpu_arena_registered = False


def _share_one_cpu_arena() -> None:
    """Register, once a process, one CPU memory arena that the service's sessions allocate from.

    An arena keeps the most a session ever needed, and each session has its own by default: warmed
    up at a batch of 16, the shipped models hold 50-190 MiB each, and a server of the nine files in
    ``models/`` sat at 884 MiB idle. Shared, an idle server holds about what its largest model
    needs (the nine models' sessions: 635 MiB apart, 227 MiB shared; batch times alike). Under load
    on several models at once (each has its own batcher thread) the arena grows toward what they
    need together, never beyond their own arenas' sum; its lock is taken per allocation, not per
    batch. GPU memory is not affected: each CUDA session keeps its own pool.

    onnxruntime accepts a second registration and quietly replaces the first arena (sessions made
    after it would not share), hence the flag; only sessions that ask for it (``load_model``'s)
    use the arena, so training, export and evaluation sessions in the same process are unaffected."""
    global _cpu_arena_registered
    import onnxruntime as ort

    with _cpu_arena_lock:
        if not _cpu_arena_registered:
            cpu = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))  # onnxruntime's defaults
            _cpu_arena_registered = True


def load_model(
    path: Path, name: str | None = None, threads: int = 1, warmup_batches: Sequence[int] = (1,)
) -> LoadedModel:
    """Load, check and warm up one model (InputError, naming the file, when it is unusable)."""
    import onnxruntime as ort

    path = Path(path)
    origin = str(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads would steal the cores that pose needs between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    _share_one_cpu_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    available = set(ort.get_available_providers())
    providers = [p for p in PREFERRED_PROVIDERS if p in available]
    card, session = open_model(path, options, providers)
    model = LoadedModel(
        name=name or path.stem,
        path=path,
        card=card,
        version=file_digest(path)[:12],
        providers=tuple(session.get_providers()),
        session=session,
    )
    for size in warmup_batches:
        try:
            results = model.run(np.zeros((size, *model.input_shape), dtype=np.float32))
        except Exception as e:  # a graph the checks could not see through fails here, not in a stream
            first_line = (str(e).strip().splitlines() or [""])[0]
            raise InputError(f"{origin}: a batch of {size} windows fails ({type(e).__name__}: {first_line})") from None
        got = (len(results), results[0].probabilities.shape, results[0].embedding.shape)
        if got != (size, (len(card.labels),), (card.embedding_size,)):
            raise InputError(f"{origin}: a batch of {size} gave outputs {got}, unlike its card")
    # What the session runs on, not what was asked for: a GPU build of onnxruntime lists CUDA as
    # available on a host without a usable GPU and then quietly runs on the CPU.
    fields = {"model": model.name, "path": origin, "version": model.version, "providers": list(model.providers)}
    log.info("model loaded", extra={"fields": fields})
    if missing := [p for p in providers if p not in model.providers]:
        log.warning(
            "model runs without execution providers it asked for", extra={"fields": {**fields, "missing": missing}}
        )
    return model


class ModelRegistry:
    """The loaded models by name, and which one a stream gets when it names none."""

    def __init__(self, models: Sequence[LoadedModel], default: str) -> None:
        if not models:
            raise InputError("no model to serve")
        self._models = {m.name: m for m in models}
        if len(self._models) != len(models):
            raise InputError(f"two models share a name: {', '.join(m.name for m in models)}")
        cards = {m.path.resolve(): m.card for m in models}
        for model in models:  # a variant served beside its model must be a copy of it
            if problem := variant_problem(model.path.resolve(), model.card, cards):
                raise InputError(problem)
        # The configured default when it is loaded, else the only model, else refuse to guess.
        if default in self._models:
            self.default = default
        elif len(self._models) == 1:
            self.default = next(iter(self._models))
        else:
            raise InputError(f"default model {default!r} is not among the loaded {', '.join(sorted(self._models))}")

    @classmethod
    def load(
        cls, specs: Sequence[str], models_dir: Path, default: str, threads: int = 1, max_batch: int = 1
    ) -> ModelRegistry:
        """Load ``specs`` (names or paths), or every ``models_dir/*.onnx`` when there are none."""
        paths = [resolve_model_path(s, models_dir) for s in specs] or sorted(Path(models_dir).glob("*.onnx"))
        if not paths:
            raise InputError(f"no models to serve: {models_dir} has no .onnx file and none was named")
        warmup = sorted({1, max_batch})
        return cls([load_model(p, threads=threads, warmup_batches=warmup) for p in paths], default)

    def get(self, name: str = "") -> LoadedModel:
        model = self._models.get(name or self.default)
        if model is None:
            raise NotFound(f"no model named {name!r}; loaded: {', '.join(sorted(self._models))}")
        return model

    def __iter__(self):
        return iter(self._models.values())

    @property
    def names(self) -> list[str]:
        return sorted(self._models)
