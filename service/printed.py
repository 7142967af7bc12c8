"""What the command-line clients print of the server's answers: events, scores and stream
statistics, as a line of text or as the JSON object ``--json`` prints (one a line; its ``type``
says which: ``event`` or ``stats``)."""

from __future__ import annotations

from collections.abc import Iterable

from service.generated.actionrec.v1 import actionrec_pb2 as pb


def scores_json(scores) -> list[dict]:
    """LabelScores as ``--json`` prints them."""
    return [{"label": s.label, "score": round(s.score, 4)} for s in scores]


def scores_text(scores: Iterable) -> str:
    """Scores as "label 0.87, label 0.10": LabelScores, or the objects ``scores_json`` makes of them."""
    pairs = ((s["label"], s["score"]) if isinstance(s, dict) else (s.label, s.score) for s in scores)
    return ", ".join(f"{label} {score:.2f}" for label, score in pairs)


def event_json(event: pb.ActionEvent) -> dict:
    """One event as the JSON object ``--json`` prints (one a line)."""
    best = event.labels[0] if event.labels else pb.LabelScore()
    return {
        "type": "event",
        "stream_id": event.stream_id,
        "track_id": event.track_id,
        "start_ms": event.start_ms,
        "end_ms": event.end_ms,
        "label": best.label,
        "score": round(best.score, 4),
        "labels": scores_json(event.labels),
        "custom_labels": scores_json(event.custom_labels),
        "model": event.model,
        "latency_ms": round(event.stats.latency_ms, 1),
        "pose_ms": round(event.timing.pose_ms, 1),
        "classify_ms": round(event.timing.classify_ms, 1),
    }


def event_line(event: pb.ActionEvent) -> str:
    labels, custom = scores_text(event.labels), scores_text(event.custom_labels)
    return (
        f"{event.start_ms / 1000:8.2f}-{event.end_ms / 1000:.2f} s  person {event.track_id}: {labels}"
        + (f"  | custom: {custom}" if custom else "")
        + f"  ({event.stats.latency_ms:.0f} ms)"
    )


def _counts(counts) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))


def stats_line(stats: pb.StreamStats) -> str:
    """Every count of a stream's statistics that says something was left out (nothing lost unsaid)."""
    line = (
        f"frames: {stats.frames_received} received, {stats.frames_processed} posed, {stats.frames_skipped} skipped"
        f" (beyond the model's frame rate), dropped: {_counts(stats.frames_dropped) or 'none'};"
        f" {stats.windows_classified} windows classified"
    )
    if stats.windows_dropped:
        line += f", {sum(stats.windows_dropped.values())} with no event ({_counts(stats.windows_dropped)})"
    if stats.poses_dropped:
        line += f"; {stats.poses_dropped} frames' poses not sent (the client read too slowly)"
    if stats.tracks_forgotten:
        line += f"; {stats.tracks_forgotten} people forgotten (more tracks than the stream keeps)"
    return line


def stats_json(stream_id: str, stats: pb.StreamStats | None, frames_sent: int, frames_not_sent: int) -> dict:
    """A stream's statistics as the JSON object ``--json`` prints as its last line: what the client
    sent and left out, then the server's final counts (``final`` false, and none of them, when the
    stream ended before they came)."""
    sent = {"type": "stats", "stream_id": stream_id, "frames_sent": frames_sent, "frames_not_sent": frames_not_sent}
    if stats is None:
        return {**sent, "final": False}
    return {
        **sent,
        "final": stats.final,
        "frames_received": stats.frames_received,
        "frames_processed": stats.frames_processed,
        "frames_skipped": stats.frames_skipped,
        "frames_dropped": dict(sorted(stats.frames_dropped.items())),
        "frames_pending": stats.frames_pending,
        "windows_classified": stats.windows_classified,
        "windows_dropped": dict(sorted(stats.windows_dropped.items())),
        "poses_dropped": stats.poses_dropped,
        "tracks_forgotten": stats.tracks_forgotten,
    }
