"""Idempotency-Key, after the IETF draft "The Idempotency-Key HTTP Header Field".

The first request with a key claims it (a row, committed at once); its response is kept and
replayed to every retry with the same key and the same request. A retry that arrives while the
first is still being processed gets 409; the same key with a different request gets 422. Only
successful responses are kept: after an error the key is released, so a corrected retry works.
Keys belong to the user who sent them and expire after IDEMPOTENCY_KEY_TTL.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from batches.models import IdempotencyRecord

TTL = timedelta(hours=24)
# A claim whose request never completed (its process died) is abandoned after this long.
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)


class Outcome(enum.Enum):
    NEW = "new"
    REPLAY = "replay"
    IN_FLIGHT = "in_flight"
    MISMATCH = "mismatch"


@dataclass(frozen=True)
class Claim:
    outcome: Outcome
    record: IdempotencyRecord


def fingerprint(method: str, path: str, payload: Any) -> str:
    canonical = json.dumps([method, path, payload], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(user: AbstractBaseUser, key: str, request_fingerprint: str) -> Claim:
    for _ in range(5):
        now = timezone.now()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    user=user, key=key, fingerprint=request_fingerprint, expires_at=now + TTL
                )
            return Claim(Outcome.NEW, record)
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is None:
            continue  # released in between: claim again
        abandoned = Q(expires_at__lte=now) | Q(response_status__isnull=True, created_at__lt=now - IN_FLIGHT_TIMEOUT)
        if IdempotencyRecord.objects.filter(abandoned, pk=existing.pk).delete()[0]:
            continue
        if existing.fingerprint != request_fingerprint:
            return Claim(Outcome.MISMATCH, existing)
        if existing.response_status is None:
            return Claim(Outcome.IN_FLIGHT, existing)
        return Claim(Outcome.REPLAY, existing)
    raise RuntimeError(f"Could not claim idempotency key {key!r}.")


def complete(record: IdempotencyRecord, status: int, body: Any, headers: dict[str, str]) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=status, response_body=body, response_headers=headers
    )


def release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, response_status__isnull=True).delete()


def purge_expired() -> int:
    return IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()[0]
