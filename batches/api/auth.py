"""API clients send a personal token; the same-origin web UI may use its session (with CSRF).

Unknown tokens are counted per client address; too many and the address is refused for a while
(batches/api/token_throttle.py).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import HttpBearer, django_auth

from .token_throttle import record_bad_token
from .tokens import user_for_token


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        user = user_for_token(token)
        if user is None:
            record_bad_token(request)
        return user


API_AUTH = [BearerToken(), django_auth]
