"""Data subcommands: ``convert``, ``extract`` and ``info``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subcommands: argparse._SubParsersAction) -> None:
    from skeleton.readers import FORMATS

    convert = subcommands.add_parser(
        "convert",
        help="convert a real dataset into the project's dataset format",
        description="Read a dataset in its own format and write one project dataset file (.npz).",
    )
    convert.add_argument("--format", required=True, choices=FORMATS, help="the source's format")
    convert.add_argument("source", type=Path, help="the source folder (or file)")
    convert.add_argument("-o", "--output", type=Path, required=True, help="dataset file to write")
    convert.set_defaults(handler=_convert)

    extract = subcommands.add_parser(
        "extract",
        help="run MediaPipe pose on videos and write their skeletons as a dataset",
        description="Pose every person in each video (2-D image and 3-D world landmarks). A folder of"
        " sub-folders is read as labelled clips: the sub-folder name is the label.",
    )
    extract.add_argument("inputs", type=Path, nargs="+", metavar="VIDEO_OR_FOLDER")
    extract.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="dataset file to write; the 3-D world landmarks go beside it as NAME.world.npz",
    )
    extract.add_argument(
        "--pose-model",
        type=Path,
        default=None,
        help="MediaPipe pose landmarker .task (default: $ACTIONREC_POSE_MODEL, else the shipped full model)",
    )
    extract.add_argument("--max-people", type=int, default=4, help="people posed per frame (default 4)")
    extract.add_argument(
        "--width", type=int, default=640, help="frames wider than this are shrunk to it first (default 640; 0: as is)"
    )
    extract.add_argument(
        "--mirrored", action="store_true", help="the videos are mirror images (NTU RGB+D, Kinect v2 colour, selfies)"
    )
    extract.set_defaults(handler=_extract)

    info = subcommands.add_parser("info", help="describe a dataset file")
    info.add_argument("dataset", type=Path)
    info.add_argument("--json", action="store_true", help="end with one line of JSON")
    info.set_defaults(handler=_info)


def _convert(args: argparse.Namespace) -> int:
    from skeleton.readers import read_source
    from skeleton.summary import summarize

    dataset = read_source(args.format, args.source)
    dataset.save(args.output)
    summary = summarize(dataset)
    print(
        f"wrote {args.output}: {summary['sequences']} sequences, {summary['frames']} frames, "
        f"{len(summary['classes'])} classes, layout {summary['layout']}"
    )
    return 0


def _extract(args: argparse.Namespace) -> int:
    from skeleton.atomic import atomic_path
    from skeleton.pose.extract import ExtractOptions, extract_videos

    options = ExtractOptions(
        pose_model=args.pose_model, max_people=args.max_people, width=args.width, mirrored=args.mirrored
    )
    image, world = extract_videos(args.inputs, options)
    world_path = args.output.with_name(args.output.name.removesuffix(".npz") + ".world.npz")
    # Both files are written under temporary names and renamed only once both are whole: a
    # failed second write would otherwise leave the first file without its pair.
    with atomic_path(args.output) as image_file, atomic_path(world_path) as world_file:
        image.save(image_file)
        world.save(world_file)
    print(
        f"wrote {args.output} (2-D image landmarks) and {world_path} (3-D world landmarks):"
        f" {len(image)} videos, {image.num_frames} frames"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from skeleton.dataset import SkeletonDataset
    from skeleton.summary import format_summary, summarize

    summary = summarize(SkeletonDataset.load(args.dataset))
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary))
    return 0
