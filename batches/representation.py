"""A batch as data: the one shape the JSON API answers with and the terminal client prints (--json).

Its links name the other places the batch can be reached, each only where that part is installed:
a site without the web UI gets no `html` link, one without the API mounted no API links.
"""

from __future__ import annotations

from typing import Any

from django.urls import NoReverseMatch, reverse

from . import results, selectors
from .engine.status import describe
from .models import Batch


def _link(name: str, pk: int) -> str | None:
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        return None


def batch_body(batch: Batch) -> dict[str, Any]:
    condition = describe(batch)
    progress = selectors.progress(batch, moving=condition.moving)
    return {
        "id": batch.pk,
        "operation": batch.operation,
        "scope": batch.scope_key,
        "scope_label": batch.scope_label,
        "params": batch.params,
        "status": batch.status,
        "active": batch.is_active,
        "total": progress.total,
        "done": progress.done,
        "failed": progress.failed,
        "skipped": progress.skipped,
        "percent": progress.percent,
        "rate": round(progress.rate, 3) if progress.rate else None,
        "eta_seconds": round(progress.eta.total_seconds()) if progress.eta is not None else None,
        "condition": {"code": condition.code, "message": condition.message, "since": condition.since},
        "error": batch.error,
        "created_by": batch.created_by.get_username() if batch.created_by else None,
        "cancelled_by": batch.cancelled_by.get_username() if batch.cancelled_by else None,
        "retry_of": batch.retry_of_id,
        "notify": batch.notify,
        "created_at": batch.created_at,
        "started_at": batch.started_at,
        "heartbeat_at": batch.heartbeat_at,
        "finished_at": batch.finished_at,
        "result": _result(batch),
        "links": {
            "self": _link("api:batch", batch.pk),
            "html": _link("batches:detail", batch.pk),
            "failures": _link("api:batch_failures", batch.pk),
            "report": _link("api:batch_report", batch.pk),
            "cancel": _link("api:batch_cancel", batch.pk) if batch.is_active else None,
            "retry_failed": (
                _link("api:batch_retry_failed", batch.pk) if not batch.is_active and batch.failed_count else None
            ),
        },
    }


def _result(batch: Batch) -> dict[str, Any] | None:
    """The file an export produced (null for any other batch, and until the file is ready)."""
    result = results.result_of(batch) if not batch.is_active else None
    if result is None:
        return None
    return {
        "url": _link("api:batch_file", batch.pk),
        "name": result.download_name,
        "rows": result.rows,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "expires_at": result.expires_at,
        "expired": result.expired,
    }
