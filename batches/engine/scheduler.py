"""Fair shares of the worker pool.

Every running chunk is held by a runner message. After each checkpoint (and before it claims a
chunk) a runner asks, when every thread of the pool is busy: is my batch over its share while
another is owed threads? Then it releases its chunk and sends itself to the back of the queue,
and the thread goes to the next message. Has it had its turn (BATCHES_SLICE_SECONDS) while
chunks of its own batch wait (more chunks than threads, a dead worker's chunks handed over)?
Then it moves on to the chunk that waited longest. Nobody waiting: it keeps going, so a batch
alone has the pool at no cost.

Shares are handed out thread by thread (water filling): to the fairness key served least
relative to its weight, and within a key to the batch served least; ties go to the batch whose
last checkpoint is oldest, so batches that cannot all run at once take turns. A batch never
gets more than it can use (its unfinished chunks, at most `max_parallel`). This is Hatchet's
GROUP_ROUND_ROBIN and Temporal's fairness keys and weights, computed from Postgres in two
queries, so every runner of every worker agrees without a coordinator.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, FilteredRelation, Q, Sum
from django.utils import timezone

from batches.models import ACTIVE_STATUSES, Batch, BatchStatus, Chunk, Worker

from .workers import silence


@dataclass(frozen=True)
class Demand:
    batch_id: int
    key: str
    weight: float
    claims: int  # chunks being run now
    wants: int  # chunks it could run at once
    max_parallel: int
    served_at: datetime  # its last checkpoint (or creation): who waited longest goes first


def demands() -> list[Demand]:
    """Every active batch's claims and wants, in one query."""
    rows = (
        Batch.objects.filter(status__in=ACTIVE_STATUSES)
        .annotate(open_chunks=FilteredRelation("chunks", condition=Q(chunks__finished_at__isnull=True)))
        .annotate(
            claims=Count("open_chunks", filter=Q(open_chunks__claimed_by__isnull=False)),
            unclaimed=Count("open_chunks", filter=Q(open_chunks__claimed_by__isnull=True)),
        )
        .values_list(
            "pk", "status", "fairness_key", "fairness_weight", "max_parallel", "claims", "unclaimed",
            "heartbeat_at", "created_at",
        )
    )  # fmt: skip
    result = []
    for pk, status, key, weight, max_parallel, claims, unclaimed, heartbeat_at, created_at in rows:
        wants = 1 if status == BatchStatus.QUEUED else min(max_parallel, claims + unclaimed)
        result.append(Demand(pk, key or f"batch:{pk}", weight, claims, wants, max_parallel, heartbeat_at or created_at))
    return result


def pool_threads(now: datetime | None = None) -> int:
    now = now or timezone.now()
    return Worker.objects.alive(now, silence()).aggregate(threads=Sum("threads"))["threads"] or 0


def shares(demand: list[Demand], threads: int) -> dict[int, int]:
    """Threads per batch: whole threads, handed out one at a time to whoever is served least."""
    allotted = {d.batch_id: 0 for d in demand}
    by_key: dict[str, list[Demand]] = {}
    for d in demand:
        by_key.setdefault(d.key, []).append(d)
    key_allotted = dict.fromkeys(by_key, 0)
    weight = {key: max(batches[0].weight, 1e-6) for key, batches in by_key.items()}
    waited = {key: min(d.served_at for d in batches) for key, batches in by_key.items()}
    for _ in range(threads):
        hungry = [key for key, batches in by_key.items() if any(allotted[d.batch_id] < d.wants for d in batches)]
        if not hungry:
            break
        key = min(hungry, key=lambda k: ((key_allotted[k] + 1) / weight[k], waited[k]))
        batch = min(
            (d for d in by_key[key] if allotted[d.batch_id] < d.wants),
            key=lambda d: (allotted[d.batch_id], d.served_at),
        )
        allotted[batch.batch_id] += 1
        key_allotted[key] += 1
    return allotted


class Verdict(enum.Enum):
    GO = "go"  # claim a chunk, or go on with the one held
    ENOUGH = "enough"  # the batch already runs max_parallel chunks: this runner (a duplicate) ends
    YIELD = "yield"  # the batch is over its share and another is owed threads: to the back of the queue
    ROTATE = "rotate"  # its turn is over and chunks of its own batch wait: hand over to the longest waiting


def verdict(batch_id: int, *, holding: int | None = None, turn_taken: bool = False) -> Verdict:
    """What a runner of `batch_id` does next, holding the chunk `holding` or about to claim one.

    Only when every thread of the pool is busy is there anything to decide: a batch over its
    share yields its thread to the queue while another batch is owed threads; a batch whose runner
    has had its turn passes its thread on to its own chunks that wait (more chunks than threads, or
    a dead worker's chunks handed over), without going through the queue.
    """
    threads = pool_threads()
    if not threads:
        return Verdict.GO  # no registry here (a test, a shell): nothing to share
    demand = demands()
    mine = next((d for d in demand if d.batch_id == batch_id), None)
    if mine is not None and holding is None and mine.claims >= mine.max_parallel:
        return Verdict.ENOUGH  # e.g. a dead worker's message, redelivered after its chunks were handed over
    if mine is None or sum(d.claims for d in demand) < threads:
        return Verdict.GO
    allotted = shares(demand, threads)
    share = allotted[batch_id]
    if holding is None:
        return Verdict.GO if mine.claims < share or not _owed(demand, allotted, batch_id) else Verdict.YIELD
    if mine.claims > share and _owed(demand, allotted, batch_id):
        # Only the runners beyond the share yield, those that have held their chunks longest:
        # were all of them to yield at once, the batch would drop below its share.
        held_longest = (
            Chunk.objects.filter(batch_id=batch_id, claimed_by__isnull=False, finished_at__isnull=True)
            .order_by("claimed_at", "pk")
            .values_list("pk", flat=True)[: mine.claims - share]
        )
        if holding in held_longest:
            return Verdict.YIELD
    if turn_taken and mine.wants > mine.claims:
        return Verdict.ROTATE
    return Verdict.GO


def _owed(demand: list[Demand], allotted: dict[int, int], batch_id: int) -> bool:
    return any(d.claims < allotted[d.batch_id] for d in demand if d.batch_id != batch_id)
