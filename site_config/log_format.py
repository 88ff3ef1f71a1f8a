"""The log formats and filters settings.LOGGING names. Apart from the modules they serve: logging
is configured before Django loads its apps, so nothing here may import a model."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from batches.ops.probes import PROBE_PATHS

# The endpoints batches/ops/health.py answers.


class JsonLines(logging.Formatter):
    """Every record as one JSON object: time, level, logger, message, and a batch event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "event_fields", None)
        if fields:
            line |= fields
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class QuietProbes:
    """A logging filter for the web server's access log: answered probes are not news (a failing
    one is, and stays)."""

    def filter(self, record: object) -> bool:
        args = getattr(record, "args", None)
        if isinstance(args, dict) and args.get("path") in PROBE_PATHS:
            return int(args.get("status") or 500) >= 400
        return True
