"""Structured logs: one JSON object per line on stderr, carrying ids and outcomes, never media.

Call sites pass context as ``extra={"fields": {...}}``; only ids, counts and fixed phrases belong
there. ``ERASER_LOG_LEVEL`` sets the level (default INFO).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` with its structured ``fields``, if any."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(service: str) -> None:
    """Send every log line of this process to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("ERASER_LOG_LEVEL", "INFO").upper())
    # kafka-python narrates every connection at INFO; its warnings are still worth seeing.
    logging.getLogger("kafka").setLevel(logging.WARNING)
