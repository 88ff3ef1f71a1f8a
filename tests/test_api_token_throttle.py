"""Repeated unknown API tokens from one address: 429 + Retry-After, counted across processes."""

import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.message import Message
from pathlib import Path

import pytest
from django.test import Client

from batches.api.throttle.models import FailureWindow
from batches.tokens import create_token
from tests.support import web_server

LIMIT = 3
WINDOW_SECONDS = 600
ATTACKER = "203.0.113.7"


@pytest.fixture
def throttle(settings):
    settings.BATCHES_API_BAD_TOKEN_LIMIT = LIMIT
    settings.BATCHES_API_BAD_TOKEN_WINDOW_SECONDS = WINDOW_SECONDS


@pytest.fixture
def good_token(make_user) -> str:
    return create_token(make_user("alice"), "tests")[1]


def bearer(token: str, address: str = ATTACKER) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}", REMOTE_ADDR=address)


@pytest.mark.django_db
@pytest.mark.both_backends
def test_too_many_bad_tokens_get_429_with_retry_after_even_for_a_good_token(throttle, good_token, make_user):
    for _ in range(LIMIT):
        assert bearer("bt_guess").get("/api/batches").status_code == 401

    for token in ("bt_guess", good_token):  # the lock answers before any token is looked up
        response = bearer(token).get("/api/batches")
        assert response.status_code == 429
        assert 0 < int(response["Retry-After"]) <= WINDOW_SECONDS
        assert response.json()["error"]["code"] == "too_many_bad_tokens"
        assert "Try again in" in response.json()["error"]["message"]

    assert bearer(good_token, address="192.0.2.99").get("/api/batches").status_code == 200
    session = Client(REMOTE_ADDR=ATTACKER)  # the web UI's session is not a bearer request
    session.force_login(make_user("bob"))
    assert session.get("/api/batches").status_code == 200


@pytest.mark.django_db
def test_good_tokens_are_not_counted_and_bad_ones_below_the_limit_are_plain_401s(throttle, good_token):
    for _ in range(LIMIT - 1):
        assert bearer("bt_guess").get("/api/batches").status_code == 401
    for _ in range(LIMIT + 1):
        assert bearer(good_token).get("/api/batches").status_code == 200


@pytest.mark.django_db
def test_when_the_window_ends_the_address_may_try_again(throttle, good_token):
    for _ in range(LIMIT):
        bearer("bt_guess").get("/api/batches")
    assert bearer(good_token).get("/api/batches").status_code == 429

    # Travel past the window: the recorded window ages instead of the test sleeping.
    FailureWindow.objects.update(started_at=FailureWindow.objects.get().started_at - timedelta(seconds=WINDOW_SECONDS))

    assert bearer(good_token).get("/api/batches").status_code == 200
    for _ in range(LIMIT - 1):  # a fresh window: the count starts again
        assert bearer("bt_guess").get("/api/batches").status_code == 401


def get_status(url: str, token: str) -> tuple[int, Message]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


@pytest.mark.django_db(transaction=True)
def test_the_count_holds_across_web_server_processes(tmp_path: Path):
    # Each request on a new connection, spread over the processes: a count kept in one process's
    # memory would grant every process the full allowance.
    with web_server(tmp_path / "web.log", workers=2, API_BAD_TOKEN_LIMIT=str(LIMIT)) as base:
        statuses = [get_status(f"{base}/api/batches", "bt_guess")[0] for _ in range(LIMIT * 2)]
        status, headers = get_status(f"{base}/api/batches", "bt_guess")
    assert statuses == [401] * LIMIT + [429] * LIMIT
    assert status == 429 and int(headers["Retry-After"]) > 0


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_bad_tokens_from_a_fresh_address_gets_no_more_lookups_than_the_allowance(tmp_path: Path):
    burst, limit = 60, 20
    barrier = threading.Barrier(burst)

    def one(n: int) -> int:
        barrier.wait()
        return get_status(f"{base}/api/batches", f"bt_guess{n}")[0]

    server = web_server(tmp_path / "web.log", API_BAD_TOKEN_LIMIT=str(limit))
    with server as base, ThreadPoolExecutor(max_workers=burst) as pool:
        statuses = list(pool.map(one, range(burst)))

    # A 401 is a token looked up and found unknown; a 429 was refused before any lookup.
    assert sorted(statuses) == [401] * limit + [429] * (burst - limit), statuses
    assert FailureWindow.objects.get().failures == limit
