"""Every change of a batch's state, in one place: create, plan, claim, checkpoint, close, end,
resume, hand over. The engine, the services, the recovery sweep and the worker registry call
down into these; nothing here knows who called.

Each change is one conditional UPDATE (or one transaction under a row lock), so that two
workers, a cancel and a sweep can race on a batch and exactly one of them wins each change.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from batches import signals
from batches.conf import batches_settings
from batches.models import ACTIVE_STATUSES, Batch, BatchStatus, Checkpoint, Chunk, ExportPart, ItemFailure, Worker
from batches.operations import Export, Operation, UnknownOperation, get_operation

from . import dispatch, events, outbox, waits
from .done_keys import DoneKeys
from .items import batch_items

logger = logging.getLogger(__name__)


def lease_for(op: Operation) -> timedelta:
    """How long a batch may go without a checkpoint before it counts as stale."""
    return timedelta(seconds=batches_settings.LEASE_SECONDS + op.item_time_limit)


# --- create and plan --------------------------------------------------------------------------


def create(
    op: Operation,
    scope_key: str,
    params: Mapping[str, Any],
    user: AbstractBaseUser | None,
    retry_of: Batch | None,
    *,
    notify: bool = False,
    site_url: str = "",
) -> Batch:
    """Insert a queued batch and, once that commits, ask a worker to plan it."""
    fairness_key, weight = op.fairness(params, user)
    batch = Batch.objects.create(
        operation=op.name,
        scope_key=scope_key,
        scope_label=op.scope_label(params),
        params=dict(params),
        created_by=user,
        retry_of=retry_of,
        fairness_key=fairness_key,
        fairness_weight=weight,
        max_parallel=op.max_parallel,
        lease_expires_at=timezone.now() + lease_for(op),
        notify=notify,
        site_url=site_url[:255],
    )
    transaction.on_commit(lambda: dispatch.plan(batch.pk), robust=True)
    events.emit("created", batch.pk)
    signals.send_on_commit(signals.batch_created, batch.pk)
    return batch


def plan(batch_id: int, planner: int | None = None) -> int:
    """Snapshot a queued batch's items into chunks; return how many runners it should have.

    Safe to run again: a batch that is already running just reports its runners. `planner`, the
    registry's id of the worker planning it, is committed first, on its own: should that worker die
    mid-plan (its transaction rolled back), the registry re-plans the batch at once (`replan_for`).
    """
    if planner is not None:
        Batch.objects.filter(pk=batch_id, status=BatchStatus.QUEUED).update(planning_worker=planner)
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None:
            logger.warning("Batch %s no longer exists; nothing to plan.", batch_id)
            return 0
        if batch.status == BatchStatus.QUEUED:
            _snapshot_chunks(batch, get_operation(batch.operation))
        if batch.status != BatchStatus.RUNNING:
            return 0
        return _runners_for(batch)


def replan_for(worker_id: int) -> list[int]:
    """Send a plan message for every batch still queued whose planning began on this (dead) worker;
    their ids. A plain read, so that it never waits on the dead worker's locks: the new plan waits
    for the batch row itself, and plans it exactly once (or finds it planned)."""
    batch_ids = list(
        Batch.objects.filter(status=BatchStatus.QUEUED, planning_worker=worker_id).values_list("pk", flat=True)
    )

    def send() -> None:
        for batch_id in batch_ids:
            dispatch.plan(batch_id)

    if batch_ids:
        transaction.on_commit(send, robust=True)
        for batch_id in batch_ids:
            events.emit("resumed", batch_id, action="replanned", worker_lost=worker_id)
    return batch_ids


def _runners_for(batch: Batch) -> int:
    """As many runners as chunks left to run, at most the batch's max_parallel."""
    return min(batch.max_parallel, batch.chunks.filter(finished_at__isnull=True).count())


