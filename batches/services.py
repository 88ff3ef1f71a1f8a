"""Writes: start a batch behind the guard, cancel it, retry its failed items, end it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from . import recovery
from .engine import lease_for
from .models import ACTIVE_STATUSES, Batch, BatchStatus
from .operations import Operation, get_operation
from .selectors import may_view

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

# Each round either finds the active batch or creates one; a lost race costs one more round.
_GUARD_ROUNDS = 5


@dataclass(frozen=True)
class StartResult:
    batch: Batch
    created: bool
    resumed: bool = False  # the scope's active batch was stale and has been re-enqueued


def start_batch(*, operation: str, data: Mapping[str, Any], user: User) -> StartResult:
    """Start `operation` for the scope `data` names, or return the batch already active there.

    Raises UnknownOperation, ValidationError (bad params) and PermissionDenied.
    """
    op = get_operation(operation)
    params = op.clean_params(data)
    if not op.may_act(user, params):
        raise PermissionDenied
    return _guarded_start(op, params, user, retry_of=None)


def retry_failed(batch_id: int, *, user: User) -> StartResult:
    """Start a batch over only the failed items of a finished one, under the same guard.

    Raises Batch.DoesNotExist (not there or not the user's to see) and ValidationError.
    """
    original = Batch.objects.filter(pk=batch_id).first()
    if original is None or not may_view(user, original):
        raise Batch.DoesNotExist
    if original.is_active:
        raise ValidationError("This batch is still running; retry its failed items once it has ended.")
    if not original.failed_count:
        raise ValidationError("This batch has no failed items to retry.")
    op = get_operation(original.operation)
    if not op.may_act(user, original.params):
        raise Batch.DoesNotExist
    return _guarded_start(op, original.params, user, retry_of=original)


def _guarded_start(op: Operation, params: dict[str, Any], user: User, retry_of: Batch | None) -> StartResult:
    scope_key = op.scope(params)
    for _ in range(_GUARD_ROUNDS):
        try:
            return _start_or_join(op, scope_key, params, user, retry_of)
        except IntegrityError:
            # Another start inserted between our look and our insert; the partial unique
            # constraint refused ours. Look again: we will find theirs.
            logger.info("Start of %s on %s lost a race; joining the winner.", op.name, scope_key)
    raise RuntimeError(f"Could not start or find a batch for {op.name} on {scope_key}.")


def _start_or_join(
    op: Operation, scope_key: str, params: dict[str, Any], user: User, retry_of: Batch | None
) -> StartResult:
    with transaction.atomic():
        active = (
            Batch.objects.active()
            .select_for_update(of=("self",))
            .select_related("created_by")
            .filter(operation=op.name, scope_key=scope_key)
            .first()
        )
        if active is not None:
            now = timezone.now()
            if active.lease_expires_at and active.lease_expires_at < now:
                # Its worker died: pick the work up where it stopped rather than start it over.
                recovery.resume(active, now)
                return StartResult(active, created=False, resumed=True)
            return StartResult(active, created=False)
        batch = Batch.objects.create(
            operation=op.name,
            scope_key=scope_key,
            scope_label=op.scope_label(params),
            params=params,
            created_by=user if user.is_authenticated else None,
            retry_of=retry_of,
            lease_expires_at=timezone.now() + lease_for(op),
        )
        transaction.on_commit(lambda: recovery.enqueue_plan(batch.pk), robust=True)
        return StartResult(batch, created=True)


def cancel_batch(batch_id: int, *, user: User) -> tuple[Batch, bool]:
    """Cancel an active batch: it ends at once (the scope is free) and its worker stops at its
    next checkpoint, whose work is rolled back. Returns the batch and whether this call ended it.

    Raises Batch.DoesNotExist when it is not there or not the user's to see.
    """
    batch = Batch.objects.select_related("created_by").filter(pk=batch_id).first()
    if batch is None or not may_view(user, batch):
        raise Batch.DoesNotExist
    ended = end_batch(batch_id, BatchStatus.CANCELLED, cancelled_by=user if user.is_authenticated else None)
    batch.refresh_from_db()
    return batch, ended


def end_batch(
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
    ended = Batch.objects.filter(pk=batch_id, status__in=ACTIVE_STATUSES).update(**changes)
    if ended:
        logger.info("Batch %s ended as %s. %s", batch_id, status, error)
    return bool(ended)
