"""Pose extraction: images in, per-person skeletons out (MediaPipe first; a GPU backend may follow)."""
