"""CFSEM: the encoder, a projector, and the cross-correlation (Barlow Twins style) loss.

The two views' embeddings are projected, batch-normalised, and their cross-correlation
matrix is pushed towards the identity: the diagonal to 1 (the views agree on every feature)
and the off-diagonal to 0 (features are decorrelated, so nothing collapses). No negatives are
needed, which suits the small batches a CPU trains with.
"""

from __future__ import annotations

import torch
from torch import nn

from export.encoder import SkeletonEncoder


class Projector(nn.Sequential):
    def __init__(self, embedding_size: int, width: int = 1024, depth: int = 3) -> None:
        layers: list[nn.Module] = []
        size = embedding_size
        for _ in range(depth - 1):
            layers += [nn.Linear(size, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
            size = width
        layers.append(nn.Linear(size, width, bias=False))
        super().__init__(*layers)


def cross_correlation_loss(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float) -> torch.Tensor:
    """sum_i (1 - C_ii)^2 + w * sum_{i != j} C_ij^2 with C the batch cross-correlation."""
    n = z1.shape[0]
    z1 = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + 1e-5)
    z2 = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + 1e-5)
    c = z1.T @ z2 / n
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Every process holds a slice of the batch: the matrix is the mean of theirs (through
        # the differentiable all-reduce, so that every slice gets the whole gradient).
        from torch.distributed.nn.functional import all_reduce

        c = all_reduce(c) / torch.distributed.get_world_size()
    diagonal = torch.diagonal(c)
    on = (1 - diagonal).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return on + off_diagonal_weight * off


class CFSEMModel(nn.Module):
    def __init__(self, encoder: SkeletonEncoder, projector_width: int = 1024) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = Projector(encoder.config.embedding_size, projector_width)

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, mask1: torch.Tensor | None, mask2: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.projector(self.encoder(view1, mask1)), self.projector(self.encoder(view2, mask2))
