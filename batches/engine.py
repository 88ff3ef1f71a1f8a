"""The worker side: plan a batch into chunks, run a chunk checkpoint by checkpoint, close the batch.

Every checkpoint commits the items' effects, the chunk cursor, the batch counters and the heartbeat
in one transaction, under a lock on the chunk row. A worker that dies mid-checkpoint rolls all of it
back; whoever picks the chunk up next starts from the committed cursor. So each item's database
effect happens exactly once, however often a message is delivered.

A checkpoint only commits while its batch is still running: the counters are written by an UPDATE
conditional on that status, and if a cancel (or a failure threshold) got there first, the whole
checkpoint rolls back. That keeps the counters exact when a batch ends under a running worker.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from .models import Batch, BatchStatus, Chunk, ItemFailure
from .operations import BatchContext, ItemContext, Operation, get_operation
from .timeouts import ItemTimedOut, time_limit

logger = logging.getLogger(__name__)

# The most items loaded and handled per page.
_MAX_PAGE = 2000
_DATABASE_GONE = (OperationalError, InterfaceError)

# Set while the worker shuts down (a deploy, SIGTERM): chunks hand over at their next checkpoint
# instead of running out their message budget, so the worker exits within a checkpoint.
stopping = threading.Event()


class ChunkState(enum.Enum):
    MORE = "more"
    FINISHED = "finished"
    GONE = "gone"


def lease_for(op: Operation) -> timedelta:
    """How long a batch may go without a checkpoint before it counts as stale."""
    return timedelta(seconds=settings.BATCHES_LEASE_SECONDS + op.item_time_limit)


def batch_items(batch: Batch, op: Operation) -> QuerySet[Any]:
    items = op.items(batch.params)
    if batch.retry_of_id:
        items = items.filter(pk__in=ItemFailure.objects.filter(batch_id=batch.retry_of_id).values("item_pk"))
    return items


def plan(batch_id: int) -> list[int]:
    """Snapshot a queued batch's items into chunks; return the ids of the chunks left to run.

    Safe to run again: a batch that is already planned just reports its unfinished chunks.
    """
    with transaction.atomic():
        batch = Batch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None:
            logger.warning("Batch %s no longer exists; nothing to plan.", batch_id)
            return []
        if batch.status == BatchStatus.QUEUED:
            _snapshot_chunks(batch, get_operation(batch.operation))
        if batch.status != BatchStatus.RUNNING:
            return []
        return unfinished_chunk_ids(batch)


def unfinished_chunk_ids(batch: Batch) -> list[int]:
    return list(batch.chunks.filter(finished_at__isnull=True).order_by("index").values_list("pk", flat=True))


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


def run_chunk(chunk_id: int, *, budget_seconds: float | None = None) -> ChunkState:
    """Run checkpoints on a chunk until it finishes or the budget is spent (then MORE is returned)."""
    budget = settings.BATCHES_MESSAGE_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    pace = Pace()
    while True:
        state = run_checkpoint(chunk_id, pace=pace)
        if state is not ChunkState.MORE or time.monotonic() >= deadline or stopping.is_set():
            return state
        if settings.BATCHES_CHECKPOINT_PAUSE_SECONDS:
            time.sleep(settings.BATCHES_CHECKPOINT_PAUSE_SECONDS)


def run_checkpoint(
    chunk_id: int, *, clock: Callable[[], float] = time.monotonic, pace: Pace | None = None
) -> ChunkState:
    with transaction.atomic():
        chunk = Chunk.objects.select_for_update(of=("self",)).select_related("batch").filter(pk=chunk_id).first()
        if chunk is None or chunk.finished_at is not None or chunk.batch.status != BatchStatus.RUNNING:
            return ChunkState.GONE
        batch = chunk.batch
        op = get_operation(batch.operation)
        done, failures, exhausted = _process_items(
            op, chunk, clock() + settings.BATCHES_CHECKPOINT_SECONDS, clock, pace or Pace()
        )
        now = timezone.now()
        counters: dict[str, Any] = {
            "done_count": F("done_count") + done,
            "failed_count": F("failed_count") + len(failures),
            "heartbeat_at": now,
            "lease_expires_at": now + lease_for(op),
            "recoveries": 0,
        }
        chunk.done_count += done
        chunk.failed_count += len(failures)
        if exhausted:
            chunk.finished_at = now
            # Items that vanished between planning and running are counted, not lost.
            counters["skipped_count"] = F("skipped_count") + max(0, chunk.size - chunk.done_count - chunk.failed_count)
            counters["pending_chunks"] = F("pending_chunks") - 1
        if not Batch.objects.filter(pk=batch.pk, status=BatchStatus.RUNNING).update(**counters):
            # Cancelled or failed while this checkpoint ran: its items count as skipped, so undo them.
            transaction.set_rollback(True)
            return ChunkState.GONE
        ItemFailure.objects.bulk_create(failures)
        chunk.save(update_fields=["cursor", "done_count", "failed_count", "finished_at"])
        if failures and op.max_failures is not None:
            _fail_over_threshold(batch.pk, op.max_failures, now)
        if exhausted:
            _close_if_complete(batch.pk, now)
        return ChunkState.FINISHED if exhausted else ChunkState.MORE


class Pace:
    """How many items make a page: grown while items are fast, fitted to the time left.

    Carried from one checkpoint of a message to the next, so that once the items' speed is known
    a checkpoint of slow items loads them in one page and a checkpoint of fast ones in full pages.
    """

    __slots__ = ("items", "seconds", "size")

    def __init__(self) -> None:
        self.size = 1
        self.items = 0
        self.seconds = 0.0

    @property
    def seconds_per_item(self) -> float:
        return self.seconds / self.items if self.items else 0.0

    def page_size(self, seconds_left: float) -> int:
        """The items that fit in the time left and one more, no more than the page has grown to.

        The one more saves a page query for the last sliver of a checkpoint; an item-by-item page
        stops when the time is up anyway.
        """
        per_item = self.seconds_per_item
        fits = int(seconds_left / per_item) + 1 if per_item > 0 else _MAX_PAGE
        return min(self.size, fits)

    def record(self, items: int, seconds: float) -> None:
        self.items += items
        self.seconds += seconds
        self.size = min(self.size * 4, _MAX_PAGE)


def _process_items(
    op: Operation, chunk: Chunk, ends_at: float, clock: Callable[[], float], pace: Pace
) -> tuple[int, list[ItemFailure], bool]:
    """Handle items after the cursor until time is up; return (done, failures, chunk exhausted).

    Items come in keyset pages, each a bounded range scan, sized by `pace` so that no item is
    loaded for nothing and even a bulk handler's page ends near the checkpoint's end.
    """
    done = 0
    failures: list[ItemFailure] = []
    items = batch_items(chunk.batch, op).filter(pk__lte=chunk.last_key).order_by("pk")
    now = clock()
    while True:
        after = chunk.cursor if chunk.cursor is not None else chunk.after_key
        remaining = items if after is None else items.filter(pk__gt=after)
        size = pace.page_size(ends_at - now)
        page_started = now
        handled, last_key, page_failures = _handle_page(op, chunk.batch_id, remaining, size, ends_at, clock)
        if not handled:
            return done, failures, True
        done += handled - len(page_failures)
        failures += page_failures
        chunk.cursor = last_key
        now = clock()
        pace.record(handled, now - page_started)
        if handled < size or now + pace.seconds_per_item > ends_at:
            return done, failures, chunk.cursor == chunk.last_key


def _handle_page(
    op: Operation,
    batch_id: int,
    remaining: QuerySet[Any],
    size: int,
    ends_at: float,
    clock: Callable[[], float],
) -> tuple[int, Any, list[ItemFailure]]:
    """Handle up to `size` items from `remaining`: return how many, the last one's key, the failures.

    A bulk handler takes the whole page in one call, as a queryset over the page's key range, so
    that it can update it in one statement without loading it. If it raises, the page is redone
    item by item so that the failure is pinned to its item.
    """
    if op.handle_many is not None:
        keys = list(remaining.values_list("pk", flat=True)[:size])
        if not keys:
            return 0, None, []
        page = remaining.filter(pk__lte=keys[-1])
        try:
            with transaction.atomic(), time_limit(op.item_time_limit * len(keys)):
                op.handle_many(page, BatchContext(batch_id))
            return len(keys), keys[-1], []
        except _DATABASE_GONE:
            raise
        except Exception:
            logger.info("Bulk handler of %s failed on %s items; redoing them one by one.", op.name, len(keys))
        items = list(page.all())  # fresh instances: the handler may have changed the ones it loaded
    else:
        items = list(remaining[:size])
    if not items:
        return 0, None, []
    handled, failures = _handle_items(op, batch_id, items, ends_at, clock)
    return handled, items[handled - 1].pk, failures


def _handle_items(
    op: Operation, batch_id: int, items: list[Any], ends_at: float, clock: Callable[[], float]
) -> tuple[int, list[ItemFailure]]:
    """Handle items one by one under one savepoint for the whole run, not one per item.

    When an item raises, the run rolls back: the items before it are redone (they succeeded)
    and the failing item is recorded with its error, without running it again; then the rest.
    """
    failures: list[ItemFailure] = []
    start = 0
    while start < len(items):
        reached = [start]
        try:
            with transaction.atomic():
                _run(op, batch_id, items, start, ends_at, clock, reached)
            return reached[0], failures
        except _DATABASE_GONE:
            raise  # the database is gone: retry the whole checkpoint, don't blame the item
        except Exception as exc:
            failed = reached[0]
            if failed > start:
                failures += _handle_items(op, batch_id, items[start:failed], math.inf, clock)[1]
            item = items[failed]
            failures.append(
                ItemFailure(batch_id=batch_id, item_key=op.item_key(item), item_pk=item.pk, error=describe(exc, op))
            )
            start = failed + 1
            if clock() >= ends_at:
                break
    return start, failures


def _run(
    op: Operation,
    batch_id: int,
    items: list[Any],
    start: int,
    ends_at: float,
    clock: Callable[[], float],
    reached: list[int],
) -> None:
    """Handle items[start:] until time is up; reached[0] is always the index of the current item."""
    handle, item_key, limit = op.handle, op.item_key, op.item_time_limit
    for index in range(start, len(items)):
        reached[0] = index
        item = items[index]
        with time_limit(limit):
            handle(item, ItemContext(batch_id, item_key(item)))
        if clock() >= ends_at:
            reached[0] = index + 1
            return
    reached[0] = len(items)


def _fail_over_threshold(batch_id: int, max_failures: int, now: datetime) -> None:
    from .services import end_batch

    over = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, failed_count__gt=max_failures)
    if over.exists():
        end_batch(
            batch_id,
            BatchStatus.FAILED,
            error=f"Stopped early: more than {max_failures} items failed (the operation's limit).",
            now=now,
        )


def _close_if_complete(batch_id: int, now: datetime) -> None:
    # Conditional: only the checkpoint that finishes the last chunk matches, and only once.
    closed = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, pending_chunks=0).update(
        status=BatchStatus.FINISHED, finished_at=now
    )
    if closed:
        logger.info("Batch %s finished.", batch_id)


def describe(exc: BaseException, op: Operation) -> str:
    if isinstance(exc, ItemTimedOut):
        return f"Timed out after {op.item_time_limit:g}s"
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
