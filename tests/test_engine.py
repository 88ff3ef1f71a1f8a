"""The worker side, run in-process: planning, checkpoints, failures, resume, completion."""

import threading
from unittest import mock

import pytest
from django.db import OperationalError, connection

from batches.engine import runner
from batches.models import Batch, BatchStatus, Chunk, ItemFailure
from batches.services import start_batch
from site_config.demo.models import Ticket
from site_config.demo.operations import ReissueTickets


@pytest.fixture
def fast_demo(settings):
    settings.DEMO_ITEM_DELAY_MS = 0
    settings.DEMO_FAIL_EVERY = 7


def start(event, user) -> Batch:
    return start_batch(operation="reissue_tickets", data={"event_id": event.pk}, user=user).batch


def run_to_the_end(batch: Batch) -> Batch:
    for chunk_id in runner.plan(batch.pk):
        assert runner.run_chunk(chunk_id, budget_seconds=600) is runner.ChunkState.FINISHED
    batch.refresh_from_db()
    return batch


def assert_counters_match_the_tables(batch: Batch, event) -> None:
    tickets = Ticket.objects.filter(event=event)
    assert batch.done_count == tickets.filter(reissue_count=1).count()
    assert batch.failed_count == ItemFailure.objects.filter(batch=batch).count()
    assert not tickets.filter(reissue_count__gt=1).exists(), "a ticket was reissued twice"
    assert batch.done_count + batch.failed_count + batch.skipped_count == batch.total


@pytest.fixture(params=["bulk handler", "item by item"])
def handler_mode(request):
    """The demo has a bulk handler; without it the engine calls `handle` per item."""
    if request.param == "bulk handler":
        yield
        return
    with mock.patch.object(ReissueTickets, "handle_many", None):
        yield


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_batch_handles_every_item_once_and_records_failures(fast_demo, handler_mode, make_event, make_user):
    event = make_event(tickets=1234)
    batch = run_to_the_end(start(event, make_user("alice")))

    assert batch.status == BatchStatus.FINISHED and batch.finished_at is not None
    assert batch.total == 1234
    assert batch.failed_count == 1234 // 7
    assert batch.done_count == 1234 - 1234 // 7
    assert batch.pending_chunks == 0
    assert Chunk.objects.filter(batch=batch).count() == 3  # 500 + 500 + 234
    failure = ItemFailure.objects.filter(batch=batch).first()
    seat = Ticket.objects.get(pk=int(failure.item_key)).number
    assert failure.error == f"Seat {seat} is blocked by the venue."  # an expected failure: its sentence alone
    assert_counters_match_the_tables(batch, event)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_checkpoints_commit_progress_within_the_checkpoint_time(fast_demo, settings, make_event, make_user):
    settings.BATCHES_CHECKPOINT_SECONDS = 0.0  # every item is its own checkpoint
    event = make_event(tickets=5)
    batch = start(event, make_user("alice"))
    (chunk_id,) = runner.plan(batch.pk)

    assert runner.run_checkpoint(chunk_id) is runner.ChunkState.MORE
    batch.refresh_from_db()
    assert (batch.done_count, batch.heartbeat_at is not None) == (1, True)
    assert Ticket.objects.filter(event=event, reissue_count=1).count() == 1


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_crash_mid_checkpoint_loses_nothing_and_repeats_nothing(fast_demo, settings, make_event, make_user):
    # One checkpoint for the whole chunk, however slow the machine: the crash falls inside it.
    settings.BATCHES_CHECKPOINT_SECONDS = 600
    event = make_event(tickets=300)
    batch = start(event, make_user("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    real_handle = type(runner.get_operation("reissue_tickets")).handle
    calls = 0

    def dies_on_the_150th_item(self, item, ctx):
        nonlocal calls
        calls += 1
        if calls == 150:
            raise OperationalError("server closed the connection unexpectedly")
        real_handle(self, item, ctx)

    with (
        mock.patch.object(type(runner.get_operation("reissue_tickets")), "handle", dies_on_the_150th_item),
        mock.patch.object(type(runner.get_operation("reissue_tickets")), "handle_many", None),
        pytest.raises(OperationalError),
    ):
        runner.run_chunk(chunk_id, budget_seconds=600)
    # The checkpoint was rolled back whole: no effect, no counter, no cursor.
    assert Ticket.objects.filter(event=event, reissue_count__gt=0).count() == 0
    assert Chunk.objects.get(pk=chunk_id).cursor is None

    # The redelivered message resumes from the last committed cursor.
    assert runner.run_chunk(chunk_id, budget_seconds=600) is runner.ChunkState.FINISHED
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED
    assert_counters_match_the_tables(batch, event)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_the_same_chunk_delivered_twice_at_once_runs_each_item_once(fast_demo, settings, make_event, make_user):
    settings.BATCHES_CHECKPOINT_SECONDS = 0.01
    event = make_event(tickets=400)
    batch = start(event, make_user("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    barrier = threading.Barrier(2)

    def deliver() -> None:
        try:
            barrier.wait()
            runner.run_chunk(chunk_id, budget_seconds=600)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED
    assert_counters_match_the_tables(batch, event)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_planning_twice_plans_once(fast_demo, make_event, make_user):
    batch = start(make_event(tickets=1001), make_user("alice"))
    first = runner.plan(batch.pk)
    again = runner.plan(batch.pk)
    assert first == again and len(first) == 3
    assert Chunk.objects.filter(batch=batch).count() == 3


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_items_deleted_after_planning_are_counted_as_skipped(fast_demo, make_event, make_user):
    event = make_event(tickets=20)
    batch = start(event, make_user("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    Ticket.objects.filter(event=event, number__gt=15).delete()

    runner.run_chunk(chunk_id, budget_seconds=600)
    batch.refresh_from_db()
    assert (batch.status, batch.total, batch.skipped_count) == (BatchStatus.FINISHED, 20, 5)
    assert batch.done_count + batch.failed_count == 15


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_an_empty_scope_finishes_at_once(make_event, make_user):
    batch = start(make_event(tickets=0), make_user("alice"))
    assert runner.plan(batch.pk) == []
    batch.refresh_from_db()
    assert (batch.status, batch.total) == (BatchStatus.FINISHED, 0)


@pytest.mark.django_db(transaction=True)
def test_a_message_for_a_deleted_batch_is_dropped_quietly():
    assert runner.plan(987654) == []
    assert runner.run_chunk(987654) is runner.ChunkState.GONE
