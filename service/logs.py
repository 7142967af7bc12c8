"""Structured logs: one JSON object a line (time, level, logger, message and the call's fields).

Modules log with ``extra={"fields": {...}}``; this formatter puts those fields into the object,
so that log processors can filter on ``stream_id`` or ``model`` without parsing prose.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(_plain(entry), default=str)


def _plain(value):
    """``value`` with infinite and nan floats as strings: JSON has no such numbers, and Python's
    ``Infinity`` and ``NaN`` break other parsers' reading of the line."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def configure(level: str = "info", stream=None) -> None:
    """JSON lines on ``stream`` (stderr) for the service's loggers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("service")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
