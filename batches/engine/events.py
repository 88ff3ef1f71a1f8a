"""One log line per batch event, for machines: created, planned, finished, failed, cancelled,
worker_lost, resumed, and progress (at most every BATCHES_PROGRESS_LOG_SECONDS per running batch
and worker process). Each names the batch, its operation, scope and user.

The lines go to the `batches.events` logger once the change has committed (a rolled-back change
logs nothing). With LOG_FORMAT=json every log line of the process is one JSON object
(site_config/log_format.py), the event's fields at its top level; otherwise they read as `key=value` pairs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import transaction

from batches.conf import batches_settings
from batches.models import Batch

logger = logging.getLogger("batches.events")

_FIELDS = ("operation", "scope_key", "created_by__username", "status", "total", "done_count", "failed_count")
_last_progress: dict[int, float] = {}
_progress_lock = threading.Lock()


def emit(event: str, batch_id: int, **fields: Any) -> None:
    """Log `event` for the batch once the current transaction commits (at once outside one)."""
    if not logger.isEnabledFor(logging.INFO):
        return  # nobody reads these lines here: no query for them
    transaction.on_commit(lambda: _log(event, batch_id, fields), robust=True)


def progress(batch_id: int) -> None:
    """A progress line, unless this process logged one for the batch in the last 30 s."""
    now = time.monotonic()
    with _progress_lock:
        if now - _last_progress.get(batch_id, -1e9) < batches_settings.PROGRESS_LOG_SECONDS:
            return
        _last_progress[batch_id] = now
    emit("progress", batch_id)


def _log(event: str, batch_id: int, fields: dict[str, Any]) -> None:
    row = Batch.objects.filter(pk=batch_id).values(*_FIELDS, "started_at", "finished_at", "skipped_count").first()
    record: dict[str, Any] = {"event": f"batch.{event}", "batch_id": batch_id}
    if row is not None:
        record |= {
            "operation": row["operation"],
            "scope": row["scope_key"],
            "user": row["created_by__username"],
            "status": row["status"],
            "total": row["total"],
            "done": row["done_count"],
            "failed": row["failed_count"],
        }
        if row["finished_at"] and row["started_at"]:
            record["skipped"] = row["skipped_count"]
            record["duration_seconds"] = round((row["finished_at"] - row["started_at"]).total_seconds(), 3)
        if row["finished_at"]:
            with _progress_lock:
                _last_progress.pop(batch_id, None)
    record |= fields
    text = " ".join(f"{key}={value}" for key, value in record.items())
    logger.info(text, extra={"event_fields": record})