def _snapshot_chunks(batch: Batch, op: Operation) -> None:
    keys = batch_items(batch, op).order_by("pk").values_list("pk", flat=True)
    chunks: list[Chunk] = []
    after = None
    while True:
        page = list((keys if after is None else keys.filter(pk__gt=after))[: op.chunk_size])
        if not page:
            break
        chunks.append(Chunk(batch=batch, index=len(chunks), after_key=after, last_key=page[-1], size=len(page)))
        after = page[-1]
    Chunk.objects.bulk_create(chunks, batch_size=1000)
    now = timezone.now()
    batch.total = sum(chunk.size for chunk in chunks)
    batch.pending_chunks = len(chunks)
    batch.started_at = batch.heartbeat_at = now
    batch.lease_expires_at = now + lease_for(op)
    batch.status = BatchStatus.RUNNING if chunks else BatchStatus.FINISHED
    batch.finished_at = None if chunks else now
    batch.save(
        update_fields=[
            "total",
            "pending_chunks",
            "started_at",
            "heartbeat_at",
            "lease_expires_at",
            "status",
            "finished_at",
        ]
    )
    events.emit("planned", batch.pk, chunks=len(chunks))
    signals.send_on_commit(signals.batch_started, batch.pk)
    if not chunks:
        outbox.owe(batch.pk, now)
        events.emit("finished", batch.pk)
        signals.send_on_commit(signals.batch_finished, batch.pk)
        _file_follows(batch.pk, op)


# --- claims -----------------------------------------------------------------------------------


# A claim is a lease with a fencing token: every claim, release and hand-over bumps the chunk's
# claim_generation, and a runner's checkpoint commits only while the token it claimed with is still
# the chunk's (runner.run_checkpoint). So a hand-over never waits for the runner it takes the chunk
# from: it bumps the token, and that runner's next commit is refused.
_NEXT_TOKEN = F("claim_generation") + 1


class Claim(NamedTuple):
    chunk_id: int
    token: int


def claim_chunk(batch_id: int, worker_id: int | None) -> Claim | None:
    """Claim the batch's unfinished chunk nobody holds that waited longest (never run first, then
    in the order they were last let go), with its new token; None when there is none."""
    with transaction.atomic():
        chunk = (
            Chunk.objects.filter(batch_id=batch_id, finished_at__isnull=True, claimed_by__isnull=True)
            .filter(batch__status=BatchStatus.RUNNING)
            .select_for_update(of=("self",), skip_locked=True)
            .order_by(F("claimed_at").asc(nulls_first=True), "index")
            .only("pk", "claim_generation")
            .first()
        )
        if chunk is None:
            return None
        Chunk.objects.filter(pk=chunk.pk).update(
            claimed_by_id=worker_id, claimed_at=timezone.now(), claim_generation=_NEXT_TOKEN
        )
        return Claim(chunk.pk, chunk.claim_generation + 1)


def release_claim(chunk_id: int, worker_id: int | None, token: int | None = None) -> None:
    """Let go of a chunk; its claimed_at stays, so that the chunk waiting longest is claimed next."""
    mine = Chunk.objects.filter(pk=chunk_id, claimed_by_id=worker_id)
    if token is not None:
        mine = mine.filter(claim_generation=token)
    mine.update(claimed_by=None, claim_generation=_NEXT_TOKEN)


def hand_over(worker_id: int, *, lost: bool, now: datetime | None = None, first: bool = True) -> int:
    """Release every chunk a worker held and send runners for them at once; call in a transaction.

    `lost`: the worker died (rather than stopped): its batches show it until each of these chunks
    has made its next checkpoint. Unclaimed, they are the first to be claimed again. Each claim's
    token is bumped, so that the lost worker, should it wake, has its next checkpoint refused.
    Never waits on the lost worker: a chunk row it has locked (a checkpoint caught committing) is
    left for a later sweep (`hand_over_leftovers`, `first` False: the loss was told the first time).
    """
    now = now or timezone.now()
    held_chunks = list(
        Chunk.objects.filter(claimed_by_id=worker_id)
        .select_for_update(of=("self",), skip_locked=True)
        .values_list("pk", "batch_id")
    )
    if not held_chunks:
        return 0
    Chunk.objects.filter(pk__in=[pk for pk, _ in held_chunks], claimed_by_id=worker_id).update(
        claimed_by=None, claimed_at=None, handed_over_at=now if lost else None, claim_generation=_NEXT_TOKEN
    )
    held = Counter(batch_id for _, batch_id in held_chunks)
    batch_ids = sorted(held)
    if lost and first:
        _record_loss(worker_id, batch_ids, now)
        for batch_id in batch_ids:
            events.emit("worker_lost", batch_id, worker_id=worker_id, chunks=held[batch_id])

    def send() -> None:
        for batch_id in batch_ids:
            dispatch.run(batch_id, count=held[batch_id])

    transaction.on_commit(send, robust=True)
    return held.total()


