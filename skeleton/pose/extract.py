"""``actionrec extract``: videos in, a pair of skeleton datasets out.

Every person in every frame is posed; the tracker turns the people of each frame into tracks
(person slots), so that slot ``p`` of a sequence is one person throughout. Two datasets are
written side by side with the same sequences: 2-D image landmarks (pixels of the original
video) and 3-D world landmarks (metres, per-frame hip-centred, Kinect camera axes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from skeleton.dataset import SkeletonDataset, SkeletonSequence
from skeleton.errors import InputError
from skeleton.pose.estimator import POSE_LAYOUT, MediaPipePose, mirror_image_x
from skeleton.pose.tracker import PersonTracker
from skeleton.pose.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, probe_video, read_frames, resize_to_width


@dataclass(frozen=True)
class ExtractOptions:
    pose_model: Path | None = None
    max_people: int = 4
    width: int = 640  # frames are posed at this width; landmarks are mapped back to full size
    # The video is a mirror image (Kinect v2 colour streams, NTU RGB+D's videos, selfie
    # cameras): pose runs on the unmirrored frame, so that left and right are the person's own,
    # and image landmarks are then put back into the video's own pixels.
    mirrored: bool = False


@dataclass(frozen=True)
class _Clip:
    path: Path
    label: str | None


def find_clips(inputs: list[Path]) -> list[_Clip]:
    """Videos named directly, videos in folders, and labelled clips in ``FOLDER/LABEL/*``."""
    suffixes = VIDEO_SUFFIXES + IMAGE_SUFFIXES
    clips = []
    for item in inputs:
        item = Path(item)
        if item.is_file():
            clips.append(_Clip(item, None))
        elif item.is_dir():
            clips += [_Clip(p, None) for p in sorted(item.iterdir()) if p.suffix.lower() in suffixes]
            for sub in sorted(p for p in item.iterdir() if p.is_dir()):
                clips += [_Clip(p, sub.name) for p in sorted(sub.iterdir()) if p.suffix.lower() in suffixes]
        else:
            raise InputError(f"{item}: no such file or folder")
    if not clips:
        raise InputError(f"no video or image files in {', '.join(str(i) for i in inputs)}")
    return clips


def _pose_clip(
    clip: _Clip, options: ExtractOptions, progress: tqdm
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-track image coords (T, P, 33, 2), world coords (T, P, 33, 3), visibility, timestamps."""
    frames: list[dict[int, object]] = []
    timestamps = []
    tracker = PersonTracker()
    with MediaPipePose(options.pose_model, max_people=options.max_people) as pose:
        for rgb, timestamp_ms in read_frames(clip.path):
            frame = rgb[:, ::-1] if options.mirrored else rgb
            people = pose.estimate(resize_to_width(frame, options.width), timestamp_ms, (rgb.shape[1], rgb.shape[0]))
            if options.mirrored:
                people = [mirror_image_x(p, rgb.shape[1]) for p in people]
            ids = tracker.update([p.image_xy for p in people], [p.visibility for p in people], timestamp_ms)
            frames.append(dict(zip(ids, people)))
            timestamps.append(timestamp_ms)
            progress.update(1)
    track_ids = sorted({i for frame in frames for i in frame})
    if not track_ids:
        raise InputError(f"{clip.path}: no person found in any of its {len(frames)} frames")
    slot = {track_id: s for s, track_id in enumerate(track_ids)}
    shape = (len(frames), len(track_ids), 33)
    image = np.full(shape + (2,), np.nan, dtype=np.float32)
    world = np.full(shape + (3,), np.nan, dtype=np.float32)
    visibility = np.zeros(shape, dtype=np.float32)
    for t, frame in enumerate(frames):
        for track_id, person in frame.items():
            image[t, slot[track_id]] = person.image_xy
            world[t, slot[track_id]] = person.world_xyz
            visibility[t, slot[track_id]] = person.visibility
    return image, world, visibility, np.asarray(timestamps, dtype=np.float64)


def extract_videos(inputs: list[Path], options: ExtractOptions) -> tuple[SkeletonDataset, SkeletonDataset]:
    """Pose every clip; returns the 2-D image dataset and the 3-D world dataset."""
    clips = find_clips(inputs)
    infos = [probe_video(clip.path) for clip in clips]  # fail on a bad file before any work
    label_names = sorted({clip.label for clip in clips if clip.label is not None})
    image_sequences, world_sequences = [], []
    with tqdm(total=sum(i.frame_count for i in infos), unit="frame", desc="pose", dynamic_ncols=True) as progress:
        for clip, info in zip(clips, infos):
            progress.set_postfix_str(clip.path.name)
            image, world, visibility, timestamps = _pose_clip(clip, options, progress)
            common = dict(
                name=clip.path.stem,
                confidence=visibility,
                timestamps_ms=timestamps,
                label=label_names.index(clip.label) if clip.label is not None else -1,
                image_size=(info.width, info.height),
            )
            image_sequences.append(SkeletonSequence(coords=image, **common))
            world_sequences.append(SkeletonSequence(coords=world, **common))
    # The nominal rate of the videos (still images have none); per-frame timestamps stay exact.
    video_fps = [i.fps for i, c in zip(infos, clips) if c.path.suffix.lower() not in IMAGE_SUFFIXES]
    fps = float(np.median(video_fps)) if video_fps else 30.0
    source = f"MediaPipe pose ({options.pose_model or 'pose_landmarker_full.task'}) on {len(clips)} clip(s)"
    image_dataset, world_dataset = (
        SkeletonDataset.from_sequences(
            sequences,
            layout=POSE_LAYOUT,
            coordinate_space=space,
            units=units,
            fps=fps,
            label_names=label_names,
            source=f"{source}; {what}",
        )
        for sequences, space, units, what in (
            (image_sequences, "image", "px", "2-D image landmarks"),
            (world_sequences, "camera", "m", "3-D world landmarks, hip-centred per frame"),
        )
    )
    return image_dataset, world_dataset
