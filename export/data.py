"""Training data: dataset files -> clips in the model's space -> windows for torch.

A clip is one person's motion in the model's layout, resampled to the model's frame rate,
not yet normalised (missing joints NaN). Windows are cut from clips and prepared by
``skeleton.windows`` exactly as the service prepares live windows; the only training-only
steps are the augmentations (temporal crop-resize here, spatial ones in ``augment``). 3-D
motion for a 2-D model is seen through virtual cameras (``model_view``), which lets 3-D mocap
teach a 2-D model and score it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from skeleton.mapping import layout_mapping
from skeleton.resample import MAX_INTERPOLATED_GAP_MS, resample, resample_to_fps
from skeleton.windows import (
    WindowSpec,
    fit_length,
    prepare_window,
    presence,
    present_enough,
    seen_frames,
    window_starts,
)


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, J, C) in the model's layout, at the model's frame rate, NaN missing
    coordinate_space: str
    label: int
    name: str
    subject: int = -1


def _main_person(coords: np.ndarray) -> int:
    """The person slot seen in the most frames (the actor of a labelled clip)."""
    seen = np.isfinite(coords).all(axis=-1).any(axis=-1).sum(axis=0)
    return int(np.argmax(seen))


def clips_from_dataset(
    dataset: SkeletonDataset,
    spec: WindowSpec,
    indices: np.ndarray | list[int] | None = None,
    all_persons: bool = False,
    min_frames: int = 1,
) -> list[Clip]:
    """The sequences ``indices`` of ``dataset`` as clips for a model taking ``spec`` windows.

    Labelled data gives its main actor (every sequence a clip, however short: a test set is
    scored whole); with ``all_persons`` (unlabelled corpora) every person seen for at least
    ``min_frames`` model frames gives a clip. A frame counts as seen when any joint of the person
    is: a joint the data never has is still missing in every frame of a complete sequence. A
    sequence whose main actor is seen in no frame at all is refused (it can neither train nor
    score a model). 3-D data for a 2-D model stays 3-D here and is projected when windows are
    cut from it (``model_view``).
    """
    if dataset.dims < spec.dims:
        raise InputError(f"a {spec.dims}-D model cannot be trained on {dataset.dims}-D data ({dataset.source})")
    mapping = layout_mapping(dataset.layout, spec.layout)
    clips, unseen = [], []
    chosen = range(len(dataset)) if indices is None else indices
    for i in chosen:
        sequence = dataset[int(i)]
        persons = range(sequence.num_persons) if all_persons else [_main_person(sequence.coords)]
        for person in persons:
            mapped, _ = mapping.apply(sequence.coords[:, person])
            frames, _ = resample_to_fps(mapped, sequence.timestamps_ms, spec.fps, MAX_INTERPOLATED_GAP_MS)
            seen = int(seen_frames(frames).sum())
            if not seen and not all_persons:
                unseen.append(sequence.name)
            if seen < max(min_frames, 1):
                continue
            clips.append(
                Clip(frames, dataset.coordinate_space, int(sequence.label), sequence.name, int(sequence.subject))
            )
    if unseen:
        # Left out, they would vanish from a test set that is meant to be scored whole.
        raise InputError(
            f"{dataset.source}: {len(unseen)} of the {len(chosen)} sequences have no frame in which their actor"
            f" is seen as {spec.layout} joints at {spec.fps:g} fps (first: {unseen[0]!r})"
        )
    return clips


def project_to_image(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 3-D clip (y up, metres) as seen by a random virtual camera: image pixels, y down.

    The camera circles the person (any yaw), looks slightly down or up, from 2.5 to 6 m; the
    image is unmirrored (x to the camera's right), like MediaPipe's input.
    """
    yaw, pitch = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(-10, 30))
    distance, focal = rng.uniform(2.5, 6.0), 1000.0
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    turn = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    tilt = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    centre = np.nanmean(frames.reshape(-1, 3), axis=0)
    camera = (frames - centre) @ (tilt @ turn).T + np.array([0.0, 0.0, distance])
    depth = np.maximum(camera[..., 2:3], 0.5)
    # Camera frame as the Kinect's: x to the camera's left, so image x is -x.
    return (focal * np.concatenate([-camera[..., 0:1], -camera[..., 1:2]], axis=-1) / depth).astype(np.float32)