def hand_over_leftovers(now: datetime | None = None) -> int:
    """Hand over the chunks still claimed by workers that have left or were declared dead: those whose
    rows were locked when they were handed over (skipped then, never waited on). How many."""
    handed = 0
    for worker_id in set(
        Chunk.objects.filter(claimed_by__gone_at__isnull=False).values_list("claimed_by_id", flat=True)
    ):
        with waits.bookkeeping():
            handed += hand_over(worker_id, lost=True, now=now, first=False)
    return handed


def _record_loss(worker_id: int, batch_ids: list[int], now: datetime) -> None:
    """Each batch tells the loss by the time the worker was last heard from (the time its page
    gave while no worker ran), resumes now, and leaves the time it stood still out of its rate."""
    last_heard = Worker.objects.filter(pk=worker_id).values_list("heartbeat_at", flat=True).first() or now
    running = Batch.objects.filter(pk__in=batch_ids, status=BatchStatus.RUNNING)
    for batch_id, last_checkpoint in running.values_list("pk", "heartbeat_at"):
        stood_still = max(0.0, (now - (last_checkpoint or now)).total_seconds())
        Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING).update(
            worker_lost_at=last_heard,
            resumed_at=now,
            processed_at_loss=F("done_count") + F("failed_count") + F("skipped_count"),
            paused_seconds=F("paused_seconds") + stood_still,
        )


def let_go_unrun(worker_id: int, running: Collection[int], claimed_before: datetime) -> int:
    """Release the chunks a live worker holds that none of its runners is running (their messages
    failed before they could let go, e.g. a database cut mid-checkpoint) and send runners for them;
    how many. Only claims made before `claimed_before`, a moment before the worker took the list of
    what it runs. Never waits: a chunk row locked by anyone is left for the next sweep."""
    with waits.bookkeeping():
        orphans = list(
            Chunk.objects.filter(claimed_by_id=worker_id, finished_at__isnull=True, claimed_at__lt=claimed_before)
            .exclude(pk__in=list(running))
            .select_for_update(of=("self",), skip_locked=True)
            .values_list("pk", "batch_id")
        )
        if not orphans:
            return 0
        Chunk.objects.filter(pk__in=[pk for pk, _ in orphans], claimed_by_id=worker_id).update(
            claimed_by=None, claimed_at=None, claim_generation=_NEXT_TOKEN
        )
        held = Counter(batch_id for _, batch_id in orphans)
        for batch_id, chunks in held.items():
            events.emit("resumed", batch_id, action="let_go", chunks=chunks, worker_id=worker_id)

        def send() -> None:
            for batch_id, chunks in held.items():
                dispatch.run(batch_id, count=chunks)

        transaction.on_commit(send, robust=True)
    return len(orphans)


def runnerless(now: datetime, grace: timedelta, alive: QuerySet[Worker]) -> list[Batch]:
    """Running batches no runner is at work on: no claim by a live worker and no checkpoint for
    `grace`, yet a chunk waits for a runner and the pool has a thread free. Their runners were lost
    on the way (a broker that refused the hand-off, a flushed broker), or are late. Each annotated
    with `waiting`: its chunks nobody holds."""
    threads = alive.aggregate(total=Sum("threads"))["total"] or 0
    busy = Chunk.objects.filter(finished_at__isnull=True, claimed_by__in=alive).count()
    if busy >= threads:
        return []  # every thread busy: its runners wait their turn in the queue
    open_chunks = Q(chunks__finished_at__isnull=True)
    return list(
        Batch.objects.filter(status=BatchStatus.RUNNING, heartbeat_at__lt=now - grace)
        .annotate(
            live_claims=Count("chunks", filter=open_chunks & Q(chunks__claimed_by__in=alive)),
            waiting=Count("chunks", filter=open_chunks & Q(chunks__claimed_by__isnull=True)),
        )
        .filter(live_claims=0, waiting__gt=0)
        .only("pk", "operation", "max_parallel", "lease_expires_at")
    )


