"""The worker side: plan a batch into chunks, run a chunk checkpoint by checkpoint, close the batch.

Every checkpoint commits the items' effects, the chunk cursor, the batch counters and the heartbeat
in one transaction. It reads the chunk (its cursor and its claim's token) without locking it, does
the items, and commits only if the chunk still has that token and that cursor
(state.record_checkpoint): else it rolls back, its items' effects with it. A worker that dies, or is
frozen, or is cut off mid-checkpoint, has all of it rolled back; whoever picks the chunk up next
starts from the committed cursor, without waiting for it. So each item's database effect happens
exactly once, however often a message is delivered, and whoever is in charge of a chunk now.

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
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone

from batches.conf import batches_settings
from batches.models import BatchStatus, Chunk, ItemFailure
from batches.operations import BatchContext, Export, ItemContext, Operation, get_operation

from . import exports, scheduler, state, waits, worker_metrics, workers
from .done_keys import DoneKeys
from .items import batch_items
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
    ROTATE = "rotate"
    FINISHED = "finished"
    GONE = "gone"


class RunnerOutcome(enum.Enum):
    DONE = "done"  # nothing left to claim: this runner ends
    AGAIN = "again"  # yielded its share or spent its budget: send it to the back of the queue
    WAIT = "wait"  # over its share before it began: send it back after a short pause


def plan(batch_id: int) -> list[int]:
    """Plan a queued batch (if it is) and return the ids of its chunks left to run, in order."""
    state.plan(batch_id)
    return list(
        Chunk.objects.filter(batch_id=batch_id, finished_at__isnull=True, batch__status=BatchStatus.RUNNING)
        .order_by("index")
        .values_list("pk", flat=True)
    )


def _deadline(budget_seconds: float | None) -> float:
    """When a message's work must stop: its budget (BATCHES_MESSAGE_SECONDS by default) from now."""
    return time.monotonic() + (batches_settings.MESSAGE_SECONDS if budget_seconds is None else budget_seconds)


def run_runner(batch_id: int, *, budget_seconds: float | None = None) -> RunnerOutcome:
    """One runner message of a batch: claim a chunk, run checkpoints on it while the batch keeps
    its fair share of the pool, then the next chunk, until the budget is spent or none is left."""
    deadline = _deadline(budget_seconds)
    worker_id = workers.me.worker_id
    verdict = scheduler.verdict(batch_id)
    if verdict is scheduler.Verdict.ENOUGH:
        return RunnerOutcome.DONE
    if verdict is not scheduler.Verdict.GO:
        return RunnerOutcome.WAIT
    running = workers.me.running
    while True:
        with running.claiming():
            claim = state.claim_chunk(batch_id, worker_id)
            if claim is not None:
                running.hold(claim.chunk_id)
        if claim is None:
            return RunnerOutcome.DONE
        chunk_id = claim.chunk_id
        try:
            chunk_state = run_chunk(chunk_id, deadline=deadline, worker_id=worker_id, token=claim.token)
            if chunk_state not in (ChunkState.FINISHED, ChunkState.GONE):
                state.release_claim(chunk_id, worker_id, claim.token)
        except BaseException:
            _let_go_on_the_way_out(chunk_id, worker_id, claim.token)
            raise
        finally:
            running.let_go(chunk_id)
        if chunk_state is ChunkState.GONE:
            return RunnerOutcome.DONE
        if chunk_state is ChunkState.MORE:
            return RunnerOutcome.AGAIN


def _let_go_on_the_way_out(chunk_id: int, worker_id: int | None, token: int) -> None:
    """A runner that fails (the database or the broker gone, an operation's error) releases its chunk,
    so that its retry, or another runner, may take it at once. When the database is gone this fails
    too: then the heartbeat finds the claim held with no runner on it and lets go of it then
    (workers.sweep_runners)."""
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        if not connection.in_atomic_block:  # (a test's transaction is its own to end)
            connection.close_if_unusable_or_obsolete()  # a connection the failure broke: a fresh one
        state.release_claim(chunk_id, worker_id, token)
    except Exception as exc:
        logger.warning("Runner of chunk %s could not let go of it (%s); the heartbeat will.", chunk_id, exc)


def run_chunk(
    chunk_id: int,
    *,
    budget_seconds: float | None = None,
    deadline: float | None = None,
    worker_id: int | None = None,
    token: int | None = None,
) -> ChunkState:
    """Run checkpoints on a chunk until it finishes (FINISHED), is taken away or its batch ended
    (GONE), its turn is over while other chunks of its batch wait (ROTATE), or it should go back
    to the queue (MORE: the budget is spent, the worker is stopping, or its batch is over its
    share of the pool while another batch waits)."""
    if deadline is None:
        deadline = _deadline(budget_seconds)
    batch_id = Chunk.objects.filter(pk=chunk_id).values_list("batch_id", flat=True).first()
    turn_ends = time.monotonic() + batches_settings.SLICE_SECONDS
    pace = Pace()
    while True:
        chunk_state = run_checkpoint(chunk_id, pace=pace, worker_id=worker_id, token=token)
        if chunk_state is not ChunkState.MORE:
            return chunk_state
        now = time.monotonic()
        if now >= deadline or stopping.is_set():
            return ChunkState.MORE
        if batch_id is not None:
            verdict = scheduler.verdict(batch_id, holding=chunk_id, turn_taken=now >= turn_ends)
            if verdict is scheduler.Verdict.YIELD:
                return ChunkState.MORE
            if verdict is scheduler.Verdict.ROTATE:
                return ChunkState.ROTATE
        if batches_settings.CHECKPOINT_PAUSE_SECONDS:
            time.sleep(batches_settings.CHECKPOINT_PAUSE_SECONDS)


