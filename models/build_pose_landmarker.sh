#!/usr/bin/env bash
# Rebuild models/pose_landmarker_full.task from the tflite files inside the
# mediapipe==0.10.21 wheel (see models/README.md for provenance).
#
# Usage: models/build_pose_landmarker.sh [OUT]   (default: models/pose_landmarker_full.task)
#
# Needs python3 (3.9-3.12) with venv and access to PyPI. mediapipe 0.10.21 pins
# numpy<2 / protobuf<5, so it goes into a throwaway venv, never the project's.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/pose_landmarker_full.task}"

work="$(mktemp -d)"
tmp_out="$(mktemp "$out.XXXXXX")"
trap 'rm -rf "$work" "$tmp_out"' EXIT

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check mediapipe==0.10.21
"$work/venv/bin/python" "$here/build_pose_landmarker.py" --out "$tmp_out"
chmod 644 "$tmp_out"
mv "$tmp_out" "$out"
echo "wrote $out"
