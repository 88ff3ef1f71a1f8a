"""Reads: which batches a user may see, and the progress figures views show."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import report
from .engine import shown_batch
from .engine.status import with_liveness
from .models import Batch, ItemFailure
from .operations import Operation, UnknownOperation, all_operations, get_operation, label_of


def fresh(batch: Batch) -> Batch:
    """The batch read again as views show it, after a change (start, cancel, retry)."""
    return shown_batch.load(batch.pk) or batch


def shown_batches() -> QuerySet[Batch]:
    """Batches as every view shows them: with who started and cancelled them, and what the
    workers are doing about them (batches.engine.status), in one query."""
    return with_liveness(Batch.objects.select_related("created_by", "cancelled_by"))


def may_view(user: AbstractBaseUser | AnonymousUser, batch: Batch) -> bool:
    """Whether `batch` is in `visible_batches(user)`: the same rule, asked of one batch.

    Answered without the database unless the batch's operation filters by a Q and `user` did not
    start it: then it is that list's query for this one batch (an EXISTS)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser or batch.created_by_id == user.pk:
        return True
    admitted = _admitted(user, batch.operation)
    if isinstance(admitted, bool):
        return admitted
    return visible_batches(user).filter(pk=batch.pk).exists()


def visible_batch(user: AbstractBaseUser | AnonymousUser, batch_id: int) -> Batch | None:
    """One query: the batch with who started it and what the workers are doing about it (see
    batches.engine.status), or None when it is missing or not the user's to see."""
    batch = shown_batch.load(batch_id)
    return batch if batch is not None and may_view(user, batch) else None


def visible_batches(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Batch]:
    """The one rule of who sees what, as a query (every list, the API, the CLI and the admin read
    it; `may_view` asks it of one batch): a superuser sees every batch; anyone else signed in the
    batches they started and those their operation's `may_see` admits (batches.operations); a
    batch whose operation is no longer installed, only its starter and superusers.

    Without what the workers are doing (lists that show a condition add `with_liveness`: its
    subqueries would run for every row)."""
    batches = Batch.objects.select_related("created_by", "cancelled_by")
    if not user.is_authenticated:
        return batches.none()
    if user.is_superuser:
        return batches
    rule = Q(created_by=user)
    for op in all_operations():
        admitted = _admitted(user, op.name)
        if admitted is not False:
            rule |= Q(operation=op.name) if admitted is True else Q(operation=op.name) & admitted
    return batches.filter(rule)


def _admitted(user: AbstractBaseUser, operation: str) -> Q | bool:
    """Which batches of `operation` the operation lets `user` see besides their own."""
    try:
        op = get_operation(operation)
    except UnknownOperation:
        return False
    admitted = op.may_see(user)
    if not isinstance(admitted, (bool, Q)):
        raise TypeError(f"{type(op).__name__}.may_see must return True, False or a Q, not {admitted!r}.")
    return admitted


def sees_others_batches(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether `user` may see batches other people started (a superuser, or an operation that
    shows them some of its batches): their list is "Batches", with a filter for their own."""
    if not user.is_authenticated:
        return False
    return bool(user.is_superuser) or any(_admitted(user, op.name) is not False for op in all_operations())


def history(
    user: AbstractBaseUser | AnonymousUser, *, status: str = "", operation: str = "", mine: bool = False
) -> QuerySet[Batch]:
    """The batches `user` may see, newest first, optionally of one status and one operation, and
    only those they started (`mine`)."""
    batches = visible_batches(user)
    if mine:
        batches = batches.filter(created_by=user)
    if status:
        batches = batches.filter(status=status)
    if operation:
        batches = batches.filter(operation=operation)
    return batches.order_by("-created_at", "-id")


def visible_operations(user: AbstractBaseUser | AnonymousUser) -> list[tuple[str, str]]:
    """(name, label) of the operations of the batches `user` may see, for a filter."""
    names = visible_batches(user).order_by("operation").values_list("operation", flat=True).distinct()
    return [(name, operation_label(name)) for name in names]


def operation_label(name: str) -> str:
    return label_of(name)


def operation_nouns(name: str) -> Operation | None:
    """The operation whose words name its items ("tickets"); None when it is no longer installed."""
    try:
        return get_operation(name)
    except UnknownOperation:
        return None


def latest_batch(operation: str, scope_key: str) -> Batch | None:
    """The scope's active batch if there is one, else its most recent."""
    scoped = shown_batches().filter(operation=operation, scope_key=scope_key)
    return scoped.active().first() or scoped.first()


def failures(batch: Batch) -> QuerySet[ItemFailure]:
    """The batch's failed items in the order its items are walked and its report lists them: by
    primary key (97, 582, 1067), not in the order parallel chunks happened to record them."""
    return batch.failures.order_by("item_pk")


@dataclass(frozen=True)
class Progress:
    total: int | None
    done: int
    failed: int
    skipped: int
    percent: int  # of the total, worked (done or failed): skipped items were not worked
    rate: float | None  # items worked per second since the batch started
    eta: timedelta | None
    elapsed: timedelta | None

    @property
    def processed(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def worked(self) -> int:
        return self.done + self.failed

    @property
    def segments(self) -> list[tuple[str, float, float]]:
        """(name, start %, width %) of the done, failed and skipped parts of a bar of the total."""
        whole = max(self.total or 0, self.processed, 1)
        parts, start = [], 0.0
        for name, count in (("done", self.done), ("failed", self.failed), ("skipped", self.skipped)):
            width = round(count * 100 / whole, 2)
            parts.append((name, start, width))
            start = round(start + width, 2)
        return parts


def progress(batch: Batch, now: datetime | None = None, *, moving: bool = True) -> Progress:
    """Derived figures; no query. Skipped items (a cancel) are not counted as worked.

    The rate is over the time the batch was worked: up to its last checkpoint (or its end), less
    the time it stood still for want of a worker, so that neither a pause nor a poll between two
    checkpoints drags it down. A time left is told only while items are `moving` (see
    status.Condition): a countdown while nothing moves would be a lie.
    """
    now = now or timezone.now()
    worked = batch.done_count + batch.failed_count
    total = batch.total
    percent = 100 if total == 0 else min(100, int(worked * 100 / total)) if total else 0
    elapsed = (batch.finished_at or now) - batch.started_at if batch.started_at else None
    rate = None
    if batch.started_at and worked:
        until = batch.finished_at or batch.heartbeat_at or now
        working = (until - batch.started_at).total_seconds() - (batch.paused_seconds or 0.0)
        rate = worked / working if working > 0 else None
    eta = None
    if moving and batch.is_active and rate and total is not None:
        eta = timedelta(seconds=round(max(0, total - batch.processed) / rate))
    return Progress(total, batch.done_count, batch.failed_count, batch.skipped_count, percent, rate, eta, elapsed)


def item_outcomes(batch: Batch, page_size: int = 2000) -> Iterator[tuple[str, str, str, str]]:
    """The batch's report (batches.report): (item key, "done" | "failed" | "skipped", error, the item
    as people name it) for every item of a planned batch, in key order, read page by page so that a
    million items stream in constant memory.

    Raises UnknownOperation at once, before anything streams, when the batch's operation is no
    longer installed (its items cannot be named without it).
    """
    return report.outcomes(batch, get_operation(batch.operation), page_size)


def first_done(batch: Batch, count: int) -> list[tuple[str, str]]:
    """(key, the item as people name it, or "" without its operation) of the first items the batch
    did, from what its checkpoints recorded."""
    try:
        op = get_operation(batch.operation)
    except UnknownOperation:
        op = None
    return report.first_done(batch, op, count)
