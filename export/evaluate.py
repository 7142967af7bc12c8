"""``actionrec evaluate``: score a model on any dataset file, by a standard protocol.

A model is a shipped name (``models/NAME.onnx``), an ONNX file, or a training checkpoint
(``model.pt`` with a head, ``encoder.pt`` without). Without ``--probe`` the model's own head
answers for every clip of the split's test part, classes matched by name; with ``--probe`` a
linear classifier or 1-nearest-neighbour is fitted on the frozen embeddings of the split's
train part and scores its test part.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.data import clips_from_dataset, evaluation_windows
from export.probe import clip_probabilities, knn_predict, linear_probe, per_clip_mean
from skeleton.artifact import (
    EMBEDDING_NAME,
    INPUT_NAME,
    SCORES_NAME,
    model_names,
    open_model,
    resolve_model_path,
    training_data_split,
    variant_of,
)
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError
from skeleton.pose.estimator import PROJECT_ROOT
from skeleton.windows import WindowSpec

MODELS_DIR = PROJECT_ROOT / "models"
DEFAULT_MODEL = "sports2d"
SPLITS = ("cross-subject", "cross-view", "all")


@dataclass
class LoadedModel:
    name: str
    window: WindowSpec
    labels: tuple[str, ...]  # empty for an encoder without a head
    run: object  # windows (N, T, J, C) -> (scores or None, embeddings)
    training_data: str = ""  # the card's "FILE, split SPLIT" (ONNX models)


def _torch_model(path: Path) -> LoadedModel:
    from export.encoder import EncoderConfig, SkeletonEncoder
    from export.runtime import classifier_from_checkpoint, read_checkpoint

    checkpoint = read_checkpoint(path)
    if checkpoint["kind"] == "classifier":
        network, window, labels = classifier_from_checkpoint(checkpoint)
    else:
        network = SkeletonEncoder(EncoderConfig.from_dict(checkpoint["encoder_config"]))
        network.load_state_dict(checkpoint["state_dict"])
        network.eval()
        window, labels = WindowSpec(**checkpoint["window"]), ()

    @torch.no_grad()
    def run(windows: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        out = network(torch.from_numpy(windows))
        return (out[0].numpy(), out[1].numpy()) if labels else (None, out.numpy())

    return LoadedModel(path.stem, window, labels, run)


def _onnx_model(path: Path) -> LoadedModel:
    card, session = open_model(path)  # checked as the service checks it: card and graph agree

    def run(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scores, embeddings = session.run([SCORES_NAME, EMBEDDING_NAME], {INPUT_NAME: windows})
        return scores, embeddings

    # A variant answers by its own arithmetic: its results name it, not the FP32 model.
    name = f"{card.name}.{variant_of(path)}" if variant_of(path) else card.name
    return LoadedModel(name, card.window, card.labels, run, card.training_data)


def load_model(model: str | None) -> LoadedModel:
    """A shipped model's name, or a path to an .onnx model or a .pt checkpoint."""
    name = model or DEFAULT_MODEL
    path = resolve_model_path(name, MODELS_DIR)
    if not path.is_file():
        if path == MODELS_DIR / f"{name}.onnx":
            raise InputError(f"no shipped model {name!r} (shipped: {', '.join(model_names(MODELS_DIR)) or 'none yet'})")
        raise InputError(f"{path}: no such model file")
    return _onnx_model(path) if path.suffix == ".onnx" else _torch_model(path)


def protocol_parts(dataset: SkeletonDataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) sequence indices of a protocol, labelled sequences only."""
    labelled = np.flatnonzero(dataset.labels >= 0)
    if split == "all":
        return np.zeros(0, dtype=np.int64), labelled
    if f"{split}/train" in dataset.splits and f"{split}/test" in dataset.splits:
        return dataset.labelled_in(dataset.splits[f"{split}/train"]), dataset.labelled_in(
            dataset.splits[f"{split}/test"]
        )
    if split == "cross-subject" and (dataset.subjects[labelled] >= 0).all():
        odd = dataset.subjects[labelled] % 2 == 1
        return labelled[odd], labelled[~odd]
    if split == "cross-subject":
        raise InputError(f"{split}: this dataset has neither {split} splits nor the subjects to make them")
    raise InputError(f"{split}: this dataset has no stored {split}/train and {split}/test splits")


def seen_in_training(model: LoadedModel, data: Path, dataset: SkeletonDataset, test: np.ndarray) -> int:
    """How many of ``test`` are in the split the model was trained on, when its card names this
    dataset file and that split (a score on them is not a held-out score)."""
    trained_on = training_data_split(model.training_data)
    if trained_on is None or trained_on[0] != data.name or trained_on[1] not in dataset.splits:
        return 0
    return int(np.isin(test, dataset.splits[trained_on[1]]).sum())


def clip_outputs(
    model: LoadedModel, dataset: SkeletonDataset, indices: np.ndarray
) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    """Per clip of ``indices``: class probabilities (None without a head), mean embedding, true class name."""
    clips = clips_from_dataset(dataset, model.window, indices)
    windows, owners = evaluation_windows(clips, model.window)
    scores, embeddings = zip(*(model.run(windows[s : s + 256]) for s in range(0, len(windows), 256)))
    names = [dataset.label_names[c.label] for c in clips]
    embedding = per_clip_mean(torch.from_numpy(np.concatenate(embeddings)), owners, len(clips))
    if scores[0] is None:
        return None, embedding, names
    return clip_probabilities(torch.from_numpy(np.concatenate(scores)), owners, len(clips)), embedding, names


def head_accuracy(model: LoadedModel, dataset: SkeletonDataset, indices: np.ndarray) -> float:
    """Share of the clips whose class the model's own head names (classes matched by name)."""
    probabilities, _, names = clip_outputs(model, dataset, indices)
    predicted = [model.labels[i] for i in probabilities.argmax(1).numpy()]
    return float(np.mean([p == t for p, t in zip(predicted, names)]))


