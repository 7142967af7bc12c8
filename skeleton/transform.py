"""Whole-dataset transformations: another layout, another frame rate."""

from __future__ import annotations

import numpy as np

from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.mapping import layout_mapping
from skeleton.resample import MAX_INTERPOLATED_GAP_MS, resample_to_fps


def remap(
    dataset: SkeletonDataset, layout: str, fps: float, max_gap_ms: float = MAX_INTERPOLATED_GAP_MS
) -> SkeletonDataset:
    """Every sequence mapped to ``layout`` and resampled to ``fps`` (labels, splits kept).

    What a model sees of the result is exactly what it would see of the original, since
    training maps and resamples the same way; the result is smaller and faster to read.
    """
    mapping = layout_mapping(dataset.layout, layout)
    sequences = []
    for sequence in dataset:
        coords, confidence = mapping.apply(sequence.coords, sequence.confidence)
        coords, times = resample_to_fps(coords, sequence.timestamps_ms, fps, max_gap_ms)
        confidence, _ = resample_to_fps(confidence, sequence.timestamps_ms, fps, max_gap_ms)
        sequences.append(
            SkeletonSequence(
                name=sequence.name,
                coords=coords,
                confidence=np.nan_to_num(confidence, nan=0.0),
                timestamps_ms=uniform_timestamps(len(times), fps),
                label=sequence.label,
                subject=sequence.subject,
                view=sequence.view,
                image_size=sequence.image_size,
            )
        )
    return SkeletonDataset.from_sequences(
        sequences,
        layout=layout,
        coordinate_space=dataset.coordinate_space,
        units=dataset.units,
        fps=fps,
        label_names=dataset.label_names,
        splits=dataset.splits,
        source=f"{dataset.source}; remapped to {layout} at {fps:g} fps",
        view_names=dataset.view_names,
        reader=dataset.reader,
    )
