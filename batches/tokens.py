"""Personal API tokens: created (shown once) and revoked in the admin, checked on each request.

A password change or reset revokes all of the user's tokens (batches.accounts)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone

from batches.models import ApiToken

_TOUCH_EVERY = timedelta(minutes=1)  # write last_used_at at most this often, not on every request


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def assign_secret(token: ApiToken) -> str:
    """Give an unsaved token its secret; the raw value is returned once and never stored."""
    raw = f"bt_{secrets.token_urlsafe(32)}"
    token.prefix, token.key_hash = raw[:10], _hash(raw)
    return raw


def create_token(user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    token = ApiToken(user=user, name=name)
    raw = assign_secret(token)
    token.save()
    return token, raw


def revoke(tokens: QuerySet[ApiToken]) -> int:
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


def revoke_all_of(user: AbstractBaseUser) -> int:
    """Revoke every token of `user`, e.g. when their password changes."""
    return revoke(ApiToken.objects.filter(user=user))


def user_for_token(raw: str) -> AbstractBaseUser | None:
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=_hash(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