def top_up(batch: Batch, now: datetime, grace: timedelta) -> int:
    """Take on sending a runnerless batch its runners (`runnerless`): renew its lease, unless it was
    renewed (by a checkpoint or another top-up) within `grace`, so that of the workers sweeping at
    once one sends them, once per `grace`. How many runners to send; 0 when someone else does.
    Never waits on a lock. The caller sends them after this commits: should the broker refuse them,
    the next sweep after `grace` tries again."""
    try:
        lease = lease_for(get_operation(batch.operation))
    except UnknownOperation:
        return 0  # the recovery sweep fails it, with the reason
    with waits.bookkeeping():
        mine = (
            Batch.objects.filter(pk=batch.pk, status=BatchStatus.RUNNING, lease_expires_at__lt=now + lease - grace)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
            .first()
        )
        if mine is None:
            return 0
        Batch.objects.filter(pk=batch.pk).update(lease_expires_at=now + lease)
    runners = min(batch.max_parallel, getattr(batch, "waiting", 1))
    events.emit("resumed", batch.pk, action="topped_up", runners=runners)
    return runners


# --- checkpoints and the end ------------------------------------------------------------------


class Checkpointed(enum.Enum):
    COMMITTED = "committed"
    REFUSED = "refused"  # the claim was handed over (or the chunk moved on) meanwhile: rolled back
    ENDED = "ended"  # the batch was cancelled or failed meanwhile: rolled back, its items skipped


def record_checkpoint(
    chunk: Chunk,
    op: Operation,
    *,
    token: int,
    began_from: int | None,
    done: DoneKeys,
    failures: list[ItemFailure],
    exhausted: bool,
    now: datetime,
    part: ExportPart | None = None,
) -> Checkpointed:
    """Commit a checkpoint's counters, cursor, failures and the keys it did with the items' effects
    (the caller's transaction). Only if the chunk still has the claim's `token` and the cursor the
    checkpoint `began_from`; else, or when the batch ended meanwhile, the whole checkpoint is rolled
    back, its items' effects with it.

    The chunk's row is updated by one UPDATE conditional on both: Postgres takes its row lock
    and, should another transaction have changed the row meanwhile, waits for it to end and checks the
    condition again against what it committed. So of two transactions that began a chunk from the
    same cursor, at most one commits: the other finds the cursor moved (or the token bumped), and its
    items roll back. The cursor only moves forward, so the ranges committed are consecutive and
    disjoint: every item once. The row stays locked only from this UPDATE to the commit.
    """
    chunk.done_count += done.count
    chunk.failed_count += len(failures)
    progress: dict[str, Any] = {
        "cursor": chunk.cursor,
        "done_count": F("done_count") + done.count,
        "failed_count": F("failed_count") + len(failures),
        "handed_over_at": None,
    }
    counters: dict[str, Any] = {
        "done_count": F("done_count") + done.count,
        "failed_count": F("failed_count") + len(failures),
        "heartbeat_at": now,
        "lease_expires_at": now + lease_for(op),
        "recoveries": 0,
    }
    if exhausted:
        progress.update(finished_at=now, claimed_by=None, claimed_at=None)
        # Items that vanished between planning and running are counted, not lost.
        counters["skipped_count"] = F("skipped_count") + max(0, chunk.size - chunk.done_count - chunk.failed_count)
        counters["pending_chunks"] = F("pending_chunks") - 1
    # The batch's row first, then the chunk's: the order an end (batch, then its chunks' claims) takes.
    if not Batch.objects.filter(pk=chunk.batch_id, status=BatchStatus.RUNNING).update(**counters):
        transaction.set_rollback(True)
        return Checkpointed.ENDED
    fenced = Chunk.objects.filter(pk=chunk.pk, claim_generation=token, cursor=began_from, finished_at__isnull=True)
    if not fenced.update(**progress):
        transaction.set_rollback(True)
        return Checkpointed.REFUSED
    ItemFailure.objects.bulk_create(failures)
    if part is not None:
        part.save()
    if done.count:
        _record_done(chunk.batch_id, done, now)
    events.progress(chunk.batch_id)
    if failures and op.max_failures is not None:
        _fail_over_threshold(chunk.batch_id, op.max_failures, now)
    if exhausted and _close_if_complete(chunk.batch_id, now):
        _file_follows(chunk.batch_id, op)
    return Checkpointed.COMMITTED


def _record_done(batch_id: int, done: DoneKeys, now: datetime) -> None:
    """The keys the checkpoint did, for the batch's report (batches.report): one row."""
    Checkpoint.objects.create(
        batch_id=batch_id,
        first_key=done.first,
        last_key=done.last,
        done=done.count,
        done_keys=done.encode(),
        committed_at=now,
    )


