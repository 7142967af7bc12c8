"""``actionrec train``: the supervised protocols on a benchmark's train split.

* ``finetune``: a pretrained encoder plus a new head, trained end to end;
* ``scratch``: the same network from random weights (the baseline pretraining must beat);
* ``linear``: the pretrained encoder frozen, a linear classifier on its clip embeddings;
* ``knn``: the pretrained encoder frozen, 1-nearest-neighbour (cosine) on its clip embeddings.

Each may use only part of the labels (a class-stratified fraction, or N per class); with
``pseudo_label_share`` fine-tuning and training from scratch then also learn from the rest of the
train part, unlabelled, by self-training (``export.self_training``). With
``validation = true`` part of the train split is held out (whole subjects where known) and
the result is the validation accuracy, for choosing settings; otherwise the model trains on
the whole train split and is scored once, at the end, on the test split.

Only labelled sequences train or score a model: a split's sequences without a label (-1) are left
out of both parts (their number is said on stderr), not refused, since a split of a partly
labelled file is still a valid benchmark for its labelled sequences. They do not join
self-training's unlabelled pool either, whose clips' true labels measure the pseudo-labels.

Writes ``config.toml``, ``model.pt`` (fine-tune / scratch), ``results.json``, ``curves.png`` and
``confusion.png`` into the experiment's output folder, all of them once the run has finished: a
refused or failed run leaves an earlier run's folder as it was (``_write_run``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from export.augment import random_linear_views, random_mirror, random_mixup
from export.config import TrainConfig, dump_config
from export.data import Clip, WindowDataset, carve_validation, clips_from_dataset, label_budget
from export.encoder import Classifier, SkeletonEncoder
from export.masking import CoarseToFineMasker, MaskingConfig
from export.plots import confusion_matrix, plot_confusion, plot_curves
from export.pretrain import split_indices, warmup_cosine
from export.probe import clip_embeddings, knn_predict, linear_probe, model_clip_probabilities
from export.runtime import (
    Runtime,
    check_loss,
    classifier_checkpoint,
    distribute,
    from_main,
    load_encoder,
    loader_workers,
    prepare_output_folder,
    save_atomic,
    source_commit,
    start,
    stop,
)
from export.self_training import pseudo_label
from export.weight_average import WeightAverage
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from skeleton.layouts import get_layout
from skeleton.provenance import file_digest


@dataclasses.dataclass(frozen=True)
class Parts:
    """Which sequences train the model and which score it."""

    fit: np.ndarray
    scored: np.ndarray
    scored_name: str  # "validation" or "test"
    unlabelled: np.ndarray  # the fit part's sequences whose labels the budget leaves out
    # Per split, how many of its sequences have no label (-1): they are in neither part.
    left_out: dict[str, int] = dataclasses.field(default_factory=dict)

    def variants_part(self) -> tuple[np.ndarray, str]:
        """The clips an export compares a model's variants on, and how its card names them: the
        scored part, or the train part where the scored one is held back."""
        if len(self.scored):
            return self.scored, f"{self.scored_name} part"
        return self.fit, "train part (seen in training, so this compares the variants only)"


def labelled_train(dataset: SkeletonDataset, config: TrainConfig) -> tuple[np.ndarray, int]:
    """The labelled sequences of the config's train split, and how many of its sequences are left
    out unlabelled; a file without labels, an empty split name or a split with no labelled sequence
    is refused."""
    origin = config.benchmark.path
    for key in ("train_split", "test_split"):
        # An empty split name means the whole file elsewhere (pretraining's [[data]]); here it would
        # train on the test part and score the model on what it was trained on.
        if not getattr(config.benchmark, key):
            splits = ", ".join(sorted(dataset.splits)) or "none"
            raise InputError(f"{origin}: [benchmark] {key} is empty: name one of the file's splits ({splits})")
    if not dataset.is_labelled:
        raise InputError(f"{origin}: has no labels; {config.mode} needs labelled sequences")
    every_train = split_indices(dataset, config.benchmark.train_split, origin)
    train = dataset.labelled_in(every_train)
    if not len(train):
        raise InputError(
            f"{origin}: split {config.benchmark.train_split!r} has no labelled sequences to train on"
            f" ({len(every_train)} unlabelled)"
        )
    return train, len(every_train) - len(train)


def choose_parts(dataset: SkeletonDataset, config: TrainConfig) -> Parts:
    """The parts of the config's protocol, labelled sequences only: a split's unlabelled ones are
    left out (counted in ``left_out``); a train split with no labelled sequence is refused."""
    origin = config.benchmark.path
    train, unlabelled_train = labelled_train(dataset, config)
    left_out = {config.benchmark.train_split: unlabelled_train}
    if config.validation:
        # Seed 0 always: every seed and every setting is compared on the same held-out part (fold).
        fit, scored = carve_validation(
            dataset, train, seed=0, by=config.validation_holds_out, fold=config.validation_fold
        )
        name = "validation"
    else:
        every_test = split_indices(dataset, config.benchmark.test_split, origin)
        fit, scored, name = train, dataset.labelled_in(every_test), "test"
        left_out[config.benchmark.test_split] = len(every_test) - len(scored)
    budget = config.labels
    unlabelled = fit[:0]
    if budget.per_class > 0 or budget.fraction < 1.0:
        positions = label_budget(
            dataset.labels[fit],
            config.experiment.seed,
            fraction=None if budget.per_class > 0 else budget.fraction,
            per_class=budget.per_class if budget.per_class > 0 else None,
        )
        fit, unlabelled = fit[positions], np.delete(fit, positions)
    if config.pseudo_label_share and not len(unlabelled):
        raise InputError(f"{origin}: pseudo_label_share needs unlabelled clips, and the label budget keeps them all")
    left_out = {split: count for split, count in left_out.items() if count}
    return Parts(fit=fit, scored=scored, scored_name=name, unlabelled=unlabelled, left_out=left_out)


def run_train(config: TrainConfig) -> dict:
    runtime = start(config.experiment.seed)
    out = Path(config.experiment.output)
    try:
        dataset = SkeletonDataset.load(Path(config.benchmark.path))
        parts = choose_parts(dataset, config)
        encoder = _starting_encoder(config)
        fit_clips = clips_from_dataset(dataset, config.window, parts.fit)
        scored_clips = clips_from_dataset(dataset, config.window, parts.scored)
        classes = len(dataset.label_names)
        if not scored_clips and config.mode in ("linear", "knn"):
            raise InputError(f"{config.benchmark.test_split}: no sequences to score a {config.mode} probe on")
        if runtime.is_main:
            for split, count in parts.left_out.items():
                print(
                    f"{config.benchmark.path}: left out the {count} unlabelled sequences of split {split!r}",
                    file=sys.stderr,
                )
            # Made now, so that an output that cannot be made is refused before training; the
            # run's files are written only once it has finished (``_write_run``).
            prepare_output_folder(out)
        began = time.perf_counter()
        history: list[dict[str, float]] = []
        self_trained: dict[str, int] | None = None
        checkpoint: dict | None = None
        if config.mode in ("linear", "knn"):
            fit_x = clip_embeddings(encoder, fit_clips, config.window)
            fit_y = np.array([c.label for c in fit_clips])
            scored_x = clip_embeddings(encoder, scored_clips, config.window)
            if config.mode == "linear":
                predicted = linear_probe(fit_x, fit_y, scored_x, classes)
            else:
                predicted = knn_predict(fit_x, fit_y, scored_x, k=1)
        else:
            model = Classifier(encoder, classes, mirror_average=config.mirror_average)
            validation = scored_clips if config.validation else None
            history = _fit(config, runtime, model, fit_clips, validation)
            if config.pseudo_label_share:
                unlabelled = clips_from_dataset(dataset, config.window, parts.unlabelled)
                # Every process must train on the same clips, but under DDP on CPUs each one's
                # batch statistics differ a little, and so could its answers: the main one's go to all.
                pseudo = from_main(
                    pseudo_label(model, unlabelled, config.window, config.pseudo_label_share)
                    if runtime.is_main
                    else None,
                    runtime,
                )
                if runtime.is_main:
                    print(
                        f"pseudo-labelled {len(pseudo.clips)} of {len(unlabelled)} unlabelled clips "
                        f"({pseudo.correct / max(len(pseudo.clips), 1):.1%} correct); training a second model",
                        flush=True,
                    )
                self_trained = {"unlabelled": len(unlabelled), "kept": len(pseudo.clips), "correct": pseudo.correct}
                model = Classifier(_starting_encoder(config), classes, mirror_average=config.mirror_average)
                history += _fit(config, runtime, model, fit_clips + pseudo.clips, validation, config.optim.epochs)
            # A held-back test split (Penn Action's) is empty here: the model is trained, not scored.
            predicted = predict_clips(model, scored_clips, config.window) if scored_clips else np.zeros(0, dtype=int)
            checkpoint = classifier_checkpoint(model, config.window, dataset.label_names)
        truth = np.array([c.label for c in scored_clips])
        accuracy = float((predicted == truth).mean()) if len(truth) else None
        scored = parts.scored_name if len(truth) else f"nothing (the {parts.scored_name} part is held back)"
        results = {
            "experiment": config.experiment.name,
            "mode": config.mode,
            "seed": config.experiment.seed,
            "benchmark": config.benchmark.path,
            # The bytes read, whatever their paths: an export taking this run's accuracy checks them.
            "read_sha256": {
                "benchmark.path": file_digest(Path(config.benchmark.path)),
                **({"pretrained": file_digest(Path(config.pretrained))} if config.pretrained else {}),
            },
            "scored": scored,
            # What the validation part held out: a result scored on another part is not comparable.
            "validation_holds_out": config.validation_holds_out if config.validation else None,
            "validation_fold": config.validation_fold if config.validation else None,
            "accuracy": accuracy,
            "n_train": len(fit_clips),  # labelled; pseudo-labelled clips are counted under pseudo_labels
            "n_test": len(scored_clips),
            "seconds": time.perf_counter() - began,
            "labels": dataclasses.asdict(config.labels),
            "pseudo_labels": self_trained,
            "source_commit": source_commit(),
        }
        trained_on = f"{len(fit_clips)}" + (f" + {self_trained['kept']} pseudo-labelled" if self_trained else "")
        if runtime.is_main:
            _write_run(out, config, results, checkpoint)
            if history:
                plot_curves(history, out / "curves.png", f"{config.mode}: {config.experiment.name}")
            if accuracy is None:
                print(f"{config.experiment.name}: trained on {trained_on} clips; scored {scored}")
            else:
                plot_confusion(
                    confusion_matrix(truth, predicted, classes),
                    list(dataset.label_names),
                    out / "confusion.png",
                    f"{config.experiment.name}: {scored} accuracy {accuracy:.1%}",
                )
                print(
                    f"{config.experiment.name}: {scored} accuracy {accuracy:.2%} "
                    f"({len(scored_clips)} clips; trained on {trained_on})"
                )
        return results
    finally:
        stop(runtime)


# A training run's files in its folder; config.toml first: ``export`` reads a folder by it.
RUN_FILES = ("config.toml", "model.pt", "results.json", "curves.png", "confusion.png")


def _write_run(out: Path, config: TrainConfig, results: dict, checkpoint: dict | None) -> None:
    """Replace the run in ``out`` with this finished one (its plots are drawn next).

    Nothing is written before the run has finished, so a run that fails leaves the earlier run's
    folder whole. Its files are not replaced one by one: the earlier run's are removed first,
    config.toml first, and the new config.toml is written last, once the model and the results are
    there. A run stopped in between leaves a folder without config.toml, which ``export``
    refuses, never one that mixes this run's config with another run's model or results (or, for a
    probe, which writes no model, an earlier fine-tuning's model.pt under a probe's config)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    if checkpoint is not None:
        save_atomic(checkpoint, out / "model.pt")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "config.toml").write_text(dump_config(config))


