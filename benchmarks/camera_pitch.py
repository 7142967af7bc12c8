"""How much does a 3-D model's accuracy depend on the camera's pitch?

A depth sensor or a camera mounted higher than the ones a model was trained with looks down
at people, which leans every skeleton towards it. This turns a labelled dataset's skeletons
about the camera's horizontal axis by each of the given angles (degrees, positive: the camera
looks further down) and scores each model's own head on them, classes matched by name. A model
whose normalisation stands skeletons upright ("upright") should barely move; one that only turns
them to face forward loses what its training tilts did not cover.

Score a validation part, not a test split, when the figures choose anything: for NW-UCLA's
view-held-out validation (runs trained on view 1), ``--split cross-view/train --view 2``.

    python -m benchmarks.camera_pitch --data data/nw-ucla.npz --split cross-view/train --view 2 \\
        --model runs/a/model.pt --model runs/b/model.pt [--pitch 0 15 30 45] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from export.evaluate import head_accuracy, load_model
from skeleton.dataset import SkeletonDataset
from skeleton.errors import InputError


def pitched(dataset: SkeletonDataset, degrees: float) -> SkeletonDataset:
    """``dataset`` seen by a camera turned down by ``degrees`` about its x axis: up (+y) leans
    towards the camera (-z), as the NTU sample's Kinect, mounted above the person, sees it."""
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]], dtype=np.float32)
    return dataclasses.replace(dataset, coords=dataset.coords @ rotation.T)


def scored_part(dataset: SkeletonDataset, split: str, view: int | None) -> np.ndarray:
    if split not in dataset.splits:
        raise InputError(f"no split {split!r}; the dataset has: {', '.join(sorted(dataset.splits))}")
    indices = dataset.labelled_in(dataset.splits[split])
    if view is not None:
        indices = indices[dataset.views[indices] == view]
    if len(indices) == 0:
        of_view = f" of view {view}" if view is not None else ""
        raise InputError(f"split {split!r} has no labelled sequences{of_view}")
    return indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a labelled 3-D dataset (.npz)")
    parser.add_argument("--split", required=True, help="the named split to score (e.g. cross-view/train)")
    parser.add_argument("--view", type=int, default=None, help="only the sequences of this view")
    parser.add_argument("--model", action="append", required=True, help=".pt checkpoint, .onnx file or model name")
    parser.add_argument("--pitch", type=float, nargs="+", default=[0.0, 15.0, 30.0, 45.0], help="degrees")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    try:
        dataset = SkeletonDataset.load(args.data)
        if dataset.dims != 3:
            raise InputError(f"{args.data}: holds {dataset.dims}-D joints; a camera's pitch is a 3-D question")
        indices = scored_part(dataset, args.split, args.view)
        models = [load_model(name) for name in args.model]
        for name, model in zip(args.model, models):
            if model.window.dims != 3:
                raise InputError(f"{name}: takes {model.window.dims}-D joints; a camera's pitch is a 3-D question")
    except InputError as e:
        raise SystemExit(f"camera_pitch: error: {e}") from None
    rows = []
    for name, model in zip(args.model, models):
        accuracy = {p: head_accuracy(model, pitched(dataset, p), indices) for p in args.pitch}
        rows.append({"model": name, "normalization": model.window.normalization, "clips": len(indices), **accuracy})
    width = max(len(r["model"]) for r in rows)
    print(f"{'model':{width}}  {'normalisation':34}" + "".join(f"{f'{p:g} deg':>10}" for p in args.pitch))
    for r in rows:
        print(f"{r['model']:{width}}  {r['normalization']:34}" + "".join(f"{100 * r[p]:>10.1f}" for p in args.pitch))
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
