"""The worker side, run in-process: planning, checkpoints, failures, resume, completion."""

import threading
from unittest import mock

import pytest
from django.db import OperationalError, connection

from batches.engine import runner
from batches.models import Batch, BatchStatus, Chunk, ItemFailure
from batches.services import start_batch
from tests.testapp.models import Record
from tests.testapp.operations import MarkRecords


def start(ledger, user) -> Batch:
    return start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=user).batch


def run_to_the_end(batch: Batch) -> Batch:
    for chunk_id in runner.plan(batch.pk):
        assert runner.run_chunk(chunk_id, budget_seconds=600) is runner.ChunkState.FINISHED
    batch.refresh_from_db()
    return batch


def assert_counters_match_the_tables(batch: Batch, ledger) -> None:
    records = Record.objects.filter(ledger=ledger)
    assert batch.done_count == records.filter(marks=1).count()
    assert batch.failed_count == ItemFailure.objects.filter(batch=batch).count()
    assert not records.filter(marks__gt=1).exists(), "a record was marked twice"
    assert batch.done_count + batch.failed_count + batch.skipped_count == batch.total


@pytest.fixture(params=["bulk handler", "item by item"])
def handler_mode(request):
    """The operation has a bulk handler; without it the engine calls `handle` per item."""
    if request.param == "bulk handler":
        yield
        return
    with mock.patch.object(MarkRecords, "handle_many", None):
        yield


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_batch_handles_every_item_once_and_records_failures(quick_records, handler_mode, make_ledger, make_clerk):
    ledger = make_ledger(records=1234)
    batch = run_to_the_end(start(ledger, make_clerk("alice")))

    assert batch.status == BatchStatus.FINISHED and batch.finished_at is not None
    assert batch.total == 1234
    assert batch.failed_count == 1234 // 7
    assert batch.done_count == 1234 - 1234 // 7
    assert batch.pending_chunks == 0
    assert Chunk.objects.filter(batch=batch).count() == 3  # 500 + 500 + 234
    failure = ItemFailure.objects.filter(batch=batch).first()
    number = Record.objects.get(pk=int(failure.item_key)).number
    assert failure.error == f"Record {number} is refused."  # an expected failure: its sentence alone
    assert_counters_match_the_tables(batch, ledger)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_checkpoints_commit_progress_within_the_checkpoint_time(quick_records, settings, make_ledger, make_clerk):
    settings.BATCHES_CHECKPOINT_SECONDS = 0.0  # every item is its own checkpoint
    ledger = make_ledger(records=5)
    batch = start(ledger, make_clerk("alice"))
    (chunk_id,) = runner.plan(batch.pk)

    assert runner.run_checkpoint(chunk_id) is runner.ChunkState.MORE
    batch.refresh_from_db()
    assert (batch.done_count, batch.heartbeat_at is not None) == (1, True)
    assert Record.objects.filter(ledger=ledger, marks=1).count() == 1


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_crash_mid_checkpoint_loses_nothing_and_repeats_nothing(quick_records, settings, make_ledger, make_clerk):
    # One checkpoint for the whole chunk, however slow the machine: the crash falls inside it.
    settings.BATCHES_CHECKPOINT_SECONDS = 600
    ledger = make_ledger(records=300)
    batch = start(ledger, make_clerk("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    real_handle = type(runner.get_operation("mark_records")).handle
    calls = 0

    def dies_on_the_150th_item(self, item, ctx):
        nonlocal calls
        calls += 1
        if calls == 150:
            raise OperationalError("server closed the connection unexpectedly")
        real_handle(self, item, ctx)

    with (
        mock.patch.object(type(runner.get_operation("mark_records")), "handle", dies_on_the_150th_item),
        mock.patch.object(type(runner.get_operation("mark_records")), "handle_many", None),
        pytest.raises(OperationalError),
    ):
        runner.run_chunk(chunk_id, budget_seconds=600)
    # The checkpoint was rolled back whole: no effect, no counter, no cursor.
    assert Record.objects.filter(ledger=ledger, marks__gt=0).count() == 0
    assert Chunk.objects.get(pk=chunk_id).cursor is None

    # The redelivered message resumes from the last committed cursor.
    assert runner.run_chunk(chunk_id, budget_seconds=600) is runner.ChunkState.FINISHED
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED
    assert_counters_match_the_tables(batch, ledger)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_the_same_chunk_delivered_twice_at_once_runs_each_item_once(quick_records, settings, make_ledger, make_clerk):
    settings.BATCHES_CHECKPOINT_SECONDS = 0.01
    ledger = make_ledger(records=400)
    batch = start(ledger, make_clerk("alice"))
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
    assert_counters_match_the_tables(batch, ledger)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_planning_twice_plans_once(quick_records, make_ledger, make_clerk):
    batch = start(make_ledger(records=1001), make_clerk("alice"))
    first = runner.plan(batch.pk)
    again = runner.plan(batch.pk)
    assert first == again and len(first) == 3
    assert Chunk.objects.filter(batch=batch).count() == 3


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_items_deleted_after_planning_are_counted_as_skipped(quick_records, make_ledger, make_clerk):
    ledger = make_ledger(records=20)
    batch = start(ledger, make_clerk("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    Record.objects.filter(ledger=ledger, number__gt=15).delete()

    runner.run_chunk(chunk_id, budget_seconds=600)
    batch.refresh_from_db()
    assert (batch.status, batch.total, batch.skipped_count) == (BatchStatus.FINISHED, 20, 5)
    assert batch.done_count + batch.failed_count == 15


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_an_empty_scope_finishes_at_once(make_ledger, make_clerk):
    batch = start(make_ledger(records=0), make_clerk("alice"))
    assert runner.plan(batch.pk) == []
    batch.refresh_from_db()
    assert (batch.status, batch.total) == (BatchStatus.FINISHED, 0)


@pytest.mark.django_db(transaction=True)
def test_a_message_for_a_deleted_batch_is_dropped_quietly():
    assert runner.plan(987654) == []
    assert runner.run_chunk(987654) is runner.ChunkState.GONE
