"""The guard under a crowd: hundreds of starts at once, over HTTP, while a worker runs batches of
the same users. One new batch, no 5xx, every answer names it."""

from __future__ import annotations

import json
import re
import secrets
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
from django.test import Client

from batches.engine import state
from batches.models import Batch, BatchStatus
from batches.services import start_batch
from batches.tokens import create_token
from tests.support import wait_until, web_server

pytestmark = pytest.mark.django_db(transaction=True)

START_URL = "/batches/start/mark_records/"  # the test operation's start, as the web UI posts it
STARTS = 200
USERS = ("alice", "bob", "carol", "dave")
KINDS = ("html", "htmx", "api", "api-shared-key")
# The server's per-user limits pinned (to their defaults), well above what the test asks of them:
# each user holds one busy batch and creates at most one batch a round, so a refusal (429) would be
# the guard's fault. The API has no other throttle that good tokens meet (only unknown tokens are
# counted), and the sessions are made directly (no login, so the login throttle is not involved).
LIMITS = {"BATCHES_MAX_ACTIVE_PER_USER": "10", "BATCHES_STARTS_PER_MINUTE": "20"}
# Items slow enough that every batch is still running when the crowd has been answered.
WORKER_ENV = {"RECORDS_ITEM_DELAY_MS": "20"}


@dataclass(frozen=True)
class Caller:
    kind: str
    session: str
    csrf: str
    token: str


@dataclass(frozen=True)
class Answer:
    kind: str
    status: int
    batch_id: int | None


def _session_of(user) -> str:
    client = Client()
    client.force_login(user)  # the database sessions the server reads as well
    return client.cookies["sessionid"].value


def _send(request: urllib.request.Request) -> tuple[int, Message, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=120) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def _start(base: str, caller: Caller, ledger_id: int, round_: int) -> Answer:
    if caller.kind in ("html", "htmx"):
        body = f"ledger_id={ledger_id}&csrfmiddlewaretoken={caller.csrf}".encode()
        headers = {
            "Cookie": f"sessionid={caller.session}; csrftoken={caller.csrf}",
            "Content-Type": "application/x-www-form-urlencoded",
            **({"HX-Request": "true"} if caller.kind == "htmx" else {}),
        }
        status, answer_headers, text = _send(urllib.request.Request(base + START_URL, body, headers, method="POST"))
        if caller.kind == "html":
            named = re.fullmatch(r"/batches/(\d+)/(\?live=1)?", answer_headers.get("Location") or "")
        else:
            named = re.search(r"Batch #(\d+)", text)
        return Answer(caller.kind, status, int(named[1]) if named else None)

    body = json.dumps({"operation": "mark_records", "params": {"ledger_id": ledger_id}}).encode()
    headers = {"Authorization": f"Bearer {caller.token}", "Content-Type": "application/json"}
    if caller.kind == "api-shared-key":
        headers["Idempotency-Key"] = f'"crowd-{round_}"'  # a new request each round, not a replay
    for _ in range(600):
        status, _, text = _send(urllib.request.Request(base + "/api/batches", body, headers, method="POST"))
        payload = json.loads(text) if text.startswith("{") else {"text": text}
        if (payload.get("error") or {}).get("code") != "idempotency_key_in_flight":
            break
        # The draft's answer to a retry while the first request is in flight: try again later.
        threading.Event().wait(0.05)
    batch_id = payload.get("id") or (payload.get("batch") or {}).get("id")
    return Answer(caller.kind, status, batch_id)


def _crowd(base: str, callers: list[Caller], ledger_id: int, round_: int) -> list[Answer]:
    barrier = threading.Barrier(len(callers))

    def one(caller: Caller) -> Answer:
        barrier.wait()
        return _start(base, caller, ledger_id, round_)

    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        return list(pool.map(one, callers))


@pytest.fixture
def users(make_clerk) -> list:
    return [make_clerk(name) for name in USERS]


@pytest.fixture
def callers(users) -> list[Caller]:
    per_user = {user.pk: (_session_of(user), secrets.token_hex(16), create_token(user, "crowd")[1]) for user in users}
    return [Caller(KINDS[n % len(KINDS)], *per_user[users[(n // len(KINDS)) % len(users)].pk]) for n in range(STARTS)]


def test_a_crowd_of_starts_on_one_scope_while_a_worker_runs_the_same_users_batches_gets_one_batch_and_no_5xx(
    tmp_path: Path, make_ledger, users, callers, worker_process
):
    crowd_ledger = make_ledger(records=3000, name="Crowd")
    busy = [
        start_batch(operation="mark_records", data={"ledger_id": make_ledger(records=3000).pk}, user=user).batch
        for user in users
    ]
    worker = worker_process(threads=4, **WORKER_ENV)
    worker.wait_ready()
    wait_until(
        lambda: (
            Batch.objects.filter(pk__in=[b.pk for b in busy], status=BatchStatus.RUNNING, done_count__gt=0).count()
            == len(busy)
        ),
        what="the worker to run every user's busy batch",
    )

    with web_server(tmp_path / "web.log", **LIMITS) as base:  # the production sizing: 2 processes x 8 threads
        for round_ in (1, 2):
            before = set(Batch.objects.values_list("pk", flat=True))
            answers = _crowd(base, callers, crowd_ledger.pk, round_)

            new = Batch.objects.exclude(pk__in=before)
            assert new.count() == 1, f"round {round_}: {list(new.values('pk', 'created_by__username'))}"
            batch = new.get()
            failed = [answer for answer in answers if answer.status >= 500]
            assert not failed, f"round {round_}: {len(failed)} answers were 5xx: {failed[:5]}"
            assert {answer.batch_id for answer in answers} == {batch.pk}, f"round {round_}: {answers}"
            assert {answer.kind for answer in answers} == set(KINDS)
            assert all(answer.status in (200, 202, 303, 409) for answer in answers), answers
            # The worker was at work on the same users' batches the whole time.
            assert Batch.objects.filter(pk__in=[b.pk for b in busy], status=BatchStatus.RUNNING).count() == len(busy)

            state.end(batch.pk, BatchStatus.CANCELLED)  # frees the scope for the next round

    assert "DeadlockDetected" not in (tmp_path / "web.log").read_text()
    for batch in busy:
        state.end(batch.pk, BatchStatus.CANCELLED)
