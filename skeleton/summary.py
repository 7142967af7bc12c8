"""What a dataset holds, as numbers people and scripts can read (``actionrec info``)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from skeleton.dataset import SkeletonDataset


def summarize(dataset: SkeletonDataset) -> dict:
    persons = dataset.persons_per_sequence()
    counts = Counter(int(label) for label in dataset.labels if label >= 0)
    # From the timestamps, so that a stretch a sensor lost (frames dropped, times kept) counts.
    firsts, lasts = dataset.offsets, dataset.offsets + dataset.lengths - 1
    durations = (dataset.timestamps_ms[lasts] - dataset.timestamps_ms[firsts] + 1000.0 / dataset.fps) / 1000.0
    known = lambda values: sorted(int(v) for v in set(values.tolist()) if v >= 0)  # noqa: E731
    return {
        "sequences": len(dataset),
        "frames": dataset.num_frames,
        "persons": {"max": int(persons.max(initial=0)), "sequences_with_several": int((persons > 1).sum())},
        "classes": {name: counts.get(i, 0) for i, name in enumerate(dataset.label_names)},
        "unlabelled_sequences": int((dataset.labels < 0).sum()),
        "layout": dataset.layout,
        "dims": dataset.dims,
        "coordinate_space": dataset.coordinate_space,
        "units": dataset.units,
        "fps": dataset.fps,
        "frames_per_sequence": {
            "min": int(dataset.lengths.min()) if len(dataset) else 0,
            "median": float(np.median(dataset.lengths)) if len(dataset) else 0.0,
            "max": int(dataset.lengths.max(initial=0)),
        },
        "hours": round(float(durations.sum()) / 3600, 3),
        "subjects": known(dataset.subjects),
        "views": known(dataset.views),
        "splits": {name: int(len(idx)) for name, idx in sorted(dataset.splits.items())},
        "source": dataset.source,
        "reader": dataset.reader,
    }


def format_summary(summary: dict) -> str:
    """A few readable lines; the classes as an aligned table."""
    per_sequence = summary["frames_per_sequence"]
    lines = [
        f"source      {summary['source']}",
        f"reader      {summary['reader'] or 'none recorded'}",
        f"layout      {summary['layout']} ({summary['dims']}-D,"
        f" {summary['coordinate_space']} space, {summary['units']})",
        f"fps         {summary['fps']:g}",
        f"sequences   {summary['sequences']}  ({summary['unlabelled_sequences']} unlabelled)",
        f"frames      {summary['frames']}  ({summary['hours']} h; per sequence min {per_sequence['min']}"
        f" / median {per_sequence['median']:g} / max {per_sequence['max']})",
        f"persons     up to {summary['persons']['max']} in a sequence;"
        f" {summary['persons']['sequences_with_several']} sequences with several",
        f"subjects    {summary['subjects'] or 'unknown'}",
        f"views       {summary['views'] or 'unknown'}",
        f"splits      {', '.join(f'{k} ({v})' for k, v in summary['splits'].items()) or 'none'}",
        f"classes     {len(summary['classes'])}",
    ]
    width = max((len(name) for name in summary["classes"]), default=0)
    lines += [f"  {name:<{width}}  {count}" for name, count in summary["classes"].items()]
    return "\n".join(lines)
