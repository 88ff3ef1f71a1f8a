"""Fixtures shared by tests/ and e2e/: demo data, users, and a real `rundramatiq` worker process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from batches.models import Batch, BatchStatus, ItemFailure
from site_config.demo.models import Event, Ticket
from tests.support import WorkerProcess, flush_broker

pytest_plugins = ["tests.testapp.fixtures"]  # the engine's own test project: ledgers, clerks


@pytest.fixture
def make_event(db) -> Callable[..., Event]:
    def make(tickets: int, name: str | None = None) -> Event:
        event = Event.objects.create(name=name or f"Event {Event.objects.count() + 1}", starts_at="2030-01-01T10:00Z")
        Ticket.objects.bulk_create(
            [Ticket(event=event, number=n, holder=f"Guest {n}", code="orig") for n in range(1, tickets + 1)],
            batch_size=2000,
        )
        return event

    return make


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    def make(username: str, *, may_reissue: bool = True, **extra: object) -> object:
        user = get_user_model().objects.create_user(username, password="pw-" + username, **extra)
        if may_reissue:
            user.user_permissions.add(Permission.objects.get(codename="reissue_tickets"))
        return user

    return make


@pytest.fixture
def event(make_event) -> Event:
    return make_event(tickets=20, name="Gala")


@pytest.fixture
def alice(make_user) -> object:
    return make_user("alice")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def make_finished_batch(make_event) -> Callable[..., Batch]:
    """A finished reissue batch over a new event of `tickets` tickets, seat `failed` its one failure."""

    def make(name: str, *, tickets: int, failed: int, created_by: object) -> Batch:
        event = make_event(tickets=tickets, name=name)
        batch = Batch.objects.create(
            operation="reissue_tickets",
            scope_key=f"event:{event.pk}",
            params={"event_id": event.pk},
            scope_label=name,
            status=BatchStatus.FINISHED,
            total=tickets,
            done_count=tickets - 1,
            failed_count=1,
            created_by=created_by,
        )
        error = f"Seat {failed} is blocked by the venue."
        ItemFailure.objects.create(batch=batch, item_key=str(failed), item_pk=failed, error=error)
        return batch

    return make


@pytest.fixture
def worker_process(transactional_db, tmp_path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes on demand; each is stopped when the test ends."""
    flush_broker()  # messages left by other tests point at rows that are gone
    started: list[WorkerProcess] = []

    def start(threads: int = 2, **env: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker-{len(started)}.log", **env)
        worker.start(threads)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.discard()
