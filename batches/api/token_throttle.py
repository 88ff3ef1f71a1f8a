"""Repeated unknown API tokens from one client address: 429 + Retry-After until its window ends.

Counted per client address (batches/client_address.py) in the database (batches/throttle), so
the count holds across web server processes. A locked address is refused *before* its token is
looked up, a good token included: a lock that still told a good token from a bad one would let
guessing go on, and a refused request costs one indexed read. Requests without a bearer token
(the web UI's session) are not affected. The price: a client that shares its address with a
misbehaving one (behind one NAT) waits out the window too; the allowance (API_BAD_TOKEN_LIMIT)
is generous because a well-behaved client stops at its first 401.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from batches.api.errors import error_response, too_many
from batches.client_address import client_address
from batches.throttle.windows import record_failure, seconds_locked

KIND = "api_token"


def _window() -> timedelta:
    return timedelta(seconds=settings.API_BAD_TOKEN_WINDOW_SECONDS)


def record_bad_token(request: HttpRequest) -> None:
    record_failure(KIND, client_address(request), window=_window())


class RefuseLockedClients:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/") and _sends_bearer_token(request):
            wait = seconds_locked(KIND, client_address(request), limit=settings.API_BAD_TOKEN_LIMIT, window=_window())
            if wait is not None:
                return _too_many(wait)
        return self.get_response(request)


def _sends_bearer_token(request: HttpRequest) -> bool:
    return request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("bearer")


def _too_many(wait: int) -> JsonResponse:
    message = f"Too many unknown API tokens from your address. Try again in {wait} seconds."
    return error_response(too_many("too_many_bad_tokens", message, wait))
