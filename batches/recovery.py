"""Recovery of stale batches: those whose lease ran out without a checkpoint.

A worker killed mid-run leaves its batch active with an old lease. The broker may redeliver the
message (Dramatiq's Redis broker does, eventually), but a flushed or restarted broker, or the
in-process broker of `make run` after a restart, has lost it. The sweep re-enqueues the work of
every stale batch; the engine's checkpoints make duplicate messages harmless. Each recovery
doubles the next lease (up to 32 times), so a batch that is merely waiting behind a long queue is
not re-sent every minute; after BATCHES_MAX_RECOVERIES recoveries without one checkpoint in
between, the batch is failed with the reason, and its scope is free.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .models import Batch, BatchStatus
from .operations import UnknownOperation, get_operation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    batch_id: int
    action: str  # "replanned", "resumed" or "failed"
    detail: str = ""


def enqueue_plan(batch_id: int) -> None:
    from .actors import plan_batch

    plan_batch.send(batch_id)


def enqueue_chunks(chunk_ids: list[int]) -> None:
    from .actors import run_chunk

    for chunk_id in chunk_ids:
        run_chunk.send(chunk_id)


def recover_stale(now: datetime | None = None) -> list[Recovered]:
    """Resume every active batch whose lease has expired; safe to run from many workers at once."""
    now = now or timezone.now()
    recovered: list[Recovered] = []
    while True:
        with transaction.atomic():
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
    from .engine import lease_for, unfinished_chunk_ids
    from .services import end_batch

    try:
        op = get_operation(batch.operation)
    except UnknownOperation:
        reason = f"Cannot resume: the operation {batch.operation!r} is not installed any more."
        end_batch(batch.pk, BatchStatus.FAILED, error=reason, now=now)
        return Recovered(batch.pk, "failed", reason)
    if batch.recoveries >= settings.BATCHES_MAX_RECOVERIES:
        reason = f"Cannot resume: no progress after {batch.recoveries} recoveries."
        end_batch(batch.pk, BatchStatus.FAILED, error=reason, now=now)
        return Recovered(batch.pk, "failed", reason)

    Batch.objects.filter(pk=batch.pk).update(
        lease_expires_at=now + lease_for(op) * min(2**batch.recoveries, 32), recoveries=F("recoveries") + 1
    )
    if batch.status == BatchStatus.QUEUED:
        transaction.on_commit(lambda: enqueue_plan(batch.pk), robust=True)
        action = "replanned"
    else:
        chunk_ids = unfinished_chunk_ids(batch)
        transaction.on_commit(lambda: enqueue_chunks(chunk_ids), robust=True)
        action = "resumed"
    logger.warning("Batch %s was stale (lease expired %s); %s.", batch.pk, batch.lease_expires_at, action)
    return Recovered(batch.pk, action)
