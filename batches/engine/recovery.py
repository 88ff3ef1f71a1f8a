"""Recovery of stale batches: those whose lease ran out without a checkpoint.

A dead worker is found within seconds by the worker registry (batches/engine/workers.py), which hands
its chunks over at once. The lease covers what the registry cannot see: a worker alive but stuck,
and lost messages (a flushed or restarted broker, the in-process broker of `make run` after a
restart). The sweep re-enqueues the work of every stale batch; the engine's checkpoints make
duplicate messages harmless. Each recovery doubles the next lease (up to 32 times), so a batch
that is merely waiting behind a long queue is not re-sent every minute; after
BATCHES_MAX_RECOVERIES recoveries without one checkpoint in between, the batch is failed with
the reason, and its scope is free.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from batches.models import Batch

from . import state, waits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    batch_id: int
    action: str  # "replanned", "resumed" or "failed"
    detail: str = ""


def recover_stale(now: datetime | None = None) -> list[Recovered]:
    """Resume every active batch whose lease has expired; safe to run from many workers at once."""
    now = now or timezone.now()
    recovered: list[Recovered] = []
    while True:
        with waits.bookkeeping():  # a chunk a frozen worker has locked: this sweep gives up, the next one tries
            batch = (
                Batch.objects.active()
                .filter(lease_expires_at__lt=now)
                .select_for_update(skip_locked=True)
                .order_by("lease_expires_at")
                .first()
            )
            if batch is None:
                return recovered
            recovered.append(resume(batch, now))


def resume_by_id(batch_id: int, now: datetime) -> Recovered | None:
    """Resume one batch if it is (still) stale; None when it is not."""
    with transaction.atomic():
        batch = Batch.objects.active().filter(pk=batch_id, lease_expires_at__lt=now).select_for_update().first()
        return resume(batch, now) if batch else None


def resume(batch: Batch, now: datetime) -> Recovered:
    """Re-enqueue a stale batch's work; call inside a transaction holding the batch's row lock."""
    action, detail = state.resume(batch, now)
    logger.warning("Batch %s was stale (lease expired %s); %s. %s", batch.pk, batch.lease_expires_at, action, detail)
    return Recovered(batch.pk, action, detail)
