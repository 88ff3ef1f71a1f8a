"""batches.testing: a host's test runs its operation's batch to the end in one line, in-process, through
the real start path and the real runner, with no broker and no worker; inside a test transaction as
well as committing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dramatiq
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F
from django.utils import timezone

from batches import operations
from batches.engine import state
from batches.models import Batch, BatchStatus, Chunk, Worker
from batches.operations import ItemContext, Operation
from batches.services import start_batch
from batches.testing import BatchDidNotEnd, run_batch, run_to_end
from tests.testapp.models import Record

# In a transaction that never commits (Django's TestCase, pytest-django's `db`), and committing.
both_databases = pytest.mark.parametrize(
    "database",
    [
        pytest.param("in a test transaction", marks=pytest.mark.django_db),
        pytest.param("committing", marks=pytest.mark.django_db(transaction=True)),
    ],
)


@pytest.fixture
def no_broker(monkeypatch):
    """Nothing may reach the broker: the helper runs every message itself."""

    def refuse(message: Any, *, delay: int | None = None) -> None:
        raise AssertionError(f"a message went to the broker: {message}")

    monkeypatch.setattr(dramatiq.get_broker(), "enqueue", refuse)


START_URL = "/batches/start/mark_records/"  # the test operation's start, as the web UI posts it


@pytest.fixture
def alice(make_clerk):
    return make_clerk("alice")


class CountOpenRecords(Operation):
    """A host's own operation: item by item, failing the records that are already closed (done)."""

    name = "count_open_records"
    label = "Count open records"
    chunk_size = 100
    max_parallel = 2

    class Params(Operation.Params):
        ledger_id: operations.ObjectId

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"ledger:{params['ledger_id']}"

    def may_act(self, user: Any, params: Mapping[str, Any]) -> bool:
        return user.is_staff

    def items(self, params: Mapping[str, Any]) -> Any:
        return Record.objects.filter(ledger_id=params["ledger_id"])

    def handle(self, item: Record, ctx: ItemContext) -> None:
        if item.done:
            raise LookupError(f"record {item.number} is closed")
        Record.objects.filter(pk=item.pk).update(marks=F("marks") + 1)


@pytest.fixture
def count_open(monkeypatch) -> CountOpenRecords:
    operation = CountOpenRecords()
    monkeypatch.setitem(operations._registry, operation.name, operation)
    return operation


@pytest.mark.both_backends
@both_databases
def test_an_operation_runs_to_the_end_in_one_line(database, no_broker, quick_records, make_ledger, make_clerk):
    ledger = make_ledger(records=1010)

    batch = run_batch("mark_records", {"ledger_id": ledger.pk}, user=make_clerk("alice"))

    assert (batch.status, batch.total, batch.done_count, batch.failed_count) == (BatchStatus.FINISHED, 1010, 866, 144)
    assert Chunk.objects.filter(batch=batch, finished_at__isnull=False).count() == 3  # 500 + 500 + 10
    records = Record.objects.filter(ledger=ledger)
    assert records.filter(marks=1).count() == batch.done_count
    assert not records.filter(marks__gt=1).exists()
    failure = batch.failures.order_by("item_pk").first()
    assert failure.error == "Record 7 is refused."


@pytest.mark.both_backends
@both_databases
def test_a_hosts_operation_shows_the_items_it_failed(database, no_broker, count_open, make_ledger, make_clerk):
    ledger = make_ledger(records=250)
    Record.objects.filter(ledger=ledger, number__in=[3, 150]).update(done=True)

    batch = run_batch(count_open.name, {"ledger_id": ledger.pk}, user=make_clerk("staff", is_staff=True))

    assert (batch.status, batch.done_count, batch.failed_count) == (BatchStatus.FINISHED, 248, 2)
    numbers = dict(Record.objects.filter(ledger=ledger).values_list("pk", "number"))
    failed = [(numbers[f.item_pk], f.error) for f in batch.failures.order_by("item_pk")]
    assert failed == [
        (3, "LookupError: record 3 is closed"),
        (150, "LookupError: record 150 is closed"),
    ]
    assert Record.objects.filter(ledger=ledger, marks=1).count() == 248


@pytest.mark.both_backends
@pytest.mark.django_db
def test_it_starts_as_a_person_would_refused_params_and_users_included(count_open, make_ledger, make_clerk):
    ledger = make_ledger(records=3)
    with pytest.raises(ValidationError) as refused:
        run_batch(count_open.name, {"ledger_id": "3"}, user=make_clerk("staff", is_staff=True))
    assert "Must be a JSON integer" in str(refused.value)
    with pytest.raises(PermissionDenied):
        run_batch(count_open.name, {"ledger_id": ledger.pk}, user=make_clerk("guest"))
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_a_batch_started_through_the_web_page_runs_to_the_end(no_broker, quick_records, alice_client, ledger):
    # In a test transaction, the page's start never reaches the broker: its message waits for a commit.
    assert alice_client.post(START_URL, {"ledger_id": ledger.pk}).status_code == 303
    started = Batch.objects.get()

    batch = run_to_end(started)

    assert (batch.pk, batch.status, batch.done_count, batch.failed_count) == (started.pk, BatchStatus.FINISHED, 18, 2)


@pytest.mark.both_backends
@pytest.mark.django_db
def test_a_start_that_joins_the_scopes_active_batch_runs_that_one(no_broker, quick_records, ledger, alice):
    queued = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).batch

    batch = run_batch("mark_records", {"ledger_id": ledger.pk}, user=alice)

    assert (batch.pk, batch.status, batch.processed) == (queued.pk, BatchStatus.FINISHED, 20)
    assert Batch.objects.count() == 1


@pytest.mark.both_backends
@pytest.mark.django_db
def test_a_batch_a_worker_process_holds_raises_rather_than_hangs(no_broker, quick_records, ledger, alice):
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).batch
    state.plan(batch.pk)
    now = timezone.now()
    worker = Worker.objects.create(host="elsewhere", pid=1, threads=1, started_at=now, heartbeat_at=now)
    Chunk.objects.filter(batch=batch).update(claimed_by=worker, claimed_at=now)

    with pytest.raises(BatchDidNotEnd, match=f"Batch {batch.pk}"):
        run_to_end(batch)