def _starting_encoder(config: TrainConfig) -> SkeletonEncoder:
    """The encoder a model starts from: the pretrained one, or random weights from scratch."""
    if config.mode == "scratch":
        return SkeletonEncoder(config.encoder)
    return load_encoder(Path(config.pretrained), config.encoder, config.window)


def predict_clips(model: torch.nn.Module, clips: list[Clip], spec) -> np.ndarray:
    return model_clip_probabilities(model, clips, spec).argmax(1).numpy()


def _fit(
    config: TrainConfig,
    runtime: Runtime,
    model: Classifier,
    clips: list[Clip],
    validation: list[Clip] | None,
    first_epoch: int = 0,
) -> list[dict[str, float]]:
    """Train ``model`` on ``clips`` for the config's epochs; the history's and the progress
    lines' epochs count from ``first_epoch`` (a second round continues the first's count)."""
    optim = config.optim
    dataset = WindowDataset(
        clips,
        config.window,
        views=1,
        scale_range=(0.85, 1.15),
        seed=config.experiment.seed,
        min_length=optim.min_samples_per_epoch,
    )
    batch = max(2, min(optim.batch_size, len(dataset)) // runtime.world_size)
    sampler = (
        DistributedSampler(dataset, seed=config.experiment.seed)
        if runtime.distributed
        else RandomSampler(dataset, generator=torch.Generator().manual_seed(config.experiment.seed))
    )
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler, drop_last=len(dataset) > batch, num_workers=loader_workers()
    )
    network = distribute(model, runtime)
    groups = [
        {"params": model.encoder.parameters(), "lr": optim.lr * config.encoder_lr_scale},
        {"params": list(model.head.parameters()), "lr": optim.lr},
    ]
    optimizer = torch.optim.AdamW(groups, weight_decay=optim.weight_decay)
    schedule = warmup_cosine(optim, len(loader))
    frozen_steps = config.head_warmup_epochs * len(loader)

    def encoder_schedule(step: int) -> float:
        return 0.0 if step < frozen_steps else schedule(step)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [encoder_schedule, schedule])
    generator = torch.Generator().manual_seed(config.experiment.seed)
    occluder = (
        CoarseToFineMasker(
            MaskingConfig(max_probability=config.occlusion, warmup_fraction=0.0, ramp_fraction=0.0, shuffle=False),
            get_layout(config.window.layout),
        )
        if config.occlusion
        else None
    )
    occlusion_rng = np.random.default_rng(config.experiment.seed) if occluder else None
    mixing_rng = np.random.default_rng(config.experiment.seed) if config.mixup else None
    mirror_permutation = model.mirror_permutation.cpu()  # windows are augmented on the CPU
    average = WeightAverage(model, config.weight_average_decay) if config.weight_average_decay else None
    answering = copy.deepcopy(model) if average else model  # what validation scores: the average, if kept
    history = []
    for epoch in tqdm(
        range(optim.epochs), desc=config.experiment.name, disable=not runtime.is_main, dynamic_ncols=True, leave=False
    ):
        network.train()
        if epoch < config.head_warmup_epochs:
            # The head learns on the pretrained features as they are (batch statistics and dropout
            # included) before the encoder moves: with few labels, a random head's gradients would
            # otherwise pull the encoder away from what pretraining learned.
            model.encoder.eval()
        dataset.set_epoch(epoch)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        losses, correct, seen = [], 0, 0
        for step, (windows, labels) in enumerate(loader):
            windows = random_mirror(windows, mirror_permutation, config.mirror, generator)
            windows = random_linear_views(windows, generator)
            if occluder is not None:
                hidden = occluder.masks(len(windows), windows.shape[1], epoch / optim.epochs, occlusion_rng)
                windows = windows * hidden[..., None]
            partner, own_share = None, None
            if mixing_rng is not None:
                windows, partner, own_share = random_mixup(windows, config.mixup, mixing_rng)
            windows = windows.to(runtime.device)
            labels = labels.to(runtime.device)
            scores, _ = network(windows)
            loss = _classification_loss(scores, labels, partner, own_share)
            value = loss.item()
            where = f"{config.experiment.name}: epoch {first_epoch + epoch + 1}, step {step + 1} of {len(loader)}"
            check_loss(value, runtime, where, "no model was saved")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if average:
                average.update(model)
            losses.append(value)
            correct += int((scores.argmax(1) == labels).sum())
            seen += len(labels)
        record = {
            "epoch": first_epoch + epoch + 1,
            "loss": float(np.mean(losses)),
            "train_accuracy": correct / max(seen, 1),
        }
        if validation is not None and ((epoch + 1) % 5 == 0 or epoch + 1 == optim.epochs):
            truth = np.array([c.label for c in validation])
            if average:
                average.copy_to(answering)
            record["validation_accuracy"] = float((predict_clips(answering, validation, config.window) == truth).mean())
            if runtime.is_main:
                print(f"epoch {record['epoch']}: validation accuracy {record['validation_accuracy']:.2%}", flush=True)
        history.append(record)
    if average:
        average.copy_to(model)
    return history


def _classification_loss(
    scores: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor | None, own_share: torch.Tensor | None
) -> torch.Tensor:
    """Cross-entropy with label smoothing; for mixed windows, each label weighed by its window's share."""
    if partner is None:
        return torch.nn.functional.cross_entropy(scores, labels, label_smoothing=0.1)
    own_share = own_share.to(scores.device)
    own = torch.nn.functional.cross_entropy(scores, labels, label_smoothing=0.1, reduction="none")
    other = torch.nn.functional.cross_entropy(
        scores, labels[partner.to(labels.device)], label_smoothing=0.1, reduction="none"
    )
    return (own_share * own + (1 - own_share) * other).mean()
