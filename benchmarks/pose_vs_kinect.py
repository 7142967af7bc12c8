"""How far are MediaPipe skeletons from Kinect skeletons of the same frames?

On the NTU RGB+D sample, MediaPipe runs on the RGB video and is compared with the Kinect v2
joints recorded with it, frame for frame, on the 13 joints both have (Penn Action's set):

* 2-D: MediaPipe image landmarks vs Kinect colour-space joints, in pixels: PCK at 0.2 of the
  torso (Kinect shoulder centre to hip centre) and the median error;
* 3-D: MediaPipe world landmarks vs Kinect camera-space joints after a per-frame similarity
  alignment (proper rotation only): MPJPE in mm, and how much rotation the alignment needed
  (near 0 when both use the same axes).

The same figures with MediaPipe's left and right swapped are printed beside them: if a layout
or axis convention were wrong, the swapped column would be the better one.

    python -m benchmarks.pose_vs_kinect [--json]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skeleton.layouts import NTU25, PENN13
from skeleton.mapping import derive_joint, layout_mapping
from skeleton.metrics import aligned_mpjpe, pck
from skeleton.pose.extract import ExtractOptions, extract_videos
from skeleton.readers.ntu import read_ntu_recording

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE = DATA / "ntu-sample" / "S001C001P001R001A001"
SAMPLE_VIDEO = SAMPLE.with_name(SAMPLE.name + "_rgb.avi")
SAMPLE_SKELETON = SAMPLE.with_suffix(".skeleton")


@dataclass(frozen=True)
class Agreement:
    frames: int
    frames_with_person: int
    pck_02_torso: float
    median_error_px: float
    median_torso_px: float
    per_joint_median_error_px: dict[str, float]
    mpjpe_mm: float
    alignment_rotation_deg: float
    alignment_scale: float
    swapped_pck_02_torso: float
    swapped_median_error_px: float
    swapped_mpjpe_mm: float


def _main_person(coords: np.ndarray) -> np.ndarray:
    """The person slot seen in the most frames: (T, P, J, C) -> (T, J, C)."""
    seen = np.isfinite(coords).all(axis=-1).any(axis=-1).sum(axis=0)
    return coords[:, int(np.argmax(seen))]


def _kinect_valid(values: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Kinect joints it did not track (state 0) are not ground truth: mark them missing."""
    values = values.copy()
    values[confidence <= 0] = np.nan
    return values


def compare(
    video: Path = SAMPLE_VIDEO,
    skeleton: Path = SAMPLE_SKELETON,
    mirrored: bool = True,
) -> Agreement:
    """Compare; NTU's RGB videos are mirror images (Kinect v2 colour), hence ``mirrored``."""
    image, world = extract_videos([video], ExtractOptions(max_people=1, mirrored=mirrored))
    kinect = read_ntu_recording(skeleton)
    to_penn_mp, to_penn_kinect = layout_mapping("mediapipe33", "penn13"), layout_mapping("ntu25", "penn13")
    mp_xy, _ = to_penn_mp.apply(_main_person(image.coords))
    mp_xyz, _ = to_penn_mp.apply(_main_person(world.coords))
    kinect_color = _kinect_valid(kinect.color_xy[:, 0], kinect.confidence[:, 0])
    kinect_xyz = _kinect_valid(kinect.camera_xyz[:, 0], kinect.confidence[:, 0])
    k_xy, _ = to_penn_kinect.apply(kinect_color)
    k_xyz, _ = to_penn_kinect.apply(kinect_xyz)
    frames = min(len(mp_xy), len(k_xy))
    mp_xy, mp_xyz, k_xy, k_xyz = mp_xy[:frames], mp_xyz[:frames], k_xy[:frames], k_xyz[:frames]
    torso = np.linalg.norm(
        derive_joint(kinect_color[:frames], NTU25, "neck") - derive_joint(kinect_color[:frames], NTU25, "pelvis"),
        axis=-1,
    )
    swap = list(PENN13.mirror_permutation)
    errors = np.linalg.norm(mp_xy - k_xy, axis=-1)
    mpjpe, alignments = aligned_mpjpe(mp_xyz, k_xyz)
    swapped_mpjpe, _ = aligned_mpjpe(mp_xyz[:, swap], k_xyz)
    return Agreement(
        frames=frames,
        frames_with_person=int(np.isfinite(mp_xy).all(axis=(1, 2)).sum()),
        pck_02_torso=pck(mp_xy, k_xy, torso),
        median_error_px=float(np.nanmedian(errors)),
        median_torso_px=float(np.nanmedian(torso)),
        per_joint_median_error_px={name: float(np.nanmedian(errors[:, j])) for j, name in enumerate(PENN13.joints)},
        mpjpe_mm=1000 * float(np.nanmedian(mpjpe)),
        alignment_rotation_deg=float(np.median([a.angle_degrees for a in alignments])),
        alignment_scale=float(np.median([a.scale for a in alignments])),
        swapped_pck_02_torso=pck(mp_xy[:, swap], k_xy, torso),
        swapped_median_error_px=float(np.nanmedian(np.linalg.norm(mp_xy[:, swap] - k_xy, axis=-1))),
        swapped_mpjpe_mm=1000 * float(np.nanmedian(swapped_mpjpe)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    args = parser.parse_args()
    result = compare()
    print(f"NTU RGB+D sample {SAMPLE.name}: {result.frames} frames, person found in {result.frames_with_person}")
    print(f"{'':34}{'MediaPipe':>12}{'L/R swapped':>14}")
    print(f"{'2-D PCK@0.2 torso':34}{result.pck_02_torso:>12.3f}{result.swapped_pck_02_torso:>14.3f}")
    print(
        f"{'2-D median error (px, 1920x1080)':34}{result.median_error_px:>12.1f}{result.swapped_median_error_px:>14.1f}"
    )
    print(f"{'3-D MPJPE after alignment (mm)':34}{result.mpjpe_mm:>12.1f}{result.swapped_mpjpe_mm:>14.1f}")
    print(
        f"median torso {result.median_torso_px:.0f} px; 3-D alignment needed a median rotation of "
        f"{result.alignment_rotation_deg:.1f} deg and scale {result.alignment_scale:.3f}"
    )
    print(
        "per-joint median 2-D error (px): "
        + ", ".join(f"{k} {v:.0f}" for k, v in result.per_joint_median_error_px.items())
    )
    if args.json:
        print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
