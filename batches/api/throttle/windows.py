"""Record a failure; ask how long a client must wait. Fixed windows that start at a first failure."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import connection, transaction
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


@contextmanager
def one_at_a_time(kind: str, client: str) -> Iterator[None]:
    """A transaction in which `client` is the only one of its kind: what is checked, looked up
    and counted inside cannot race with the client's other requests, in any process.

    Postgres: a transaction-level advisory lock on the pair (no row, no write). SQLite: its
    BEGIN IMMEDIATE (settings) already lets one writer in at a time.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            key = zlib.crc32(f"{kind}:{client}".encode())  # 32 bits: the two-key lock's second key
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_SPACE, key - 2**31])
        yield


# The advisory locks' first key: the throttle's, apart from any other user of advisory locks.
_LOCK_SPACE = 0x7468  # "th"
