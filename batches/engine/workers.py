"""The registry of worker processes: who is alive, what they run, and who died.

Each `rundramatiq` process registers a `Worker` row as it boots and heartbeats it every
BATCHES_WORKER_HEARTBEAT_SECONDS from a thread of its own (batches/engine/middleware.py), whatever its
items are doing; that thread does nothing else, and nothing that could wait on another worker. The
sweep thread looks for the dead: a worker silent for BATCHES_WORKER_SILENCE_SECONDS, or one on this
host whose process is gone, is declared dead by a conditional UPDATE (one sweeper wins), and the
chunks it held are handed over at once (state.hand_over), their claims' tokens bumped, without
waiting on any lock it holds. A worker stopping on SIGTERM leaves the registry. A worker declared
dead that was only slow (frozen, cut off) finds its heartbeat refused, registers anew, and its old
claims are no longer its own: its checkpoint under way is refused and rolled back, and its runners
stop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version

from django.db import OperationalError
from django.utils import timezone

from batches.conf import batches_settings
from batches.models import Chunk, Worker

from . import dispatch, state, waits
from .status import UNCLAIMED_GRACE

logger = logging.getLogger(__name__)

HOST = socket.gethostname()


def silence() -> timedelta:
    return timedelta(seconds=batches_settings.WORKER_SILENCE_SECONDS)


class RunningChunks:
    """The chunks this process's runners are running now, so that the heartbeat can tell a claim whose
    runner is at work (however slow its items) from one whose runner message failed before it could let
    go (a database cut mid-checkpoint): only this process knows, and it knows without a timing guess.

    A claim is counted from inside `claiming()`: while any runner is between its claim's commit and
    `hold`, `snapshot()` answers None, so a claim is never mistaken for an orphan while being made.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: Counter[int] = Counter()
        self._claiming = 0

    @contextmanager
    def claiming(self) -> Iterator[None]:
        with self._lock:
            self._claiming += 1
        try:
            yield
        finally:
            with self._lock:
                self._claiming -= 1

    def hold(self, chunk_id: int) -> None:
        with self._lock:
            self._held[chunk_id] += 1

    def let_go(self, chunk_id: int) -> None:
        """Once the runner is done with the chunk: after its release or finish committed, or failed."""
        with self._lock:
            self._held[chunk_id] -= 1
            if self._held[chunk_id] <= 0:
                del self._held[chunk_id]

    def snapshot(self) -> frozenset[int] | None:
        """The chunks held now; None while a claim is being made."""
        with self._lock:
            return None if self._claiming else frozenset(self._held)


@dataclass
class ThisProcess:
    """What this process knows of itself as a worker: its row, and the items it has committed."""

    worker_id: int | None = None
    threads: int = 0
    queues: list[str] = field(default_factory=list)
    items_done: int = 0
    running: RunningChunks = field(default_factory=RunningChunks)
    _reported: tuple[int, float] = (0, 0.0)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count_items(self, items: int) -> None:
        with self._lock:
            self.items_done += items


me = ThisProcess()


def register(threads: int, queues: list[str], now: datetime | None = None) -> Worker:
    now = now or timezone.now()
    worker = Worker.objects.create(
        host=HOST,
        pid=os.getpid(),
        threads=threads,
        queues=sorted(queues),
        version=f"dramatiq {version('dramatiq')}",
        started_at=now,
        heartbeat_at=now,
    )
    me.worker_id, me.threads, me.queues = worker.pk, threads, sorted(queues)
    logger.info("Worker %s registered (%s threads).", worker, threads)
    return worker


def heartbeat(now: datetime | None = None, clock: float | None = None) -> bool:
    """Write this process's heartbeat; False when it had been declared dead (it then registers anew)."""
    now = now or timezone.now()
    with me._lock:
        items, (last_items, last_clock) = me.items_done, me._reported
    seconds = (now.timestamp() - last_clock) if last_clock else 0.0
    rate = (items - last_items) / seconds if seconds > 0 else 0.0
    with waits.bookkeeping():
        alive = Worker.objects.filter(pk=me.worker_id, gone_at__isnull=True).update(
            heartbeat_at=now, items_done=items, items_per_second=rate
        )
    me._reported = (items, now.timestamp())
    if not alive:
        logger.warning("Worker #%s was declared dead while alive; registering again.", me.worker_id)
        register(me.threads, me.queues, now)
    return bool(alive)


