"""The skeleton encoder: a compact ST-GCN over a layout's bone graph, and the classifier head.

Input is what ``skeleton.windows.prepare_window`` makes: (batch, T, J, C) normalised joint
positions, zeros where joints are missing. The encoder derives its own input features from
it — joints, bones (joint minus parent) and motion (next frame minus this one) — so that the
exported model takes exactly the prepared window and nothing else has to agree on features.

Why an ST-GCN and not a transformer: on 2 CPU cores it trains in minutes on a few hundred
sequences, serves a window in about a millisecond, and a graph prior on the bones is worth
more than attention when labelled data is this small.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from export.augment import mirror
from skeleton.errors import InputError
from skeleton.layouts import Layout, get_layout

TEMPORALS = ("single", "multiscale")


@dataclass(frozen=True)
class EncoderConfig:
    layout: str
    dims: int
    channels: tuple[int, ...] = (64, 64, 128, 128, 256, 256)
    strides: tuple[int, ...] = (1, 1, 2, 1, 2, 1)
    temporal_kernel: int = 5
    dropout: float = 0.1
    # "single": one temporal convolution a block; "multiscale": parallel branches of different
    # reach (MultiScaleTemporal). The shipped models use "single": "multiscale" gained from
    # scratch on NW-UCLA's validation part but lost after CFSEM pretraining, and lost on MSR
    # (results/README.md).
    temporal: str = "single"

    def __post_init__(self) -> None:
        if self.temporal not in TEMPORALS:
            raise InputError(f"encoder temporal is {' or '.join(TEMPORALS)}, not {self.temporal!r}")
        if not self.channels or min(self.channels) < 1:
            raise InputError(f"encoder.channels lists each block's width, 1 or more, not {list(self.channels)}")
        if len(self.strides) != len(self.channels) or min(self.strides) < 1:
            raise InputError(
                f"encoder.strides lists each block's stride, 1 or more, as many as the {len(self.channels)} "
                f"channels, not {list(self.strides)}"
            )
        # Odd only: the temporal convolutions pad (kernel - 1) / 2 frames a side to keep a block's
        # length equal to its residual branch's.
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise InputError(
                f"encoder.temporal_kernel must be an odd number of frames, 1 or more, not {self.temporal_kernel}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"encoder.dropout is a probability, from 0 to below 1, not {self.dropout}")

    @property
    def embedding_size(self) -> int:
        return self.channels[-1]

    @classmethod
    def from_dict(cls, values: dict) -> EncoderConfig:
        """From a checkpoint's stored config (lists come back where tuples went in)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# The settings an encoder's weights depend on: all but dropout, which has none, so a checkpoint
# may go on training (a second pretraining stage, fine-tuning) with another dropout rate.
ENCODER_ARCHITECTURE = tuple(f.name for f in dataclasses.fields(EncoderConfig) if f.name != "dropout")


def partitioned_adjacency(layout: Layout) -> np.ndarray:
    """(3, J, J): self links, links towards the root, links away from it, each row-normalised."""
    joints = layout.num_joints
    identity = np.eye(joints, dtype=np.float32)
    inward = np.zeros((joints, joints), dtype=np.float32)
    for child, parent in layout.bones:
        inward[layout.index(child), layout.index(parent)] = 1.0
    outward = inward.T.copy()

    def normalised(a: np.ndarray) -> np.ndarray:
        degree = a.sum(axis=1, keepdims=True)
        return np.divide(a, degree, out=np.zeros_like(a), where=degree > 0)

    return np.stack([identity, normalised(inward), normalised(outward)])


class GraphConv(nn.Module):
    """Spatial graph convolution over the partitioned adjacency, plus a learned correction
    (initialised at zero) so that joints far apart in the tree, like two hands, can interact."""

    def __init__(self, c_in: int, c_out: int, adjacency: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("adjacency", torch.from_numpy(adjacency))
        self.learned = nn.Parameter(torch.zeros_like(self.adjacency))
        self.partitions = adjacency.shape[0]
        self.conv = nn.Conv2d(c_in, c_out * self.partitions, kernel_size=1)
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, J)
        n, _, t, j = x.shape
        y = self.conv(x).view(n, self.partitions, self.c_out, t, j)
        # sum_k y[:, k] @ A[k] as one matrix product over (partition, joint): a single MatMul in
        # the exported graph, which onnxruntime runs faster than the equivalent Einsum.
        y = y.permute(0, 2, 3, 1, 4).reshape(n, self.c_out, t, self.partitions * j)
        return y @ (self.adjacency + self.learned).reshape(self.partitions * j, j)