def _fail_over_threshold(batch_id: int, max_failures: int, now: datetime) -> None:
    over = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, failed_count__gt=max_failures)
    if over.exists():
        end(
            batch_id,
            BatchStatus.FAILED,
            error=f"Stopped early: more than {max_failures} items failed (the operation's limit).",
            now=now,
        )


def _file_follows(batch_id: int, op: Operation) -> None:
    """A finished export's file is assembled from its parts by a message of its own (and, should
    that be lost, by the sweep)."""
    if isinstance(op, Export):
        transaction.on_commit(lambda: dispatch.assemble(batch_id), robust=True)


def _close_if_complete(batch_id: int, now: datetime) -> bool:
    # Conditional: only the checkpoint that finishes the last chunk matches, and only once.
    closed = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, pending_chunks=0).update(
        status=BatchStatus.FINISHED, finished_at=now
    )
    if closed:
        outbox.owe(batch_id, now)
        logger.info("Batch %s finished.", batch_id)
        events.emit("finished", batch_id)
        signals.send_on_commit(signals.batch_finished, batch_id)
    return bool(closed)


def end(
    batch_id: int,
    status: BatchStatus,
    *,
    error: str = "",
    cancelled_by: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> bool:
    """End an active batch as cancelled or failed; what was not done yet counts as skipped.

    One conditional UPDATE, so concurrent ends (and the last checkpoint) cannot both win.
    """
    changes: dict[str, Any] = {
        "status": status,
        "finished_at": now or timezone.now(),
        "skipped_count": Greatest(Coalesce(F("total"), Value(0)) - F("done_count") - F("failed_count"), Value(0)),
    }
    if error:
        changes["error"] = error
    if cancelled_by is not None:
        changes["cancelled_by"] = cancelled_by
    with transaction.atomic():  # the end and the email it owes commit together
        ended = Batch.objects.filter(pk=batch_id, status__in=ACTIVE_STATUSES).update(**changes)
        if ended:
            outbox.owe(batch_id, changes["finished_at"])
    if ended:
        _free_claims(batch_id)
        logger.info("Batch %s ended as %s. %s", batch_id, status, error)
        events.emit(BatchStatus(status).value, batch_id, **({"error": error} if error else {}))
        ended_signal = signals.batch_cancelled if status == BatchStatus.CANCELLED else signals.batch_failed
        signals.send_on_commit(ended_signal, batch_id)
    return bool(ended)


def _free_claims(batch_id: int) -> None:
    Chunk.objects.filter(batch_id=batch_id, claimed_by__isnull=False).update(
        claimed_by=None, claimed_at=None, claim_generation=_NEXT_TOKEN
    )


# --- recovery ---------------------------------------------------------------------------------


def resume(batch: Batch, now: datetime) -> tuple[str, str]:
    """Re-enqueue a stale batch's work; call inside a transaction holding the batch's row lock.

    Returns (action, detail): "replanned", "resumed" or "failed" and why.
    """
    try:
        op = get_operation(batch.operation)
    except UnknownOperation:
        reason = f"Cannot resume: the operation {batch.operation!r} is not installed any more."
        end(batch.pk, BatchStatus.FAILED, error=reason, now=now)
        return "failed", reason
    if batch.recoveries >= batches_settings.MAX_RECOVERIES:
        reason = f"Cannot resume: no progress after {batch.recoveries} recoveries."
        end(batch.pk, BatchStatus.FAILED, error=reason, now=now)
        return "failed", reason

    # Each recovery doubles the next lease, so a batch merely waiting in a long queue is not re-sent
    # every minute.
    Batch.objects.filter(pk=batch.pk).update(
        lease_expires_at=now + lease_for(op) * min(2**batch.recoveries, 32), recoveries=F("recoveries") + 1
    )
    if batch.status == BatchStatus.QUEUED:
        transaction.on_commit(lambda: dispatch.plan(batch.pk), robust=True)
        events.emit("resumed", batch.pk, action="replanned", recoveries=batch.recoveries + 1)
        return "replanned", ""
    # Whoever held its chunks is not getting on with them: free them for the new runners.
    _free_claims(batch.pk)
    runners = max(1, _runners_for(batch))
    transaction.on_commit(lambda: dispatch.run(batch.pk, count=runners), robust=True)
    events.emit("resumed", batch.pk, action="resumed", runners=runners, recoveries=batch.recoveries + 1)
    return "resumed", ""
