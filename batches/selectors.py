"""Reads: which batches a user may see, and the progress figures views show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.utils import timezone

from .models import Batch, ItemFailure
from .operations import UnknownOperation, get_operation


def may_view(user: AbstractBaseUser | AnonymousUser, batch: Batch) -> bool:
    """A user sees a batch they started, or one whose scope its operation lets them act on."""
    if not user.is_authenticated:
        return False
    if batch.created_by_id == user.pk:
        return True
    try:
        return get_operation(batch.operation).may_act(user, batch.params)
    except UnknownOperation:
        return bool(user.is_superuser)


def visible_batch(user: AbstractBaseUser | AnonymousUser, batch_id: int) -> Batch | None:
    """One query: the batch with who started it, or None when it is missing or not the user's to see."""
    batch = Batch.objects.select_related("created_by", "cancelled_by").filter(pk=batch_id).first()
    if batch is None or not may_view(user, batch):
        return None
    return batch


def latest_batch(operation: str, scope_key: str) -> Batch | None:
    """The scope's active batch if there is one, else its most recent."""
    scoped = Batch.objects.select_related("created_by", "cancelled_by").filter(operation=operation, scope_key=scope_key)
    return scoped.active().first() or scoped.first()


def failures(batch: Batch) -> QuerySet[ItemFailure]:
    return batch.failures.order_by("id")


@dataclass(frozen=True)
class Progress:
    total: int | None
    done: int
    failed: int
    skipped: int
    percent: int
    rate: float | None  # items per second since the batch started
    eta: timedelta | None
    elapsed: timedelta | None

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.skipped


def progress(batch: Batch, now: datetime | None = None) -> Progress:
    """Derived figures; no query."""
    now = now or timezone.now()
    processed = batch.processed
    total = batch.total
    percent = 100 if total == 0 else int(processed * 100 / total) if total else 0
    end = batch.finished_at or now
    elapsed = end - batch.started_at if batch.started_at else None
    seconds = elapsed.total_seconds() if elapsed else 0.0
    rate = processed / seconds if seconds > 0 and processed else None
    eta = None
    if batch.is_active and rate and total is not None:
        eta = timedelta(seconds=round(max(0, total - processed) / rate))
    return Progress(total, batch.done_count, batch.failed_count, batch.skipped_count, percent, rate, eta, elapsed)
