"""Writes: start a batch behind the guard, cancel it, retry its failed items, end it."""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from .conf import batches_settings
from .engine import recovery, state
from .models import Batch, BatchStatus
from .operations import Operation, UnknownOperation, get_operation
from .selectors import may_view, progress

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

# Each round either finds the active batch or creates one; a lost race costs one more round.
_GUARD_ROUNDS = 5
# A deadlock or serialization failure the database still reports is retried this often, after a
# short random pause that grows each time (so that the transactions it chose between part ways).
_CONFLICT_RETRIES = 8
_CONFLICT_PAUSE_SECONDS = 0.02
# SQLSTATEs of a transaction the database rolled back to break a conflict: safe to run again.
_RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


@dataclass(frozen=True)
class StartResult:
    batch: Batch
    created: bool
    resumed: bool = False  # the scope's active batch was stale and has been re-enqueued


class StartLimitReached(ValidationError):
    """A per-user limit refused a new batch (HTTP 429). `retry_after`: seconds until a slot frees.

    A ValidationError, so that every caller that shows why a start was refused (the admin's
    retry action among them) shows this message too.
    """

    def __init__(self, message: str, *, code: str, retry_after: int) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


_MINUTE = timedelta(minutes=1)
# Retry-After when no running batch of the user can tell when it will end (none has a rate yet).
_UNKNOWN_END_SECONDS = 30


def start_batch(
    *,
    operation: str,
    data: Mapping[str, Any],
    user: User,
    from_form: bool = False,
    notify: bool | None = None,
    site_url: str = "",
) -> StartResult:
    """Start `operation` for the scope `data` names, or return the batch already active there.

    `notify`: email the user when the batch ends (None: as the operation's `notify_by_default`
    says); `site_url`: the site's address as the request gave it, for the email's links. Both are
    the new batch's: joining a running batch changes neither.

    `data` is checked in this order: its shape (the operation's Params; `from_form`: the values
    are a form's strings), the user's right, then the operation's own checks, so that a user
    who may not act learns nothing about which scopes exist.

    Raises UnknownOperation, ValidationError (bad params), PermissionDenied, StartLimitReached.
    """
    op = get_operation(operation)
    params = op.parse_params(data, from_form=from_form)
    if not op.may_act(user, params):
        raise PermissionDenied
    params = op.clean_params(params)
    wants_email = op.notify_by_default if notify is None else notify
    return _guarded_start(op, params, user, retry_of=None, notify=wants_email, site_url=site_url)


def retry_failed(batch_id: int, *, user: User, notify: bool | None = None, site_url: str = "") -> StartResult:
    """Start a batch over only the failed items of a finished one, under the same guard.

    `notify` and `site_url` as for start_batch; a retry asks for the email when the batch it
    retries did (None), and links to the site the retry was asked from, else the original's.

    Raises Batch.DoesNotExist (not there or not the user's to see), and ValidationError with a
    message for people and a code for programs: batch_active, no_failed_items,
    operation_not_installed, params_invalid (its params or scope are no longer valid), or the
    StartLimitReached codes.
    """
    original = Batch.objects.filter(pk=batch_id).first()
    if original is None or not may_view(user, original):
        raise Batch.DoesNotExist
    if original.is_active:
        raise ValidationError(
            "This batch is still running; retry its failed items once it has ended.", code="batch_active"
        )
    if not original.failed_count:
        raise ValidationError("This batch has no failed items to retry.", code="no_failed_items")
    try:
        op = get_operation(original.operation)
    except UnknownOperation:
        raise ValidationError(
            f"Cannot retry: the operation {original.operation!r} of this batch is no longer installed.",
            code="operation_not_installed",
        ) from None
    try:
        params = op.parse_params(original.params)
    except ValidationError as exc:
        raise ValidationError(
            f"Cannot retry: this batch's parameters no longer fit the operation ({_describe(exc)}).",
            code="params_invalid",
        ) from None
    if not op.may_act(user, params):
        raise Batch.DoesNotExist
    try:
        params = op.clean_params(params)
    except ValidationError as exc:
        raise ValidationError(f"Cannot retry. {_describe(exc)}", code="params_invalid") from None
    wants_email = original.notify if notify is None else notify
    return _guarded_start(
        op, params, user, retry_of=original, notify=wants_email, site_url=site_url or original.site_url
    )


