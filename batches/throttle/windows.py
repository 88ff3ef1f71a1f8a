"""Record a failure; ask how long a client must wait. Fixed windows that start at a first failure."""

from __future__ import annotations

import math
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import FailureWindow


def record_failure(kind: str, client: str, *, window: timedelta) -> int:
    """Count one failure of `kind` from `client`; returns the failures in its current window."""
    now = timezone.now()
    with transaction.atomic():
        # The row lock serialises concurrent failures from one client across processes.
        row, created = FailureWindow.objects.select_for_update().get_or_create(
            kind=kind, client=client, defaults={"started_at": now, "failures": 1}
        )
        if not created:
            if now - row.started_at >= window:
                row.started_at, row.failures = now, 1
            else:
                row.failures += 1
            row.save(update_fields=["started_at", "failures"])
    FailureWindow.objects.filter(kind=kind, started_at__lte=now - window).delete()  # windows long over
    return row.failures


def seconds_locked(kind: str, client: str, *, limit: int, window: timedelta) -> int | None:
    """Seconds until `client` may try `kind` again, or None when it is not locked."""
    now = timezone.now()
    started_at = (
        FailureWindow.objects.filter(kind=kind, client=client, failures__gte=limit, started_at__gt=now - window)
        .values_list("started_at", flat=True)
        .first()
    )
    if started_at is None:
        return None
    return max(1, math.ceil((started_at + window - now).total_seconds()))