def evaluate(data: Path, split: str, probe: str | None, model_name: str | None) -> dict:
    dataset = SkeletonDataset.load(data)
    if not dataset.is_labelled:
        raise InputError(f"{data}: has no labels to evaluate against")
    model = load_model(model_name)
    if dataset.dims != model.window.dims:
        raise InputError(f"{model.name} takes {model.window.dims}-D joints; {data} holds {dataset.dims}-D joints")
    train, test = protocol_parts(dataset, split)
    if len(test) == 0:
        raise InputError(f"{data}: split {split!r} has an empty test part (no labelled sequences to score)")
    if probe and len(train) == 0:
        part = "no train part" if split == "all" else "an empty train part (no labelled sequences)"
        raise InputError(f"{data}: split {split!r} has {part}, and a {probe} probe is fitted on one")
    if probe and len(np.unique(dataset.labels[train])) < 2:  # a probe of one class answers it for everything
        raise InputError(
            f"{data}: split {split!r}'s train part holds one class, and a {probe} probe needs two or more to tell apart"
        )
    if not probe and not model.labels:
        raise InputError(f"{model.name} has no classifier head: use --probe linear or --probe knn")
    unknown_class = 0
    if not probe:
        known = [i for i in test if dataset.label_names[dataset.labels[i]] in model.labels]
        if not known:
            raise InputError(f"none of {data}'s classes is one of {model.name}'s classes")
        unknown_class = len(test) - len(known)
        if unknown_class:
            classes = sorted({dataset.label_names[dataset.labels[i]] for i in test} - set(model.labels))
            print(
                f"warning: left out {unknown_class} of the {len(test)} test sequences, of classes {model.name}"
                f" does not know: {', '.join(classes)}",
                file=sys.stderr,
            )
        test = np.asarray(known)

    test_scores, test_embeddings, test_names = clip_outputs(model, dataset, test)
    if probe:
        _, train_embeddings, train_names = clip_outputs(model, dataset, train)
        classes = sorted(set(train_names) | set(test_names))
        train_y = np.array([classes.index(n) for n in train_names])
        if probe == "linear":
            predicted = linear_probe(train_embeddings, train_y, test_embeddings, len(classes))
        else:
            predicted = knn_predict(train_embeddings, train_y, test_embeddings, k=1)
        predicted_names = [classes[p] for p in predicted]
    else:
        predicted_names = [model.labels[i] for i in test_scores.argmax(1).numpy()]
    seen = seen_in_training(model, data, dataset, test)
    if seen:
        print(
            f"warning: {seen} of the {len(test)} test sequences are in {model.name}'s training data"
            f" ({model.training_data}): this is not a held-out score",
            file=sys.stderr,
        )
    correct = np.array([p == t for p, t in zip(predicted_names, test_names)])
    per_class = {name: float(correct[[t == name for t in test_names]].mean()) for name in sorted(set(test_names))}
    # Some released data repeats a train recording in the test part (NW-UCLA's cross-view test
    # holds 95 exact copies of view-2 sequences): the score is given without them too.
    copies = np.isin(test, dataset.copies_among(test, train))
    if copies.any():
        print(
            f"warning: {copies.sum()} of the {len(test)} test sequences are exact copies of sequences in the"
            f" split's train part; accuracy without them {correct[~copies].mean():.2%} over {(~copies).sum()}",
            file=sys.stderr,
        )
    return {
        "model": model.name,
        "data": str(data),
        "split": split,
        "probe": probe or "head",
        "accuracy": float(correct.mean()),
        "n_train": int(len(train)) if probe else 0,
        "n_test": len(test_names),
        "n_unknown_class": unknown_class,  # test sequences of classes the model's head cannot name: not scored
        "test_seen_in_training": seen,
        "test_copies_of_train": int(copies.sum()),  # test sequences identical to one of the train part
        "accuracy_without_copies": float(correct[~copies].mean()) if (~copies).any() else None,
        "per_class_accuracy": per_class,
    }


def print_result(result: dict, as_json: bool) -> None:
    print(
        f"{result['model']} on {result['data']} ({result['split']}, {result['probe']}): "
        f"accuracy {result['accuracy']:.2%} over {result['n_test']} clips"
        + (f", probe fitted on {result['n_train']}" if result["n_train"] else "")
    )
    for name, accuracy in result["per_class_accuracy"].items():
        print(f"  {name:<28} {accuracy:.1%}")
    if as_json:
        print(json.dumps(result))
