"""API clients send a personal token; the same-origin web UI may use its session (with CSRF).

Unknown tokens are counted per client address; too many and the address is refused for a while
(batches/api/token_throttle.py). A request with neither a token nor a signed-in session (no
Authorization, or one that is not a bearer token) is answered 401 with WWW-Authenticate, whatever
its method: a CSRF check protects a session, and there is none to protect.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from batches.tokens import user_for_token

from .token_throttle import lookup_allowed, record_bad_token


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        with lookup_allowed(request):
            user = user_for_token(token)
            if user is None:
                record_bad_token(request)
        return user


class SignedInSession(SessionAuth):
    """django-ninja's session auth (CSRF checked), asked only when there is a signed-in user."""

    def __call__(self, request: HttpRequest) -> AbstractBaseUser | None:
        if not request.user.is_authenticated:
            return None  # then 401 (errors.install), not the 403 of a CSRF check
        return super().__call__(request)


API_AUTH = [BearerToken(), SignedInSession()]
