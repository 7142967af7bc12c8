"""Frozen-encoder protocols: embeddings of clips, a linear probe and k-nearest neighbours."""

from __future__ import annotations

import numpy as np
import torch

from export.data import Clip, evaluation_windows
from skeleton.windows import WindowSpec


@torch.no_grad()
def window_outputs(model: torch.nn.Module, windows: np.ndarray, batch_size: int = 256) -> list[torch.Tensor]:
    """Run ``model`` (eval mode) over prepared windows in batches; outputs concatenated per output."""
    model.eval()
    device = next(model.parameters()).device
    outputs: list[list[torch.Tensor]] = []
    for start in range(0, len(windows), batch_size):
        result = model(torch.from_numpy(windows[start : start + batch_size]).to(device))
        result = result if isinstance(result, tuple) else (result,)
        outputs.append([r.cpu() for r in result])
    return [torch.cat(parts) for parts in zip(*outputs)]


def per_clip_mean(values: torch.Tensor, owners: np.ndarray, clips: int) -> torch.Tensor:
    """Mean of window values per clip: a clip's answer is its windows' consensus."""
    index = torch.from_numpy(owners).long()
    sums = torch.zeros(clips, values.shape[1]).index_add_(0, index, values.float())
    counts = torch.bincount(index, minlength=clips).clamp(min=1).unsqueeze(1)
    return sums / counts


def clip_probabilities(scores: torch.Tensor, owners: np.ndarray, clips: int) -> torch.Tensor:
    """A clip's class probabilities: the mean of its windows' softmax (each window one vote)."""
    return per_clip_mean(torch.softmax(scores.float(), dim=1), owners, clips)


def model_clip_probabilities(model: torch.nn.Module, clips: list[Clip], spec: WindowSpec) -> torch.Tensor:
    """A classifier's class probabilities for each clip, (clips, classes), from all its windows."""
    windows, owners = evaluation_windows(clips, spec)
    scores, _ = window_outputs(model, windows)
    return clip_probabilities(scores, owners, len(clips))


def clip_embeddings(encoder: torch.nn.Module, clips: list[Clip], spec: WindowSpec) -> torch.Tensor:
    windows, owners = evaluation_windows(clips, spec)
    (embeddings,) = window_outputs(encoder, windows)
    return per_clip_mean(embeddings, owners, len(clips))


def linear_probe(
    train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, classes: int, weight_decay: float = 1e-3
) -> np.ndarray:
    """Multinomial logistic regression on standardised frozen features; predicted test labels."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    x, t = (train_x - mean) / std, (test_x - mean) / std
    y = torch.from_numpy(train_y).long()
    linear = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return linear(t).argmax(1).numpy()


def knn_predict(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor, k: int = 1) -> np.ndarray:
    """k-nearest neighbours by cosine similarity (majority vote, ties to the nearest)."""
    a = torch.nn.functional.normalize(train_x, dim=1)
    b = torch.nn.functional.normalize(test_x, dim=1)
    nearest = (b @ a.T).topk(min(k, len(train_y)), dim=1).indices.numpy()
    predictions = []
    for row in train_y[nearest]:
        counts = np.bincount(row)
        tied = np.flatnonzero(counts == counts.max())
        predictions.append(next(label for label in row if label in tied))  # the nearest of the tied
    return np.asarray(predictions)