def model_view(clip: Clip, spec: WindowSpec, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A clip's frames and their coordinate space as a model taking ``spec`` windows sees them:
    3-D motion for a 2-D model through a random virtual camera (``project_to_image``), any other
    as it is. Training and scoring both cut their windows from this."""
    if clip.frames.shape[-1] == 3 and spec.dims == 2:
        return project_to_image(clip.frames, rng), "image"
    return clip.frames, clip.coordinate_space


def _present_starts(frames: np.ndarray, span: int) -> np.ndarray:
    """The starts of the ``span``-frame pieces of ``frames`` whose person is present in at least
    ``MIN_WINDOW_PRESENCE`` of them (``present_enough``)."""
    if frames.shape[0] <= span:
        return np.zeros(1, dtype=np.int64)
    seen = np.concatenate([[0], np.cumsum(seen_frames(frames))])
    return present_enough((seen[span:] - seen[:-span]) / span)  # piece i starts at frame i


def crop_resize(frames: np.ndarray, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A random span of ``scale * length`` frames stretched or squeezed to ``length`` frames:
    a different speed and a different moment of the clip (one its person is seen in enough of)."""
    span = max(2, int(round(length * scale)))
    starts = _present_starts(frames, span)
    start = int(starts[rng.integers(0, len(starts))])
    piece = fit_length(frames, span, start)
    targets = np.linspace(0, span - 1, length)
    return resample(piece, np.arange(span, dtype=np.float64), targets)


class WindowDataset(torch.utils.data.Dataset):
    """Training windows: one random window per clip per epoch (``views`` of them for SSL)."""

    def __init__(
        self,
        clips: list[Clip],
        spec: WindowSpec,
        views: int = 1,
        scale_range: tuple[float, float] = (0.8, 1.2),
        seed: int = 0,
        min_length: int = 0,
    ) -> None:
        if not clips:
            raise InputError("no clips to train on")
        self.clips, self.spec, self.views, self.scale_range = clips, spec, views, scale_range
        self.seed = seed
        self.epoch = 0
        self.length = max(len(clips), min_length)  # a few clips are repeated to fill an epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def _view(self, clip: Clip, rng: np.random.Generator) -> np.ndarray:
        frames, space = model_view(clip, self.spec, rng)
        window = crop_resize(frames, self.spec.length, rng.uniform(*self.scale_range), rng)
        return prepare_window(window, self.spec, space)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        clip = self.clips[i % len(self.clips)]
        views = [torch.from_numpy(self._view(clip, rng)) for _ in range(self.views)]
        return (views[0] if self.views == 1 else torch.stack(views)), clip.label


def evaluation_windows(clips: list[Clip], spec: WindowSpec, stride: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every window of every clip, (W, T, J, C), and the clip each belongs to, (W,).

    A clip's prediction is the mean over its windows: the same windows the service would
    classify if the clip streamed past it, so none whose person is seen in under
    ``MIN_WINDOW_PRESENCE`` of it, unless the clip has no other (then its best one). They are
    cut from the clip as the model sees it (``model_view``), as training windows are.
    """
    stride = stride or max(1, spec.length // 2)
    # One camera per clip (3-D motion for a 2-D model), the same ones at every call: validation
    # epochs and the final score are measured on the same views.
    rng = np.random.default_rng(0)
    windows, owners = [], []
    for c, clip in enumerate(clips):
        frames, space = model_view(clip, spec, rng)
        pieces = [
            fit_length(frames, spec.length, start) for start in window_starts(frames.shape[0], spec.length, stride)
        ]
        for i in present_enough([presence(piece) for piece in pieces]):
            windows.append(prepare_window(pieces[i], spec, space))
            owners.append(c)
    return np.stack(windows), np.asarray(owners)


def label_budget(
    labels: np.ndarray, seed: int, fraction: float | None = None, per_class: int | None = None
) -> np.ndarray:
    """Positions of a class-stratified labelled subset: ``fraction`` of each class (at least
    one) or ``per_class`` examples of each class."""
    if (fraction is None) == (per_class is None):
        raise InputError("give exactly one of a label fraction or a number per class")
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        count = per_class if per_class is not None else max(1, int(round(fraction * len(members))))
        chosen += rng.choice(members, size=min(count, len(members)), replace=False).tolist()
    return np.sort(np.asarray(chosen, dtype=np.int64))


CALIBRATION_CLIPS_PER_CLASS = 4  # training clips of each class an export checks parity and calibrates INT8 on
CALIBRATION_WINDOWS = 128  # at most: onnxruntime's calibration holds every window's activations


def calibration_windows(dataset: SkeletonDataset, fit: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """The real windows an export checks parity on and calibrates INT8 with: a few training clips
    of every class, not the first clips of the file, which hold one class or a few."""
    sample = fit[label_budget(dataset.labels[fit], seed=0, per_class=CALIBRATION_CLIPS_PER_CLASS)]
    windows, _ = evaluation_windows(clips_from_dataset(dataset, spec, sample), spec)
    return windows[:CALIBRATION_WINDOWS]


# What a validation part can hold out of a train part, and how reports say it.
VALIDATION_HOLDOUTS = {
    "subjects": "whole subjects held out where known",
    "views": "a camera view held out",
}


def validation_parts(
    dataset: SkeletonDataset, train: np.ndarray, fraction: float = 0.2, seed: int = 0, by: str = "subjects"
) -> list[np.ndarray]:
    """The disjoint validation parts a train part can give, one per cross-validation fold; the
    first is the part every single validation run holds out.

    ``by="subjects"``: with known subjects, whole subjects are held out (a validation set of new
    people, like a cross-subject test set), ``fraction`` of them a part, so the subjects shuffled
    by ``seed`` give ``1 / fraction`` parts (subjects left over are never held out); otherwise a
    class-stratified random ``fraction``, one part only.
    ``by="views"``: one camera view a part (a validation set seen from a new angle, like a
    cross-view test set), the train part's last view first.
    """
    if by == "views":
        views = np.unique(dataset.views[train])
        views = views[views >= 0]
        if len(views) < 2:
            raise InputError("holding out a view for validation needs a train part of two views or more")
        return [np.sort(train[dataset.views[train] == view]) for view in views[::-1]]
    if by not in VALIDATION_HOLDOUTS:
        raise InputError(f"validation holds out {' or '.join(VALIDATION_HOLDOUTS)}, not {by!r}")
    subjects = np.unique(dataset.subjects[train])
    subjects = subjects[subjects >= 0]
    if len(subjects) >= 3:
        shuffled = np.random.default_rng(seed).permutation(subjects)
        size = max(1, int(round(fraction * len(subjects))))
        groups = [shuffled[start : start + size] for start in range(0, len(subjects) - size + 1, size)]
        return [np.sort(train[np.isin(dataset.subjects[train], held)]) for held in groups]
    return [np.sort(train[label_budget(dataset.labels[train], seed, fraction=fraction)])]


def carve_validation(
    dataset: SkeletonDataset,
    train: np.ndarray,
    fraction: float = 0.2,
    seed: int = 0,
    by: str = "subjects",
    fold: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a train part into (fit, validation), never touching the test part: the validation
    part is ``validation_parts(...)[fold]``."""
    parts = validation_parts(dataset, train, fraction, seed, by)
    if not 0 <= fold < len(parts):
        raise InputError(
            f"validation fold {fold} does not exist: this train part gives {len(parts)} validation "
            f"part{'s' if len(parts) > 1 else ''} ({VALIDATION_HOLDOUTS[by]}; folds 0 to {len(parts) - 1})"
        )
    validation = parts[fold]
    return np.setdiff1d(train, validation), validation
