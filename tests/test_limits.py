"""Limits per user: at most N active batches at once and M new batches a minute, so that a script
cannot flood the queue. Joining a scope's running batch is free; a retry is a start."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch, BatchStatus, ItemFailure
from batches.services import StartLimitReached, start_batch
from batches.tokens import create_token

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def alice(make_clerk):
    return make_clerk("alice")


@pytest.fixture
def ledgers(make_ledger):
    return [make_ledger(records=2) for _ in range(4)]


def api_client(user) -> Client:
    _, raw = create_token(user, "tests")
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")


def start(client: Client, ledger):
    body = {"operation": "mark_records", "params": {"ledger_id": ledger.pk}}
    return client.post("/api/batches", json.dumps(body), content_type="application/json")


def end(batch_id: int, **changes) -> None:
    Batch.objects.filter(pk=batch_id).update(status=BatchStatus.CANCELLED, finished_at=timezone.now(), **changes)


@pytest.mark.django_db
def test_past_the_active_limit_the_api_answers_429_with_retry_after(settings, alice, ledgers, make_clerk):
    settings.BATCHES_MAX_ACTIVE_PER_USER, settings.BATCHES_STARTS_PER_MINUTE = 2, 0
    api = api_client(alice)
    first = start(api, ledgers[0]).json()["id"]
    assert start(api, ledgers[1]).status_code == 202

    refused = start(api, ledgers[2])
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "too_many_active_batches" and "2 batches running" in error["message"]
    assert int(refused["Retry-After"]) >= 1
    assert Batch.objects.count() == 2

    assert start(api, ledgers[0]).status_code == 409, "joining a running batch is not a start"
    assert start(api_client(make_clerk("bob")), ledgers[2]).status_code == 202, "the limit is per user"
    end(first)
    assert start(api, ledgers[3]).status_code == 202


@pytest.mark.django_db
def test_past_the_starts_per_minute_the_api_answers_429_until_a_slot_frees(settings, alice, ledgers):
    settings.BATCHES_MAX_ACTIVE_PER_USER, settings.BATCHES_STARTS_PER_MINUTE = 0, 3
    api = api_client(alice)
    for ledger in ledgers[:3]:
        end(start(api, ledger).json()["id"])  # ended at once: only the rate counts

    refused = start(api, ledgers[3])
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_starts"
    assert 1 <= int(refused["Retry-After"]) <= 60

    oldest = Batch.objects.order_by("created_at").first()
    Batch.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(seconds=50))
    assert 9 <= int(start(api, ledgers[3])["Retry-After"]) <= 10, "seconds until the oldest start is a minute old"

    Batch.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    assert start(api, ledgers[3]).status_code == 202
    assert Batch.objects.count() == 4


@pytest.mark.django_db
def test_a_retry_counts_as_a_start(settings, alice, ledgers):
    settings.BATCHES_MAX_ACTIVE_PER_USER, settings.BATCHES_STARTS_PER_MINUTE = 1, 0
    api = api_client(alice)
    first = start(api, ledgers[0]).json()["id"]
    end(first, failed_count=1)
    ItemFailure.objects.create(batch_id=first, item_key="1", item_pk=1, error="boom")

    retried = api.post(f"/api/batches/{first}/retry-failed")
    assert retried.status_code == 202
    refused = start(api, ledgers[1])
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_active_batches"

    end(retried.json()["id"], failed_count=1)
    ItemFailure.objects.create(batch_id=retried.json()["id"], item_key="1", item_pk=1, error="boom")
    start(api, ledgers[1])
    refused = api.post(f"/api/batches/{retried.json()['id']}/retry-failed")
    assert refused.status_code == 429 and refused["Retry-After"]


@pytest.mark.django_db
def test_the_web_ui_says_so_in_the_panel_or_on_a_page_with_429(settings, client, alice, ledgers):
    settings.BATCHES_MAX_ACTIVE_PER_USER, settings.BATCHES_STARTS_PER_MINUTE = 1, 0
    client.force_login(alice)
    url = reverse("batches:start", args=["mark_records"])
    assert client.post(url, {"ledger_id": ledgers[0].pk}, **HTMX).status_code == 202

    htmx = client.post(url, {"ledger_id": ledgers[1].pk}, **HTMX)
    plain = client.post(url, {"ledger_id": ledgers[1].pk})
    for response in (htmx, plain):
        assert response.status_code == 429 and int(response["Retry-After"]) >= 1
        assert "You already have 1 batches running, the most one person may run at once." in response.content.decode()
    assert 'class="batch-panel"' in htmx.content.decode() and "<h1>Could not start</h1>" in plain.content.decode()
    assert f'data-confirm="Mark all 2 records of {ledgers[1].name}?' in htmx.content.decode(), "still asks first"
    assert Batch.objects.count() == 1


def _start_in_own_connection(barrier: threading.Barrier, user, ledger_id: int) -> bool | str:
    try:
        barrier.wait()
        return start_batch(operation="mark_records", data={"ledger_id": ledger_id}, user=user).created
    except StartLimitReached as exc:
        return exc.code
    finally:
        connection.close()  # each thread has its own connection; give it back


PARALLEL = 20


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("most_active", "most_per_minute", "refusal"),
    [(3, 0, "too_many_active_batches"), (0, 3, "too_many_starts")],
)
def test_parallel_starts_on_many_scopes_never_pass_a_limit(
    settings, make_ledger, make_clerk, most_active, most_per_minute, refusal
):
    settings.BATCHES_MAX_ACTIVE_PER_USER, settings.BATCHES_STARTS_PER_MINUTE = most_active, most_per_minute
    user = make_clerk("alice")
    scopes = [make_ledger(records=1).pk for _ in range(PARALLEL)]
    barrier = threading.Barrier(PARALLEL)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = [pool.submit(_start_in_own_connection, barrier, user, ledger_id) for ledger_id in scopes]
        results = [future.result(timeout=120) for future in futures]

    assert results.count(True) == 3 and results.count(refusal) == PARALLEL - 3, results
    assert Batch.objects.count() == 3
