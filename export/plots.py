"""Pictures people would rather look at than numbers: training curves, confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(history: list[dict[str, float]], path: Path, title: str) -> None:
    """One panel per recorded quantity (loss, accuracy, masking probability...) over epochs."""
    keys = list(dict.fromkeys(k for record in history for k in record if k != "epoch"))
    figure, axes = plt.subplots(1, max(len(keys), 1), figsize=(4.2 * max(len(keys), 1), 3.4), squeeze=False)
    for axis, key in zip(axes[0], keys):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        axis.plot(*zip(*points), marker="." if len(points) < 40 else None)
        axis.set_title(key)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): a row a true class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def plot_confusion(matrix: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (true class per row), counts written in the cells."""
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    size = 2.5 + 0.42 * len(labels)
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(len(labels)), labels, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            axis.text(
                j, i, int(count), ha="center", va="center", fontsize=7, color="white" if share[i, j] > 0.5 else "black"
            )
    figure.colorbar(image, fraction=0.046)
    axis.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
