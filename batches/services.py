"""Writes that start from a request: starting a batch behind the guard."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from .models import Batch
from .operations import get_operation

logger = logging.getLogger(__name__)

# Each round either finds the active batch or creates one; a lost race costs one more round.
_GUARD_ROUNDS = 5


@dataclass(frozen=True)
class StartResult:
    batch: Batch
    created: bool


def start_batch(*, operation: str, data: Mapping[str, Any], user: AbstractBaseUser | AnonymousUser) -> StartResult:
    """Start `operation` for the scope `data` names, or return the batch already active there.

    Raises UnknownOperation, ValidationError (bad params) and PermissionDenied.
    """
    op = get_operation(operation)
    params = op.clean_params(data)
    if not op.may_act(user, params):
        raise PermissionDenied
    scope_key = op.scope(params)
    for _ in range(_GUARD_ROUNDS):
        try:
            return _start_or_join(operation, scope_key, op.scope_label(params), params, user)
        except IntegrityError:
            # Another start inserted between our look and our insert; the partial unique
            # constraint refused ours. Look again: we will find theirs.
            logger.info("Start of %s on %s lost a race; joining the winner.", operation, scope_key)
    raise RuntimeError(f"Could not start or find a batch for {operation} on {scope_key}.")


def _start_or_join(
    operation: str,
    scope_key: str,
    scope_label: str,
    params: dict[str, Any],
    user: AbstractBaseUser | AnonymousUser,
) -> StartResult:
    with transaction.atomic():
        active = (
            Batch.objects.active()
            .select_for_update(of=("self",))
            .select_related("created_by")
            .filter(operation=operation, scope_key=scope_key)
            .first()
        )
        if active is not None:
            return StartResult(active, created=False)
        batch = Batch.objects.create(
            operation=operation,
            scope_key=scope_key,
            scope_label=scope_label,
            params=params,
            created_by=user if user.is_authenticated else None,
        )
        transaction.on_commit(lambda: _enqueue_plan(batch.pk), robust=True)
        return StartResult(batch, created=True)


def _enqueue_plan(batch_id: int) -> None:
    from .actors import plan_batch

    plan_batch.send(batch_id)
