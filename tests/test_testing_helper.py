"""batches.testing: a host's test runs its operation's batch to the end in one line, in-process, through
the real start path and the real runner, with no broker and no worker; inside a test transaction as
well as committing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dramatiq
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from batches import operations
from batches.engine import state
from batches.models import Batch, BatchStatus, Chunk, Worker
from batches.operations import ItemContext, Operation
from batches.services import start_batch
from batches.testing import BatchDidNotEnd, run_batch, run_to_end
from site_config.demo.models import Ticket
from tests.support import START_URL

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


@pytest.fixture
def fast_demo(settings):
    settings.DEMO_ITEM_DELAY_MS = 0
    settings.DEMO_FAIL_EVERY = 7


class MarkTicketsPaid(Operation):
    """A host's own operation: item by item, failing the tickets of guests it does not know."""

    name = "mark_tickets_paid"
    label = "Mark tickets paid"
    chunk_size = 100
    max_parallel = 2

    class Params(Operation.Params):
        event_id: operations.ObjectId

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"event:{params['event_id']}"

    def may_act(self, user: Any, params: Mapping[str, Any]) -> bool:
        return user.is_staff

    def items(self, params: Mapping[str, Any]) -> Any:
        return Ticket.objects.filter(event_id=params["event_id"])

    def handle(self, item: Ticket, ctx: ItemContext) -> None:
        if item.holder.startswith("Unknown"):
            raise LookupError(f"no guest named {item.holder!r}")
        Ticket.objects.filter(pk=item.pk).update(code="paid")


@pytest.fixture
def mark_paid(monkeypatch) -> MarkTicketsPaid:
    operation = MarkTicketsPaid()
    monkeypatch.setitem(operations._registry, operation.name, operation)
    return operation


@pytest.mark.both_backends
@both_databases
def test_the_demo_operation_runs_to_the_end_in_one_line(database, no_broker, fast_demo, make_event, make_user):
    event = make_event(tickets=1010)

    batch = run_batch("reissue_tickets", {"event_id": event.pk}, user=make_user("alice"))

    assert (batch.status, batch.total, batch.done_count, batch.failed_count) == (BatchStatus.FINISHED, 1010, 866, 144)
    assert Chunk.objects.filter(batch=batch, finished_at__isnull=False).count() == 3  # 500 + 500 + 10
    tickets = Ticket.objects.filter(event=event)
    assert tickets.filter(reissue_count=1).count() == batch.done_count
    assert not tickets.filter(reissue_count__gt=1).exists()
    failure = batch.failures.order_by("item_pk").first()
    assert failure.error == "Seat 7 is blocked by the venue."


@pytest.mark.both_backends
@both_databases
def test_a_hosts_operation_shows_the_items_it_failed(database, no_broker, mark_paid, make_event, make_user):
    event = make_event(tickets=250)
    Ticket.objects.filter(event=event, number__in=[3, 150]).update(holder="Unknown guest")

    batch = run_batch(mark_paid.name, {"event_id": event.pk}, user=make_user("staff", is_staff=True))

    assert (batch.status, batch.done_count, batch.failed_count) == (BatchStatus.FINISHED, 248, 2)
    seats = dict(Ticket.objects.filter(event=event).values_list("pk", "number"))
    failed = [(seats[f.item_pk], f.error) for f in batch.failures.order_by("item_pk")]
    assert failed == [
        (3, "LookupError: no guest named 'Unknown guest'"),
        (150, "LookupError: no guest named 'Unknown guest'"),
    ]
    assert Ticket.objects.filter(event=event, code="paid").count() == 248


@pytest.mark.both_backends
@pytest.mark.django_db
def test_it_starts_as_a_person_would_refused_params_and_users_included(mark_paid, make_event, make_user):
    event = make_event(tickets=3)
    with pytest.raises(ValidationError) as refused:
        run_batch(mark_paid.name, {"event_id": "3"}, user=make_user("staff", is_staff=True))
    assert "Must be a JSON integer" in str(refused.value)
    with pytest.raises(PermissionDenied):
        run_batch(mark_paid.name, {"event_id": event.pk}, user=make_user("guest"))
    assert not Batch.objects.exists()


@pytest.mark.django_db
def test_a_batch_started_through_the_web_page_runs_to_the_end(no_broker, fast_demo, alice_client, event):
    # In a test transaction, the page's start never reaches the broker: its message waits for a commit.
    assert alice_client.post(START_URL, {"event_id": event.pk}).status_code == 303
    started = Batch.objects.get()

    batch = run_to_end(started)

    assert (batch.pk, batch.status, batch.done_count, batch.failed_count) == (started.pk, BatchStatus.FINISHED, 18, 2)


@pytest.mark.both_backends
@pytest.mark.django_db
def test_a_start_that_joins_the_scopes_active_batch_runs_that_one(no_broker, fast_demo, event, alice):
    queued = start_batch(operation="reissue_tickets", data={"event_id": event.pk}, user=alice).batch

    batch = run_batch("reissue_tickets", {"event_id": event.pk}, user=alice)

    assert (batch.pk, batch.status, batch.processed) == (queued.pk, BatchStatus.FINISHED, 20)
    assert Batch.objects.count() == 1


@pytest.mark.both_backends
@pytest.mark.django_db
def test_a_batch_a_worker_process_holds_raises_rather_than_hangs(no_broker, fast_demo, event, alice):
    batch = start_batch(operation="reissue_tickets", data={"event_id": event.pk}, user=alice).batch
    state.plan(batch.pk)
    now = timezone.now()
    worker = Worker.objects.create(host="elsewhere", pid=1, threads=1, started_at=now, heartbeat_at=now)
    Chunk.objects.filter(batch=batch).update(claimed_by=worker, claimed_at=now)

    with pytest.raises(BatchDidNotEnd, match=f"Batch {batch.pk}"):
        run_to_end(batch)
