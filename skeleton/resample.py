"""Resampling by timestamps to a model's frame rate.

Cameras run at 15, 25, 30 or 60 fps and drop frames; datasets were captured at 15 to 120 fps.
A model is trained at one rate, so both the training data and the live stream are brought to
it here, by linear interpolation between the frames that bracket each target time.
"""

from __future__ import annotations

import numpy as np

from skeleton.errors import InputError

# A person unseen for longer than this is missing, not bridged by interpolation: in training
# data (a sensor that lost the person) and in live streams alike, so that a model meets gaps
# in service as it met them in training.
MAX_INTERPOLATED_GAP_MS = 300.0
# The longest a sequence may last: far beyond any recording of actions, and short enough to
# keep resampling within memory (timestamps in nanoseconds taken for milliseconds would ask for
# a million times the frames there are, hundreds of GiB).
MAX_SEQUENCE_SPAN_MS = 24 * 3_600_000.0


def sample_times(start_ms: float, end_ms: float, fps: float) -> np.ndarray:
    """Times (ms) at ``fps`` from ``start_ms`` up to and including ``end_ms``."""
    if fps <= 0:
        raise InputError(f"target frame rate {fps} is not positive")
    if not (np.isfinite(start_ms) and np.isfinite(end_ms)):
        raise InputError(f"timestamps from {start_ms} to {end_ms} ms are not all finite")
    if end_ms - start_ms > MAX_SEQUENCE_SPAN_MS:
        raise InputError(
            f"timestamps from {start_ms:g} to {end_ms:g} ms span over the {MAX_SEQUENCE_SPAN_MS / 3_600_000:g} h"
            " a sequence may last (timestamps are in ms)"
        )
    count = int(np.floor((end_ms - start_ms) * fps / 1000.0 + 1e-6)) + 1
    # The last time may come out a rounding error past ``end_ms`` (20 * 1000 / 15 against
    # 10 * (1000 / 7.5)): it is ``end_ms``, not a time after the sequence (read as missing).
    return np.minimum(start_ms + np.arange(max(count, 0)) * (1000.0 / fps), end_ms)


def resample(
    values: np.ndarray, timestamps_ms: np.ndarray, target_times_ms: np.ndarray, max_gap_ms: float = np.inf
) -> np.ndarray:
    """``values`` (T, ...) observed at ``timestamps_ms`` (T,), read at ``target_times_ms``.

    Between two observations the value is interpolated linearly; a target time that falls
    exactly on an observation takes it as is. Missing values (NaN) stay missing, and so does a
    target time outside the observed span or inside a gap longer than ``max_gap_ms`` (a person
    who left the picture is not invented).
    """
    timestamps_ms = np.asarray(timestamps_ms, dtype=np.float64)
    if values.shape[0] != timestamps_ms.shape[0]:
        raise InputError(f"{values.shape[0]} frames but {timestamps_ms.shape[0]} timestamps")
    if timestamps_ms.size and np.any(np.diff(timestamps_ms) <= 0):
        raise InputError("timestamps must increase strictly")
    targets = np.asarray(target_times_ms, dtype=np.float64)
    out_shape = (targets.shape[0],) + values.shape[1:]
    if values.shape[0] == 0:
        return np.full(out_shape, np.nan, dtype=np.float32)
    hi = np.clip(np.searchsorted(timestamps_ms, targets, side="left"), 0, len(timestamps_ms) - 1)
    lo = np.clip(hi - 1, 0, None)
    exact = timestamps_ms[hi] == targets
    lo = np.where(exact, hi, lo)
    span = timestamps_ms[hi] - timestamps_ms[lo]
    weight = np.where(span > 0, (targets - timestamps_ms[lo]) / np.where(span > 0, span, 1.0), 0.0)
    inside = (targets >= timestamps_ms[0]) & (targets <= timestamps_ms[-1]) & (span <= max_gap_ms)
    w = weight.reshape((-1,) + (1,) * (values.ndim - 1)).astype(np.float32)
    a, b = values[lo].astype(np.float32), values[hi].astype(np.float32)
    out = np.where(w == 0, a, (1 - w) * a + w * b)
    out[~inside] = np.nan
    return out.astype(np.float32)


def resample_to_fps(
    values: np.ndarray, timestamps_ms: np.ndarray, fps: float, max_gap_ms: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Resample a whole sequence to ``fps`` from its first to its last timestamp."""
    if len(timestamps_ms) == 0:
        return values[:0].astype(np.float32), np.zeros(0)
    times = sample_times(float(timestamps_ms[0]), float(timestamps_ms[-1]), fps)
    return resample(values, timestamps_ms, times, max_gap_ms), times
