"""Few-shot custom actions through the service: how well are actions recognised that a model was
never trained to classify, from K enrolled examples each?

Every figure goes through a real server process (``actionrec serve``) over gRPC: the examples
are enrolled with ``EnrollAction`` (the service's own embedding, prototype and store), and every
test clip is answered by ``ClassifyClip`` naming that action set; the top custom label is
compared with the clip's true action. The examples come from a benchmark's train part and the
answers are scored on its test part, so enrolment examples and scored clips are never the same
people (cross-subject) or the same camera (cross-view). No setting is chosen here.

Pairs (model, actions it was not trained on):

* ``daily3d`` (NW-UCLA's 10 daily actions) enrolling MSR Action3D's 20 actions, cross-subject;
* ``msr3d`` (MSR Action3D's 20 actions) enrolling NW-UCLA's 10 actions, cross-view;
* ``sports2d`` (Penn Action's 15 sports, 2-D) enrolling NW-UCLA's 10 actions seen as 2-D: the
  Kinect's camera-space joints through a pinhole model of the Kinect v1 camera (image pixels,
  as the sensor itself saw them), cross-view;
* and, for a ceiling, ``daily3d`` enrolling its own classes (NW-UCLA, cross-view), beside the
  accuracy of its trained head on the same clips.

Each K (examples per action) is drawn ``--draws`` times with different seeds; the table gives the
mean and standard deviation of the top-1 accuracy over the draws.

    python -m benchmarks.enrolment [--shots 1 3 5 10] [--draws 5] [--models daily3d ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.generated.actionrec.v1 import actionrec_pb2 as pb
from service.testing import ServerProcess, skeleton_frames, stub
from skeleton.dataset import SkeletonDataset
from skeleton.readers import read_source

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TIMEOUT_S = 60.0
# Kinect v1's camera, for seeing its camera-space joints as 2-D pixels (640 x 480 image).
KINECT_FOCAL_PX, KINECT_CENTRE_PX = 525.0, (320.0, 240.0)


@dataclass(frozen=True)
class Task:
    model: str
    dataset: str  # "msr" or "nw-ucla"
    split: str  # the dataset's protocol: {split}/train gives examples, {split}/test is scored
    dims: int
    note: str


TASKS = (
    Task("daily3d", "msr", "cross-subject", 3, "new actions"),
    Task("msr3d", "nw-ucla", "cross-view", 3, "new actions"),
    Task("sports2d", "nw-ucla", "cross-view", 2, "new actions, 2-D"),
    Task("daily3d", "nw-ucla", "cross-view", 3, "its own classes"),
)


def kinect_pixels(coords: np.ndarray) -> np.ndarray:
    """Kinect camera-space joints (x to the sensor's left, y up, z away; metres) as the pixels of
    the sensor's own image (x right, y down)."""
    depth = np.maximum(coords[..., 2:3], 0.1)
    x = KINECT_CENTRE_PX[0] - KINECT_FOCAL_PX * coords[..., 0:1] / depth
    y = KINECT_CENTRE_PX[1] - KINECT_FOCAL_PX * coords[..., 1:2] / depth
    return np.concatenate([x, y], axis=-1)


def skeleton_clip(dataset: SkeletonDataset, index: int, dims: int) -> pb.Clip:
    """Sequence ``index`` as a skeleton clip in the dataset's own layout (its first person; a
    missing joint has confidence 0, a frame without the person has nobody in it)."""
    sequence = dataset[index]
    coords = sequence.coords[:, 0]
    if dims == 2:
        coords = kinect_pixels(coords)
    frames = skeleton_frames([coords], np.round(sequence.timestamps_ms))
    space = "image" if dims == 2 else dataset.coordinate_space
    fmt = pb.SkeletonFormat(layout=dataset.layout, dims=dims, coordinate_space=space)
    return pb.Clip(skeletons=pb.SkeletonClip(format=fmt, frames=frames))


def examples_per_action(labels: np.ndarray, shots: int, seed: int) -> dict[int, np.ndarray]:
    """``shots`` positions of each label, drawn with ``seed`` (all of them when fewer)."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen[int(label)] = rng.choice(members, size=min(shots, len(members)), replace=False)
    return chosen


def run_task(api, task: Task, dataset: SkeletonDataset, shots: list[int], draws: int, pool) -> dict:
    train, test = dataset.splits[f"{task.split}/train"], dataset.splits[f"{task.split}/test"]
    clips = {int(i): skeleton_clip(dataset, int(i), task.dims) for i in np.concatenate([train, test])}
    names = dataset.label_names
    truth = [names[dataset.labels[i]] for i in test]

    def answer(index: int, action_set: str) -> pb.ClassifyClipResponse:
        request = pb.ClassifyClipRequest(model=task.model, clip=clips[int(index)], action_set=action_set, top_k=1)
        return api.ClassifyClip(request, timeout=TIMEOUT_S)

    rows = []
    for k in shots:
        accuracies = []
        for draw in range(draws):
            action_set = f"{task.model}-{task.dataset}-{k}-{draw}"
            for label, positions in examples_per_action(dataset.labels[train], k, seed=draw).items():
                examples = [clips[int(train[p])] for p in positions]
                request = pb.EnrollActionRequest(
                    action_set=action_set, action=names[label], model=task.model, examples=examples
                )
                api.EnrollAction(request, timeout=TIMEOUT_S)
            answers = pool.map(lambda i, s=action_set: answer(i, s), test)
            right = [a.custom_labels[0].label == t for a, t in zip(answers, truth)]
            accuracies.append(100.0 * float(np.mean(right)))
        mean, std = float(np.mean(accuracies)), float(np.std(accuracies))
        rows.append({"shots": k, "accuracy_mean": mean, "accuracy_std": std})
        print(f"{task.model} enrolling {task.dataset} ({task.note}), K={k}: {mean:.1f} ± {std:.1f}", file=sys.stderr)
    result = {"model": task.model, "dataset": task.dataset, "split": task.split, "note": task.note, "rows": rows}
    result["actions"], result["n_test"] = len(names), len(test)
    if task.note == "its own classes":
        heads = pool.map(lambda i: answer(i, ""), test)
        result["head_accuracy"] = 100.0 * float(np.mean([a.labels[0].label == t for a, t in zip(heads, truth)]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 3, 5, 10], help="examples per action")
    parser.add_argument("--draws", type=int, default=5, help="random draws of the examples per K")
    models = sorted({t.model for t in TASKS})
    parser.add_argument("--models", nargs="+", choices=models, default=models, help="only these models' rows")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    datasets = {
        "msr": read_source("msr-action3d", DATA / "msr-action3d"),
        "nw-ucla": read_source("nw-ucla", DATA / "nw-ucla"),
    }
    results = []
    with tempfile.TemporaryDirectory() as state, ServerProcess(ROOT / "models", Path(state)) as server:
        api = stub(server.address)
        with ThreadPoolExecutor(4) as pool:  # the server's default limit of clip calls at once
            for task in (t for t in TASKS if t.model in args.models):
                results.append(run_task(api, task, datasets[task.dataset], args.shots, args.draws, pool))
    shots = "".join(f"{f'K={k}':>14}" for k in args.shots)
    print(f"{'model':10}{'enrols':>10}{'split':>15}{'actions':>8}{'test':>6}  {shots}")
    for r in results:
        cells = "".join(f"{row['accuracy_mean']:>8.1f} ± {row['accuracy_std']:<3.1f}" for row in r["rows"])
        head = f"   (its head: {r['head_accuracy']:.1f})" if "head_accuracy" in r else ""
        print(f"{r['model']:10}{r['dataset']:>10}{r['split']:>15}{r['actions']:>8}{r['n_test']:>6}  {cells}{head}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
