"""What a batch is doing, in words a person can act on, derived from facts only.

`with_liveness` annotates a batch query with what the worker registry and the chunk claims say,
as scalar subqueries of the same SELECT (batches.engine.shown_batch reads one batch with the same
subqueries, prepared), so the poll still costs one query for the batch. `describe` turns the
annotated row into a Condition: the same wherever a batch is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import DateTimeField, IntegerField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from batches import formats
from batches.conf import batches_settings
from batches.models import ACTIVE_STATUSES, Batch, BatchStatus, Chunk, Worker

# A survivor may resume a lost worker's chunks within a fraction of a second; the notice stays at
# least this long, so that a person whose page polls once a second reads it.
LOST_NOTICE = timedelta(seconds=10)
# A running batch's runner lets go of its chunk and sends its successor, which claims it again within
# a fraction of a second when a thread is free. Without a claim for longer than this, nothing is at
# work on it: its runners are lost (a broker cut at the hand-off) or still on their way; the workers'
# sweep sends it runners again after as long (workers.sweep_runners).
UNCLAIMED_GRACE = timedelta(seconds=3)


_BATCH, _CHUNK, _WORKER = (model._meta.db_table for model in (Batch, Chunk, Worker))
# Hand-written, so that a poll pays for neither building nor compiling six ORM subqueries: each is
# a scalar subquery of the one SELECT that loads the batch. A claim counts only while its worker
# is alive: a dead worker's claim, not yet handed over, is no worker at work on the batch.
LIVENESS_SQL = {
    "live_threads": (
        f"SELECT COALESCE(SUM(threads), 0) FROM {_WORKER} WHERE gone_at IS NULL AND heartbeat_at >= %s",
        IntegerField(),
    ),
    "last_worker_seen": (f"SELECT MAX(heartbeat_at) FROM {_WORKER}", DateTimeField()),
    "busy_threads": (
        f"SELECT COUNT(*) FROM {_CHUNK} WHERE claimed_by_id IS NOT NULL AND finished_at IS NULL",
        IntegerField(),
    ),
    "own_claims": (
        f"SELECT COUNT(*) FROM {_CHUNK} c WHERE c.batch_id = {_BATCH}.id AND c.finished_at IS NULL"
        f" AND c.claimed_by_id IN (SELECT id FROM {_WORKER} WHERE gone_at IS NULL AND heartbeat_at >= %s)",
        IntegerField(),
    ),
    "handed_over": (
        f"SELECT COUNT(*) FROM {_CHUNK} c WHERE c.batch_id = {_BATCH}.id"
        " AND c.handed_over_at IS NOT NULL AND c.finished_at IS NULL",
        IntegerField(),
    ),
    "queued_ahead": (
        f"SELECT COUNT(*) FROM {_BATCH} q WHERE q.status = 'queued' AND q.created_at < {_BATCH}.created_at",
        IntegerField(),
    ),
}


def with_liveness(batches: QuerySet[Batch], now: datetime | None = None) -> QuerySet[Batch]:
    """`batches` with what the registry and the claims say of each, in the same query."""
    now = now or timezone.now()
    alive_since = now - timedelta(seconds=batches_settings.WORKER_SILENCE_SECONDS)
    return batches.annotate(
        **{
            name: RawSQL(f"({sql})", [alive_since] if "%s" in sql else [], output_field=field)
            for name, (sql, field) in LIVENESS_SQL.items()
        }
    )


@dataclass(frozen=True)
class Condition:
    code: str  # queued, no_worker, paused, waiting, running, worker_lost, stalled, finished, failed, cancelled
    message: str  # plain words: it is shown, announced and sent by the API as it is
    since: datetime | None = None  # when the condition began, where that is known
    moving: bool = False  # items are being worked: a time left can be told

    @property
    def wants_a_worker(self) -> bool:
        """Nothing runs it until a worker starts (staff are told how to start one)."""
        return self.code in ("no_worker", "paused")


def describe(batch: Batch, now: datetime | None = None) -> Condition:
    """The batch's condition; `batch` should come from `with_liveness` (without it, only the
    facts on the batch row are used, and workers are assumed present)."""
    now = now or timezone.now()
    if batch.status not in ACTIVE_STATUSES:
        return _ended(batch)
    live_threads = getattr(batch, "live_threads", None)
    if live_threads == 0:
        seen = getattr(batch, "last_worker_seen", None)
        since = f" since {_clock(seen)}" if seen else ""
        if batch.started_at:
            return Condition(
                "paused",
                f"Paused: no worker is running{since}. It resumes from item {batch.processed + 1:,} when one starts.",
                seen,
            )
        return Condition("no_worker", f"No worker is running{since}. This batch will start when one does.", seen)
    busy, threads = getattr(batch, "busy_threads", 0), live_threads or 0
    if batch.status == BatchStatus.QUEUED:
        ahead = getattr(batch, "queued_ahead", 0)
        if ahead:
            return Condition("queued", f"Queued: {ahead} batch{'es' if ahead > 1 else ''} ahead of it.")
        if threads and busy >= threads:
            return Condition("queued", f"Queued: every worker thread is busy ({busy} of {threads}).")
        return Condition("queued", "Queued: a worker is picking it up.")
    waiting_for_a_thread = getattr(batch, "handed_over", 0)
    resumed = batch.resumed_at or batch.worker_lost_at
    if batch.worker_lost_at and (waiting_for_a_thread or (resumed and now - resumed < LOST_NOTICE)):
        return Condition(
            "worker_lost",
            f"A worker was lost at {_clock(batch.worker_lost_at)}; resuming from item "
            f"{(batch.processed_at_loss or 0) + 1:,}.",
            batch.worker_lost_at,
            moving=not waiting_for_a_thread,
        )
    last = batch.heartbeat_at or batch.started_at
    quiet = (now - last).total_seconds() if last else 0.0
    stalled = quiet > batches_settings.STALL_SECONDS
    claims = getattr(batch, "own_claims", 1)  # without the liveness figures: assume its runners are at work
    if claims and stalled:
        return Condition(
            "stalled",
            f"Stalled: no progress since {_clock(last)}, though its worker is alive. {_resuming(batch, now)}",
            last,
        )
    if not claims and last and now - last > UNCLAIMED_GRACE:
        if threads and busy >= threads:
            return Condition(
                "waiting", f"Waiting for its turn: every worker thread is busy ({busy} of {threads}).", last
            )
        if stalled:
            # The workers' sweep sends it runners again every few seconds (workers.sweep_runners): no
            # time by which it resumes can be promised, only that it is being seen to.
            return Condition(
                "stalled",
                f"Stalled: no worker has taken up its work since {_clock(last)}. "
                "Its runners are sent again every few seconds until one does.",
                last,
            )
        return Condition(
            "waiting", f"Waiting for the broker: no worker has taken up its work since {_clock(last)}.", last
        )
    return Condition("running", "Running.", batch.started_at, moving=True)


def _resuming(batch: Batch, now: datetime) -> str:
    """When the recovery sweep resumes a batch that has stood still, at the latest: its lease, then a sweep."""
    if batch.lease_expires_at is None:
        return "Resuming shortly."
    by = batch.lease_expires_at + timedelta(seconds=batches_settings.SWEEP_SECONDS)
    return f"Resuming by {_clock(by)} at the latest." if by > now else "Resuming shortly."


def _ended(batch: Batch) -> Condition:
    label = BatchStatus(batch.status).label
    return Condition(batch.status, f"{label}.", batch.finished_at)


def _clock(moment: datetime | None) -> str:
    return formats.clock(moment, seconds=True)
