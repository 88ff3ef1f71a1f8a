"""The worker side: plan a batch into chunks, run a chunk checkpoint by checkpoint, close the batch.

Every checkpoint commits the items' effects, the chunk cursor, the batch counters and the heartbeat
in one transaction, under a lock on the chunk row. A worker that dies mid-checkpoint rolls all of it
back; whoever picks the chunk up next starts from the committed cursor. So each item's database
effect happens exactly once, however often a message is delivered.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from .models import Batch, BatchStatus, Chunk, ItemFailure
from .operations import ItemContext, Operation, get_operation

logger = logging.getLogger(__name__)

# Items fetched per query inside a checkpoint.
_PAGE_SIZE = 100


class ChunkState(enum.Enum):
    MORE = "more"
    FINISHED = "finished"
    GONE = "gone"


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
        return list(batch.chunks.filter(finished_at__isnull=True).order_by("index").values_list("pk", flat=True))


def _snapshot_chunks(batch: Batch, op: Operation) -> None:
    keys = op.items(batch.params).order_by("pk").values_list("pk", flat=True)
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
    batch.status = BatchStatus.RUNNING if chunks else BatchStatus.FINISHED
    batch.finished_at = None if chunks else now
    batch.save(update_fields=["total", "pending_chunks", "started_at", "heartbeat_at", "status", "finished_at"])


def run_chunk(chunk_id: int, *, budget_seconds: float | None = None) -> ChunkState:
    """Run checkpoints on a chunk until it finishes or the budget is spent (then MORE is returned)."""
    budget = settings.BATCHES_MESSAGE_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    while True:
        state = run_checkpoint(chunk_id)
        if state is not ChunkState.MORE or time.monotonic() >= deadline:
            return state


def run_checkpoint(chunk_id: int, *, clock: Callable[[], float] = time.monotonic) -> ChunkState:
    with transaction.atomic():
        chunk = Chunk.objects.select_for_update(of=("self",)).select_related("batch").filter(pk=chunk_id).first()
        if chunk is None or chunk.finished_at is not None:
            return ChunkState.GONE
        batch = chunk.batch
        if batch.status != BatchStatus.RUNNING:
            return ChunkState.GONE
        op = get_operation(batch.operation)
        ends_at = clock() + settings.BATCHES_CHECKPOINT_SECONDS
        done, failures, exhausted = _process_items(op, chunk, ends_at, clock)
        ItemFailure.objects.bulk_create(failures)
        chunk.done_count += done
        chunk.failed_count += len(failures)
        now = timezone.now()
        counters = {
            "done_count": F("done_count") + done,
            "failed_count": F("failed_count") + len(failures),
            "heartbeat_at": now,
        }
        if exhausted:
            chunk.finished_at = now
            # Items that vanished between planning and running are counted, not lost.
            counters["skipped_count"] = F("skipped_count") + max(0, chunk.size - chunk.done_count - chunk.failed_count)
            counters["pending_chunks"] = F("pending_chunks") - 1
        chunk.save(update_fields=["cursor", "done_count", "failed_count", "finished_at"])
        Batch.objects.filter(pk=batch.pk).update(**counters)
        if exhausted:
            _close_if_complete(batch.pk, now)
        return ChunkState.FINISHED if exhausted else ChunkState.MORE


def _process_items(
    op: Operation, chunk: Chunk, ends_at: float, clock: Callable[[], float]
) -> tuple[int, list[ItemFailure], bool]:
    """Handle items after the cursor until time is up; each item in a savepoint of its own."""
    done = 0
    failures: list[ItemFailure] = []
    items = op.items(chunk.batch.params).filter(pk__lte=chunk.last_key).order_by("pk")
    while True:
        after = chunk.cursor if chunk.cursor is not None else chunk.after_key
        page = list((items if after is None else items.filter(pk__gt=after))[:_PAGE_SIZE])
        if not page:
            return done, failures, True
        for item in page:
            key = op.item_key(item)
            try:
                with transaction.atomic():
                    op.handle(item, ItemContext(batch_id=chunk.batch_id, item_key=key))
                done += 1
            except (OperationalError, InterfaceError):
                raise  # the database is gone: retry the whole checkpoint, don't blame the item
            except Exception as exc:
                failures.append(ItemFailure(batch_id=chunk.batch_id, item_key=key, error=_describe(exc)))
            chunk.cursor = item.pk
            if clock() >= ends_at:
                return done, failures, chunk.cursor == chunk.last_key


def _close_if_complete(batch_id: int, now: datetime) -> None:
    # Conditional: only the checkpoint that finishes the last chunk matches, and only once.
    closed = Batch.objects.filter(pk=batch_id, status=BatchStatus.RUNNING, pending_chunks=0).update(
        status=BatchStatus.FINISHED, finished_at=now
    )
    if closed:
        logger.info("Batch %s finished.", batch_id)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
