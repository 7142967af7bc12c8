"""Do the shipped models see a Kinect skeleton and a MediaPipe skeleton of the same motion alike?

On the NTU RGB+D sample, the Kinect v2 joints and MediaPipe's estimate from the RGB video of
the same 103 frames go through the same model:

* 3-D: Kinect camera-space joints vs MediaPipe world landmarks, through ``daily3d``;
* 2-D: Kinect colour-space joints vs MediaPipe image landmarks, through ``sports2d``.

Printed per model: cosine similarity of the embeddings (per window, median, and of the clip
means), agreement of the top-1 class and overlap of the top-5 classes. For reference, the
same figures between the Kinect clip and an unrelated clip (an MSR / Penn sequence) show what
"dissimilar" looks like.

    python -m benchmarks.domain_check [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from export.data import clips_from_dataset, evaluation_windows
from export.evaluate import LoadedModel, load_model
from skeleton.dataset import SkeletonDataset
from skeleton.pose.extract import ExtractOptions, extract_videos
from skeleton.readers import read_source

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VIDEO = DATA / "ntu-sample" / "S001C001P001R001A001_rgb.avi"


def _outputs(model: LoadedModel, dataset: SkeletonDataset, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-window embeddings (W, E) and the clip's mean class probabilities (K,)."""
    clips = clips_from_dataset(dataset, model.window, [index])
    windows, _ = evaluation_windows(clips, model.window, stride=4)
    scores, embeddings = model.run(windows)
    probabilities = np.exp(scores - scores.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    return embeddings, probabilities.mean(0)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


def compare(model: LoadedModel, kinect: SkeletonDataset, mediapipe: SkeletonDataset, other: SkeletonDataset) -> dict:
    kinect_windows, kinect_p = _outputs(model, kinect, 0)
    mp_windows, mp_p = _outputs(model, mediapipe, 0)
    other_windows, other_p = _outputs(model, other, 0)
    count = min(len(kinect_windows), len(mp_windows))
    top5 = lambda p: set(np.argsort(p)[-5:])  # noqa: E731
    return {
        "model": model.name,
        "windows": count,
        "window_cosine_median": float(np.median(_cosine(kinect_windows[:count], mp_windows[:count]))),
        "clip_cosine": float(_cosine(kinect_windows.mean(0), mp_windows.mean(0))),
        "clip_cosine_unrelated": float(_cosine(kinect_windows.mean(0), other_windows.mean(0))),
        "top1_kinect": model.labels[int(kinect_p.argmax())],
        "top1_mediapipe": model.labels[int(mp_p.argmax())],
        "top5_overlap": len(top5(kinect_p) & top5(mp_p)) / 5,
        "top5_overlap_unrelated": len(top5(kinect_p) & top5(other_p)) / 5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    image, world = extract_videos([VIDEO], ExtractOptions(max_people=1, mirrored=True))
    rows = [
        compare(
            load_model("daily3d"),
            read_source("ntu", VIDEO.parent),
            world,
            read_source("msr-action3d", DATA / "msr-action3d").subset([0]),
        ),
        compare(
            load_model("sports2d"),
            read_source("ntu-color", VIDEO.parent),
            image,
            read_source("penn-action", DATA / "penn-action-train").subset([0]),
        ),
    ]
    print(
        f"{'model':10}{'windows':>8}{'cos/window':>12}{'cos/clip':>10}{'(unrelated)':>13}"
        f"  {'top-1 Kinect':<24}{'top-1 MediaPipe':<24}{'top-5 overlap':>13}{'(unrelated)':>13}"
    )
    for r in rows:
        print(
            f"{r['model']:10}{r['windows']:>8}{r['window_cosine_median']:>12.3f}{r['clip_cosine']:>10.3f}"
            f"{r['clip_cosine_unrelated']:>13.3f}  {r['top1_kinect']:<24}{r['top1_mediapipe']:<24}"
            f"{r['top5_overlap']:>13.1f}{r['top5_overlap_unrelated']:>13.1f}"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
