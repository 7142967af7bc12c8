"""Build the MediaPipe Tasks bundle ``pose_landmarker_full.task`` offline.

Why: no MediaPipe release on PyPI ships a ``.task`` file, and this project
must build without downloads from outside the package registries. The
``mediapipe==0.10.21`` wheel still carries the legacy BlazePose GHUM (full)
tflite models, which are all a PoseLandmarker bundle needs once they carry
image-normalisation metadata:

* ``pose_detection.tflite``     -> ``pose_detector.tflite``,
  norm mean 127.5 / std 127.5 (input scaled to [-1, 1]);
* ``pose_landmark_full.tflite`` -> ``pose_landmarks_detector.tflite``,
  norm mean 0 / std 255 (input scaled to [0, 1]).

Must run with mediapipe==0.10.21 installed (see build_pose_landmarker.sh);
its numpy<2 / protobuf<5 pins clash with the project environment.
"""

import argparse
import hashlib
import zipfile
from pathlib import Path

import mediapipe
from mediapipe.tasks.python.metadata.metadata_writers import (
    metadata_writer,
    model_asset_bundle_utils,
    writer_utils,
)

DETECTOR = "modules/pose_detection/pose_detection.tflite"
LANDMARKS = "modules/pose_landmark/pose_landmark_full.tflite"

# name inside the bundle -> (file in the mediapipe package, norm mean, norm std)
MODELS: dict[str, tuple[str, float, float]] = {
    "pose_detector.tflite": (DETECTOR, 127.5, 127.5),
    "pose_landmarks_detector.tflite": (LANDMARKS, 0.0, 255.0),
}

# Fixed zip entry timestamp so that rebuilding gives the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def with_image_metadata(model: bytes, name: str, mean: float, std: float) -> bytes:
    """Return ``model`` with RGB image-input normalisation metadata added."""
    writer = metadata_writer.MetadataWriter.create(bytearray(model))
    writer.add_general_info(name, "BlazePose GHUM (full) from mediapipe 0.10.21")
    writer.add_image_input(norm_mean=[mean], norm_std=[std])
    # Name outputs explicitly: the default fills every output as "Identity".
    for tensor_name in writer_utils.get_output_tensor_names(model):
        writer.add_feature_output(name=tensor_name)
    tflite, _json = writer.populate()
    return bytes(tflite)


def write_bundle(entries: dict[str, bytes], out: Path) -> None:
    """Write an uncompressed, 4-byte aligned zip like create_model_asset_bundle.

    ``create_model_asset_bundle`` stamps entries with the current time; the
    same zip class is used here with a fixed timestamp for reproducibility.
    """
    with model_asset_bundle_utils.AlignZipFile(out, mode="w", alignment=4) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output .task path")
    args = parser.parse_args()
    if mediapipe.__version__ != "0.10.21":
        parser.error(f"needs mediapipe==0.10.21, found {mediapipe.__version__}")

    root = Path(mediapipe.__file__).parent
    entries = {
        name: with_image_metadata((root / src).read_bytes(), name, mean, std)
        for name, (src, mean, std) in MODELS.items()
    }
    write_bundle(entries, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"{digest}  {args.out}")


if __name__ == "__main__":
    main()