def _describe(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _guarded_start(
    op: Operation,
    params: dict[str, Any],
    user: User,
    retry_of: Batch | None,
    *,
    notify: bool = False,
    site_url: str = "",
) -> StartResult:
    scope_key = op.scope(params)
    races = conflicts = 0
    # Inside a caller's transaction a retry would run under the locks that caused the conflict.
    outer_transaction = connection.in_atomic_block
    while True:
        try:
            return _start_or_join(op, scope_key, params, user, retry_of, notify=notify, site_url=site_url)
        except IntegrityError:
            # Another start inserted between our look and our insert; the partial unique
            # constraint refused ours. Look again: we will find theirs.
            races += 1
            if races >= _GUARD_ROUNDS:
                raise RuntimeError(f"Could not start or find a batch for {op.name} on {scope_key}.") from None
            logger.info("Start of %s on %s lost a race; joining the winner.", op.name, scope_key)
        except OperationalError as exc:
            # The whole transaction was rolled back, so running it again is safe: a person who
            # clicks Start while others do must get the batch, never an error page.
            conflicts += 1
            if _sqlstate(exc) not in _RETRYABLE_SQLSTATES or conflicts > _CONFLICT_RETRIES or outer_transaction:
                raise
            logger.warning("Start of %s on %s: %s; trying again.", op.name, scope_key, str(exc).splitlines()[0])
            time.sleep(random.uniform(0.5, 1.5) * _CONFLICT_PAUSE_SECONDS * conflicts)


def _sqlstate(exc: OperationalError) -> str | None:
    cause = exc.__cause__
    return getattr(cause, "pgcode", None) or getattr(getattr(cause, "diag", None), "sqlstate", None)


def _start_or_join(
    op: Operation,
    scope_key: str,
    params: dict[str, Any],
    user: User,
    retry_of: Batch | None,
    *,
    notify: bool,
    site_url: str,
) -> StartResult:
    with transaction.atomic():
        if user.is_authenticated:
            # One start of a user at a time (SQLite's BEGIN IMMEDIATE already serialises them
            # all), so that the limits below count every batch the user's other starts created.
            # Taken first, before any batch row: always the same lock order. FOR NO KEY UPDATE,
            # not FOR UPDATE: it must not conflict with the FOR KEY SHARE that every insert or
            # update naming the user takes (a batch's created_by or cancelled_by, a token, an
            # Idempotency-Key), or a transaction holding a batch row could wait on it and we on them.
            users = get_user_model()._default_manager.filter(pk=user.pk)
            no_key = connection.features.has_select_for_no_key_update
            users.select_for_update(no_key=no_key).values_list("pk").first()
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
        if user.is_authenticated:
            _check_limits(user, timezone.now())
        starter = user if user.is_authenticated else None
        batch = state.create(op, scope_key, params, starter, retry_of, notify=notify, site_url=site_url)
        return StartResult(batch, created=True)


def _check_limits(user: AbstractBaseUser, now: datetime) -> None:
    """Refuse a new batch beyond the user's limits (0 turns a limit off). Joining a scope's active
    batch never gets here: only new batches count, retries included."""
    most_active = batches_settings.MAX_ACTIVE_PER_USER
    if most_active:
        active = list(Batch.objects.active().filter(created_by=user)[:most_active])
        if len(active) >= most_active:
            ends = [p.eta.total_seconds() for p in map(progress, active) if p.eta is not None]
            raise StartLimitReached(
                f"You already have {most_active} batches running, the most one person may run at once. "
                "Start this one when one of them has ended (or cancel one).",
                code="too_many_active_batches",
                retry_after=max(1, math.ceil(min(ends))) if ends else _UNKNOWN_END_SECONDS,
            )
    most_per_minute = batches_settings.STARTS_PER_MINUTE
    if most_per_minute:
        recent = list(
            Batch.objects.filter(created_by=user, created_at__gt=now - _MINUTE)
            .order_by("-created_at")
            .values_list("created_at", flat=True)[:most_per_minute]
        )
        if len(recent) >= most_per_minute:
            wait = max(1, math.ceil((recent[-1] + _MINUTE - now).total_seconds()))
            raise StartLimitReached(
                f"You have started {most_per_minute} batches in the last minute, the most one person may. "
                f"Try again in {wait} second{'s' if wait != 1 else ''}.",
                code="too_many_starts",
                retry_after=wait,
            )


def cancel_batch(batch_id: int, *, user: User) -> tuple[Batch, bool]:
    """Cancel an active batch: it ends at once (the scope is free) and its worker stops at its
    next checkpoint, whose work is rolled back. Returns the batch and whether this call ended it.

    Raises Batch.DoesNotExist when it is not there or not the user's to see.
    """
    batch = Batch.objects.select_related("created_by").filter(pk=batch_id).first()
    if batch is None or not may_view(user, batch):
        raise Batch.DoesNotExist
    ended = state.end(batch_id, BatchStatus.CANCELLED, cancelled_by=user if user.is_authenticated else None)
    batch.refresh_from_db()
    return batch, ended