def leave(reason: str = "stopped") -> None:
    """This process stops: it leaves the registry; whatever it still held is handed over."""
    if me.worker_id is None:
        return
    with waits.bookkeeping():
        if Worker.objects.filter(pk=me.worker_id, gone_at__isnull=True).update(
            gone_at=timezone.now(), gone_reason=reason
        ):
            state.hand_over(me.worker_id, lost=False)
    me.worker_id = None


def sweep_dead(now: datetime | None = None) -> list[int]:
    """Declare dead every worker silent too long or, on this host, whose process is gone; hand over
    what each held. Safe to run from every worker at once: each death is declared once. Never waits
    on the dead: what it has locked is left (its declaration, or a chunk) for the next sweep."""
    now = now or timezone.now()
    suspects = Worker.objects.filter(gone_at__isnull=True).exclude(pk=me.worker_id)
    silent = set(suspects.filter(heartbeat_at__lt=now - silence()).values_list("pk", flat=True))
    vanished = {pk for pk, pid in suspects.filter(host=HOST).values_list("pk", "pid") if not _process_exists(pid)}
    declared: list[int] = []
    for worker_id in sorted(silent | vanished):
        reason = "its process is gone" if worker_id in vanished else "silent for too long"
        try:
            with waits.bookkeeping():
                if not Worker.objects.filter(pk=worker_id, gone_at__isnull=True).update(
                    gone_at=now, gone_reason=reason
                ):
                    continue
                handed = state.hand_over(worker_id, lost=True, now=now)
                replanned = state.replan_for(worker_id)
        except OperationalError as exc:
            if not waits.is_lock_wait(exc):
                raise
            logger.warning("Worker #%s is to be declared dead, but a row is locked (%s); next sweep.", worker_id, exc)
            continue
        logger.warning(
            "Worker #%s declared dead (%s); %s chunk(s) handed over, %s batch(es) sent to be planned again.",
            worker_id,
            reason,
            handed,
            len(replanned),
        )
        declared.append(worker_id)
    leftovers = state.hand_over_leftovers(now)
    if leftovers:
        logger.warning("%s chunk(s) of workers gone were locked as they were handed over; handed over now.", leftovers)
    return declared


def sweep_runners(now: datetime | None = None) -> tuple[int, dict[int, int]]:
    """Runners that are not running, found from facts and sent again: this process lets go of the
    chunks it holds that none of its runners is running (a runner that failed while the database was
    gone could not), and running batches no runner is at work on get runners (those lost on the way:
    a broker that refused a runner's successor, a flushed broker). (Chunks let go, {batch: runners sent}.)
    Run every few seconds by each worker; duplicate runners are harmless (the scheduler ends them, the
    fenced commit keeps items once), a lost one is sent again at the next sweep."""
    now = now or timezone.now()  # before the snapshot: a claim made after it is left alone
    running = me.running.snapshot()
    let_go = 0
    if me.worker_id is not None and running is not None:
        let_go = state.let_go_unrun(me.worker_id, running, claimed_before=now)
    sent: dict[int, int] = {}
    for batch in state.runnerless(now, UNCLAIMED_GRACE, Worker.objects.alive(now, silence())):
        runners = state.top_up(batch, now, UNCLAIMED_GRACE)
        if not runners:
            continue
        try:
            dispatch.run(batch.pk, count=runners)
        except Exception as exc:
            logger.warning(
                "Could not send runners for batch %s (%s); trying again in %ss.", batch.pk, exc, UNCLAIMED_GRACE.seconds
            )
            break  # the broker is away: the next sweep tries again
        logger.warning("Batch %s had no runner at work; %s runner(s) sent.", batch.pk, runners)
        sent[batch.pk] = runners
    if let_go:
        logger.warning("%s chunk(s) of this worker had no runner at work; let go and runners sent.", let_go)
    return let_go, sent


def _process_exists(pid: int) -> bool:
    """Whether a process of this host is running (a zombie, killed but not yet reaped, is not)."""
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    return True


def is_alive(worker: Worker, now: datetime) -> bool:
    return worker.gone_at is None and worker.heartbeat_at >= now - silence()


def prune(older_than: timedelta = timedelta(days=1)) -> int:
    """Forget workers gone for a day (the admin lists the recent ones)."""
    return Worker.objects.filter(gone_at__lt=timezone.now() - older_than).delete()[0]


def running_now(worker_ids: list[int]) -> dict[int, list[Chunk]]:
    """The chunks each worker holds now, with their batches."""
    held: dict[int, list[Chunk]] = {pk: [] for pk in worker_ids}
    for chunk in Chunk.objects.filter(claimed_by__in=worker_ids).select_related("batch").order_by("batch", "index"):
        held[chunk.claimed_by_id].append(chunk)
    return held
