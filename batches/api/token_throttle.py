"""Repeated unknown API tokens from one client address: 429 + Retry-After until its window ends.

Counted per client address (batches/clients.py) in the database (batches/api/throttle), so
the count holds across web server processes. The check, the lookup and the count of one address
run one at a time (batches.api.throttle.windows.one_at_a_time), so that a burst of bad tokens
released at once gets no more lookups than the allowance; good tokens wait their turn for a
moment but are never counted. A locked address is refused *before* its token is looked up, a
good token included: a lock that still told a good token from a bad one would let
guessing go on, and a refused request costs one indexed read. Requests without a bearer token
(the web UI's session) are not affected. The price: a client that shares its address with a
misbehaving one (behind one NAT) waits out the window too; the allowance (BATCHES_API_BAD_TOKEN_LIMIT)
is generous because a well-behaved client stops at its first 401.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.http import HttpRequest, HttpResponse, JsonResponse

from batches.clients import client_address
from batches.conf import batches_settings

from .errors import ApiError, error_response, too_many
from .mount import is_api_request
from .throttle.windows import one_at_a_time, record_failure, seconds_locked

KIND = "api_token"


def _window() -> timedelta:
    return timedelta(seconds=batches_settings.API_BAD_TOKEN_WINDOW_SECONDS)


def record_bad_token(request: HttpRequest) -> None:
    record_failure(KIND, client_address(request), window=_window())


@contextmanager
def lookup_allowed(request: HttpRequest) -> Iterator[None]:
    """Look up (and count) a token inside: raises a 429 ApiError when the address is locked."""
    client = client_address(request)
    with one_at_a_time(KIND, client):
        wait = seconds_locked(KIND, client, limit=batches_settings.API_BAD_TOKEN_LIMIT, window=_window())
        if wait is not None:
            raise _refusal(wait)
        yield


class RefuseLockedClients:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_request(request) and _sends_bearer_token(request):
            wait = seconds_locked(
                KIND, client_address(request), limit=batches_settings.API_BAD_TOKEN_LIMIT, window=_window()
            )
            if wait is not None:
                return _too_many(wait)
        return self.get_response(request)


def _sends_bearer_token(request: HttpRequest) -> bool:
    return request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("bearer")


def _refusal(wait: int) -> ApiError:
    message = f"Too many unknown API tokens from your address. Try again in {wait} seconds."
    return too_many("too_many_bad_tokens", message, wait)


def _too_many(wait: int) -> JsonResponse:
    return error_response(_refusal(wait))
