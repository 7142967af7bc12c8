"""Motion capture: BVH clips (CMU, Bandai-Namco) and Bandai-Namco's precomputed positions file.

Mocap is the large unlabelled corpus for pretraining. Positions are stored in metres, y up, in
the capture's world frame; a clip's known skeleton is recognised from its joint names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from skeleton.dataset import SkeletonDataset, SkeletonSequence, uniform_timestamps
from skeleton.errors import InputError
from skeleton.layouts import BANDAI21, CMU31, Layout
from skeleton.readers.bvh import read_bvh
from skeleton.readers.common import input_files, one_person

# BVH length units: Bandai-Namco writes centimetres; CMU's ASF-derived clips use the ASF unit
# of 1/0.45 inch.
_METRES_PER_UNIT = {BANDAI21.name: 0.01, CMU31.name: 0.0254 / 0.45}
_BVH_LAYOUTS = (BANDAI21, CMU31)


def _layout_of(path: Path, joint_names: tuple[str, ...]) -> Layout:
    for layout in _BVH_LAYOUTS:
        if set(layout.native_names) <= set(joint_names):
            return layout
    raise InputError(
        f"{path}: unknown BVH skeleton ({len(joint_names)} joints: {', '.join(joint_names[:6])}, ...);"
        f" known skeletons: {', '.join(layout.name for layout in _BVH_LAYOUTS)}"
    )


def _content_label(path: Path) -> tuple[str, str] | None:
    """Bandai-Namco's (content, style) names from the JSON beside a clip and the cfg/ folder."""
    labels, cfg = path.with_suffix(".json"), path.parent.parent / "cfg"
    if not (labels.is_file() and (cfg / "content_label.txt").is_file()):
        return None
    record = json.loads(labels.read_text())
    contents = (cfg / "content_label.txt").read_text().split()
    styles = (cfg / "style_label.txt").read_text().split()
    strip = lambda name: name.split("_", 1)[-1]  # noqa: E731 - "dataset-1_walk" -> "walk"
    return strip(contents[record["content"]]), strip(styles[record["style"]])


def read_bvh_clips(source: Path) -> SkeletonDataset:
    sequences, layouts, fps_values, label_of = [], set(), set(), {}
    for path in input_files(source, "*.bvh", "BVH"):
        clip = read_bvh(path)
        layout = _layout_of(path, clip.joint_names)
        picked = [clip.joint_names.index(n) for n in layout.native_names]
        coords = clip.positions[:, picked] * _METRES_PER_UNIT[layout.name]
        labels = _content_label(path)
        if labels is not None:
            label_of[len(sequences)] = labels[0]
        layouts.add(layout.name)
        fps_values.add(round(clip.fps, 3))
        sequences.append(
            SkeletonSequence(
                name=path.stem,
                coords=one_person(coords.astype(np.float32)),
                confidence=np.ones((len(coords), 1, layout.num_joints), dtype=np.float32),
                timestamps_ms=uniform_timestamps(len(coords), clip.fps),
            )
        )
    if len(layouts) > 1 or len(fps_values) > 1:
        raise InputError(
            f"{source}: clips mix skeletons {sorted(layouts)} or frame rates {sorted(fps_values)};"
            " convert them separately"
        )
    label_names = sorted(set(label_of.values()))
    if len(label_of) == len(sequences):
        sequences = [
            SkeletonSequence(**{**s.__dict__, "label": label_names.index(label_of[i])}) for i, s in enumerate(sequences)
        ]
    else:
        label_names = []
    return SkeletonDataset.from_sequences(
        sequences,
        layout=layouts.pop(),
        coordinate_space="world",
        units="m",
        fps=fps_values.pop(),
        label_names=label_names,
        source=f"BVH motion capture ({source})",
    )


def read_bandai_positions(source: Path) -> SkeletonDataset:
    """``dataset-2-positions.npz``: Bandai-Namco dataset 2 as global joint positions (metres)."""
    source = Path(source)
    if not source.is_file():
        raise InputError(f"{source}: no such file")
    required = ("positions", "lengths", "files", "content", "content_names", "joint_names", "fps")
    try:
        with np.load(source, allow_pickle=False) as data:
            missing = [k for k in required if k not in data.files]
            if missing:
                raise InputError(f"{source}: not a Bandai-Namco positions file (missing {', '.join(missing)})")
            arrays = {k: data[k] for k in required}
    except InputError:
        raise
    except Exception as e:  # a truncated or foreign file fails in numpy or zipfile
        raise InputError(f"{source}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if tuple(str(n) for n in arrays["joint_names"]) != BANDAI21.native_names:
        raise InputError(f"{source}: joints {list(arrays['joint_names'])} are not the Bandai-Namco skeleton")
    positions, lengths = arrays["positions"].astype(np.float32), arrays["lengths"].astype(np.int64)
    if positions.ndim != 3 or positions.shape[1:] != (21, 3) or int(lengths.sum()) != len(positions):
        raise InputError(f"{source}: positions {positions.shape} do not add up to the clip lengths")
    fps = round(float(arrays["fps"]), 3)  # stored as float32: 30.00003
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    sequences = [
        SkeletonSequence(
            name=str(arrays["files"][i]),
            coords=one_person(positions[offsets[i] : offsets[i + 1]]),
            confidence=np.ones((lengths[i], 1, 21), dtype=np.float32),
            timestamps_ms=uniform_timestamps(int(lengths[i]), fps),
            label=int(arrays["content"][i]),
        )
        for i in range(len(lengths))
    ]
    return SkeletonDataset.from_sequences(
        sequences,
        layout=BANDAI21.name,
        coordinate_space="world",
        units="m",
        fps=fps,
        label_names=[str(n).split("_", 1)[-1] for n in arrays["content_names"]],
        source=f"Bandai-Namco Research motion dataset 2 positions ({source}); labels are motion contents",
    )