class MultiScaleTemporal(nn.Module):
    """Temporal convolution in parallel branches (as in MS-G3D and CTR-GCN): two dilations of the
    kernel, a max-pool and a pointwise branch, each on a share of the channels. The dilated
    branch reaches twice as far in time for the same cost (EncoderConfig.temporal says where
    that helped)."""

    def __init__(self, channels: int, stride: int, kernel: int, dilations: tuple[int, ...] = (1, 2)) -> None:
        super().__init__()
        count = len(dilations) + 2
        widths = [channels // count] * (count - 1)
        widths.append(channels - sum(widths))

        def squeeze(width: int) -> list[nn.Module]:
            return [nn.Conv2d(channels, width, 1), nn.BatchNorm2d(width), nn.ReLU()]

        branches = [
            nn.Sequential(
                *squeeze(width),
                nn.Conv2d(width, width, (kernel, 1), (stride, 1), ((kernel - 1) * d // 2, 0), (d, 1)),
                nn.BatchNorm2d(width),
            )
            for width, d in zip(widths, dilations)
        ]
        pool_width, point_width = widths[len(dilations)], widths[len(dilations) + 1]
        branches.append(
            nn.Sequential(*squeeze(pool_width), nn.MaxPool2d((3, 1), (stride, 1), (1, 0)), nn.BatchNorm2d(pool_width))
        )
        branches.append(nn.Sequential(nn.Conv2d(channels, point_width, 1, (stride, 1)), nn.BatchNorm2d(point_width)))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class STBlock(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        adjacency: np.ndarray,
        kernel: int,
        dropout: float,
        temporal: str = "single",
    ) -> None:
        super().__init__()
        self.gcn = GraphConv(c_in, c_out, adjacency)
        self.bn_spatial = nn.BatchNorm2d(c_out)
        if temporal == "single":
            temporal_conv: list[nn.Module] = [
                nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), (kernel // 2, 0)),
                nn.BatchNorm2d(c_out),
            ]
        else:
            temporal_conv = [MultiScaleTemporal(c_out, stride, kernel)]
        self.tcn = nn.Sequential(*temporal_conv, nn.Dropout(dropout))
        if c_in == c_out and stride == 1:
            self.residual: nn.Module = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_spatial(self.gcn(x)))
        return self.relu(self.tcn(y) + self.residual(x))


class SkeletonEncoder(nn.Module):
    """(N, T, J, C) prepared windows -> (N, E) embeddings; ``joint_mask`` (N, T, J) hides joints."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        layout = get_layout(config.layout)
        adjacency = partitioned_adjacency(layout)
        parents = [p if p >= 0 else i for i, p in enumerate(layout.parents)]
        self.register_buffer("parents", torch.tensor(parents, dtype=torch.long))
        features = 3 * config.dims
        self.input_norm = nn.BatchNorm1d(features * layout.num_joints)
        blocks, c_in = [], features
        for c_out, stride in zip(config.channels, config.strides):
            block = STBlock(c_in, c_out, stride, adjacency, config.temporal_kernel, config.dropout, config.temporal)
            blocks.append(block)
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Joints, bones and motion, (N, 3C, T, J)."""
        bones = x - x[:, :, self.parents]
        motion = torch.cat([x[:, 1:] - x[:, :-1], torch.zeros_like(x[:, :1])], dim=1)
        return torch.cat([x, bones, motion], dim=-1).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, joint_mask: torch.Tensor | None = None) -> torch.Tensor:
        if joint_mask is not None:
            x = x * joint_mask.unsqueeze(-1)
        f = self.features(x)
        if joint_mask is not None:
            f = f * joint_mask.unsqueeze(1)
        n, c, t, j = f.shape
        f = self.input_norm(f.permute(0, 1, 3, 2).reshape(n, c * j, t)).view(n, c, j, t).permute(0, 1, 3, 2)
        return self.blocks(f).mean(dim=(2, 3))


class Classifier(nn.Module):
    """Encoder plus a linear head; returns (scores, embedding), the exported model's outputs."""

    def __init__(
        self, encoder: SkeletonEncoder, num_classes: int, dropout: float = 0.3, mirror_average: bool = False
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.embedding_size, num_classes)
        self.mirror_average = mirror_average
        permutation = torch.tensor(get_layout(encoder.config.layout).mirror_permutation, dtype=torch.long)
        self.register_buffer("mirror_permutation", permutation, persistent=False)

    @property
    def embedding_size(self) -> int:
        return self.encoder.config.embedding_size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.encoder(x)
        if self.mirror_average and not self.training:
            # A person seen in a mirror does the same action: the embedding is the mean of the
            # window's and its mirror image's, so the scores (a linear head of it) are the mean of
            # both views' scores, and an enrolled action matches either handedness.
            embedding = (embedding + self.encoder(mirror(x, self.mirror_permutation))) / 2
        return self.head(self.dropout(embedding)), embedding


class Ensemble(nn.Module):
    """Classifiers trained alike (seeds apart) answering as one model: the scores are the mean of
    theirs, the embedding is theirs side by side. Each network's errors are partly its own draw,
    so the mean errs less than any of them; the pose estimate a window needs costs far more than
    running the small encoder a few times over it."""

    def __init__(self, members: list[Classifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.embedding_size = sum(member.embedding_size for member in members)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores, embeddings = zip(*(member(x) for member in self.members))
        return torch.stack(scores).mean(dim=0), torch.cat(embeddings, dim=1)