def run_checkpoint(
    chunk_id: int,
    *,
    clock: Callable[[], float] = time.monotonic,
    pace: Pace | None = None,
    worker_id: int | None = None,
    token: int | None = None,
) -> ChunkState:
    """One checkpoint of a chunk, under the claim `token` (None: whatever claim the chunk has now, as a
    test or a shell runs it; the commit is fenced all the same)."""
    began = clock()
    chunk = Chunk.objects.select_related("batch").filter(pk=chunk_id).first()
    if chunk is None or chunk.finished_at is not None or chunk.batch.status != BatchStatus.RUNNING:
        return ChunkState.GONE
    if (worker_id is not None and chunk.claimed_by_id != worker_id) or token not in (None, chunk.claim_generation):
        return ChunkState.GONE  # handed to another runner: this worker was declared dead
    op = get_operation(chunk.batch.operation)
    began_from = chunk.cursor
    after = chunk.cursor if chunk.cursor is not None else chunk.after_key
    with waits.checkpoint(op.item_time_limit):
        done, failures, exhausted = _process_items(
            op, chunk, clock() + batches_settings.CHECKPOINT_SECONDS, clock, pace or Pace()
        )
        # An export's rows of this checkpoint, written before it commits and recorded with it.
        part = exports.write_part(op, chunk, after) if isinstance(op, Export) and chunk.cursor != after else None
        outcome = state.record_checkpoint(
            chunk,
            op,
            token=chunk.claim_generation,
            began_from=began_from,
            done=done,
            failures=failures,
            exhausted=exhausted,
            now=timezone.now(),
            part=part,
        )
    if outcome is state.Checkpointed.REFUSED:
        logger.warning(
            "Checkpoint of chunk %s refused: the chunk was handed over (or moved on) while it ran; its %s "
            "item(s) rolled back.",
            chunk_id,
            done.count + len(failures),
        )
    if outcome is not state.Checkpointed.COMMITTED:
        return ChunkState.GONE  # rolled back: cancelled or failed meanwhile (its items skipped), or taken
    worker_metrics.observe_checkpoint(op.name, clock() - began)
    workers.me.count_items(done.count + len(failures))
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
) -> tuple[DoneKeys, list[ItemFailure], bool]:
    """Handle items after the cursor until time is up; return (the keys done, failures, chunk exhausted).

    Items come in keyset pages, each a bounded range scan, sized by `pace` so that no item is
    loaded for nothing and even a bulk handler's page ends near the checkpoint's end.
    """
    done = DoneKeys()
    failures: list[ItemFailure] = []
    items = batch_items(chunk.batch, op).filter(pk__lte=chunk.last_key).order_by("pk")
    now = clock()
    while True:
        after = chunk.cursor if chunk.cursor is not None else chunk.after_key
        remaining = items if after is None else items.filter(pk__gt=after)
        size = pace.page_size(ends_at - now)
        page_started = now
        keys, page_failures = _handle_page(op, chunk.batch_id, remaining, size, ends_at, clock)
        if not keys:
            return done, failures, True
        handled = len(keys)
        done.add(keys, {failure.item_pk for failure in page_failures})
        failures += page_failures
        chunk.cursor = keys[-1]
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
) -> tuple[list[Any], list[ItemFailure]]:
    """Handle up to `size` items from `remaining`: return the keys of those handled, the failures.

    A bulk handler takes the whole page in one call, as a queryset over the page's key range, so
    that it can update it in one statement without loading it. If it raises, the page is redone
    item by item so that the failure is pinned to its item.
    """
    if op.handle_many is not None:
        keys = list(remaining.values_list("pk", flat=True)[:size])
        if not keys:
            return [], []
        page = remaining.filter(pk__lte=keys[-1])
        try:
            with transaction.atomic(), time_limit(op.item_time_limit * len(keys)):
                op.handle_many(page, BatchContext(batch_id))
            return keys, []
        except _DATABASE_GONE:
            raise
        except Exception:
            logger.info("Bulk handler of %s failed on %s items; redoing them one by one.", op.name, len(keys))
        items = list(page.all())  # fresh instances: the handler may have changed the ones it loaded
    else:
        items = list(remaining[:size])
    if not items:
        return [], []
    handled, failures = _handle_items(op, batch_id, items, ends_at, clock)
    return [item.pk for item in items[:handled]], failures


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


def describe(exc: BaseException, op: Operation) -> str:
    if isinstance(exc, ItemTimedOut):
        return f"Timed out after {op.item_time_limit:g}s"
    message = str(exc)
    if message and isinstance(exc, op.expected_errors):
        return message  # the operation's own sentence for people
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
