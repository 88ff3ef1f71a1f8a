"""Control of a batch, run in-process: cancel, failure threshold, retry of failed items, item time
limits, stale recovery and the start of a stale scope."""

import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from batches.engine import runner
from batches.engine.actors import batch_message_gave_up
from batches.engine.recovery import recover_stale
from batches.models import Batch, BatchStatus, Chunk, ItemFailure
from batches.services import cancel_batch, retry_failed, start_batch
from tests.testapp.models import Record
from tests.testapp.operations import MarkRecords

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def alice(make_clerk):
    return make_clerk("alice")


def start(ledger, user) -> Batch:
    return start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=user).batch


def run_all(batch: Batch) -> Batch:
    for chunk_id in runner.plan(batch.pk):
        runner.run_chunk(chunk_id, budget_seconds=600)
    batch.refresh_from_db()
    return batch


def marked(ledger) -> int:
    return Record.objects.filter(ledger=ledger, marks__gt=0).count()


@pytest.mark.both_backends
def test_cancel_ends_the_batch_at_once_counts_the_rest_as_skipped_and_frees_the_scope(
    quick_records, settings, make_ledger, alice
):
    settings.BATCHES_CHECKPOINT_SECONDS = 0.0  # one item per checkpoint
    ledger = make_ledger(records=50)
    batch = start(ledger, alice)
    (chunk_id,) = runner.plan(batch.pk)
    for _ in range(3):
        runner.run_checkpoint(chunk_id)

    cancelled, ended = cancel_batch(batch.pk, user=alice)

    assert ended and cancelled.status == BatchStatus.CANCELLED and cancelled.cancelled_by == alice
    assert (cancelled.done_count, cancelled.skipped_count) == (3, 47)
    assert runner.run_checkpoint(chunk_id) is runner.ChunkState.GONE
    assert marked(ledger) == 3
    assert cancel_batch(batch.pk, user=alice)[1] is False, "cancelling twice ends it once"
    assert start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).created


def test_a_checkpoint_that_overlaps_a_cancel_is_rolled_back_whole(quick_records, make_ledger, alice):
    # Postgres only: on SQLite a cancel waits for the running checkpoint's write lock, so the two
    # never overlap.
    ledger = make_ledger(records=30)
    batch = start(ledger, alice)
    (chunk_id,) = runner.plan(batch.pk)
    op_class = type(runner.get_operation("mark_records"))
    real_handle = op_class.handle

    def cancel_from_another_connection():
        try:
            cancel_batch(batch.pk, user=alice)
        finally:
            connection.close()

    def handle(self, record, ctx):
        real_handle(self, record, ctx)
        if record.number == 10:  # a colleague cancels while this checkpoint is under way
            canceller = threading.Thread(target=cancel_from_another_connection)
            canceller.start()
            canceller.join()

    with mock.patch.object(op_class, "handle", handle), mock.patch.object(op_class, "handle_many", None):
        assert runner.run_chunk(chunk_id, budget_seconds=600) is runner.ChunkState.GONE

    batch.refresh_from_db()
    assert batch.status == BatchStatus.CANCELLED
    assert marked(ledger) == batch.done_count == 0
    assert batch.skipped_count == 30


@pytest.mark.both_backends
def test_a_cancel_before_planning_stops_the_batch_from_running(quick_records, make_ledger, alice):
    batch = start(make_ledger(records=10), alice)
    cancel_batch(batch.pk, user=alice)
    assert runner.plan(batch.pk) == []
    batch.refresh_from_db()
    assert (batch.status, batch.skipped_count, batch.total) == (BatchStatus.CANCELLED, 0, None)


@pytest.mark.both_backends
def test_only_those_who_may_see_a_batch_may_cancel_it(quick_records, make_ledger, make_clerk, alice):
    batch = start(make_ledger(records=10), alice)
    with pytest.raises(Batch.DoesNotExist):
        cancel_batch(batch.pk, user=make_clerk("mallory", may_mark=False))
    batch.refresh_from_db()
    assert batch.is_active


@pytest.mark.both_backends
def test_an_operation_failure_threshold_fails_the_batch_early(quick_records, make_ledger, alice):
    ledger = make_ledger(records=1000)
    with mock.patch.object(MarkRecords, "max_failures", 5):
        batch = run_all(start(ledger, alice))

    assert batch.status == BatchStatus.FAILED
    assert batch.error == "Stopped early: more than 5 items failed (the operation's limit)."
    assert batch.failed_count > 5 and batch.failed_count == ItemFailure.objects.filter(batch=batch).count()
    assert batch.done_count == Record.objects.filter(ledger=ledger, marks=1).count()
    assert batch.done_count + batch.failed_count + batch.skipped_count == 1000
    assert batch.skipped_count > 0


@pytest.mark.both_backends
def test_retry_failed_runs_exactly_the_failed_items_in_a_linked_batch(quick_records, settings, make_ledger, alice):
    ledger = make_ledger(records=100)
    first = run_all(start(ledger, alice))
    failed_numbers = set(range(7, 101, 7))
    assert first.failed_count == len(failed_numbers)

    settings.RECORDS_FAIL_EVERY = 0  # whatever made them fail is fixed
    result = retry_failed(first.pk, user=alice)
    retry = run_all(result.batch)

    assert result.created and retry.retry_of == first
    assert (retry.status, retry.total, retry.done_count, retry.failed_count) == (
        BatchStatus.FINISHED,
        len(failed_numbers),
        len(failed_numbers),
        0,
    )
    assert {r.number: r.marks for r in Record.objects.filter(ledger=ledger)} == {n: 1 for n in range(1, 101)}, (
        "the failed items ran once more, the others were not touched"
    )


@pytest.mark.both_backends
def test_retry_failed_is_guarded_and_refuses_what_it_cannot_do(quick_records, settings, make_ledger, alice):
    ledger = make_ledger(records=20)
    running = start(ledger, alice)
    with pytest.raises(ValidationError, match="still running"):
        retry_failed(running.pk, user=alice)
    first = run_all(running)

    settings.RECORDS_FAIL_EVERY = 0
    clean = run_all(start(make_ledger(records=5), alice))
    with pytest.raises(ValidationError, match="no failed items"):
        retry_failed(clean.pk, user=alice)

    other = start(ledger, alice)  # a new full run holds the scope
    joined = retry_failed(first.pk, user=alice)
    assert not joined.created and joined.batch.pk == other.pk


@pytest.mark.both_backends
def test_retry_failed_explains_a_removed_operation_or_a_deleted_scope(quick_records, make_ledger, alice):
    # The admin's retry action shows these messages: they must be ValidationErrors a person reads.
    ledger = make_ledger(records=20)
    first = run_all(start(ledger, alice))
    Batch.objects.filter(pk=first.pk).update(operation="gone_operation")
    with pytest.raises(ValidationError, match="the operation 'gone_operation' of this batch is no longer installed"):
        retry_failed(first.pk, user=alice)

    Batch.objects.filter(pk=first.pk).update(operation="mark_records")
    ledger_id = ledger.pk
    ledger.delete()
    with pytest.raises(ValidationError, match=f"Cannot retry. There is no ledger {ledger_id}."):
        retry_failed(first.pk, user=alice)
    assert Batch.objects.count() == 1


@pytest.mark.both_backends
def test_an_item_past_its_time_limit_fails_as_timed_out_and_the_rest_go_on(quick_records, make_ledger, alice):
    ledger = make_ledger(records=6)
    real_handle = MarkRecords.handle

    def handle(self, record, ctx):
        if record.number == 2:
            time.sleep(0.5)  # blocked in C: failed once it returns
        if record.number == 4:
            while True:  # a Python loop that never ends: interrupted at the limit
                pass
        real_handle(self, record, ctx)

    with (
        mock.patch.object(MarkRecords, "item_time_limit", 0.2),
        mock.patch.object(MarkRecords, "handle", handle),
        mock.patch.object(MarkRecords, "handle_many", None),
    ):
        batch = run_all(start(ledger, alice))

    failures = dict(ItemFailure.objects.filter(batch=batch).values_list("item_key", "error"))
    records = {r.number: r for r in Record.objects.filter(ledger=ledger)}
    assert failures == {str(records[2].pk): "Timed out after 0.2s", str(records[4].pk): "Timed out after 0.2s"}
    assert (batch.status, batch.done_count) == (BatchStatus.FINISHED, 4)
    assert records[2].marks == records[4].marks == 0


def make_stale(batch: Batch) -> None:
    Batch.objects.filter(pk=batch.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.both_backends
def test_the_sweep_resumes_stale_batches_once_per_lease(quick_records, make_ledger, alice):
    queued = start(make_ledger(records=10), alice)
    running = start(make_ledger(records=10), alice)
    runner.plan(running.pk)
    fresh = start(make_ledger(records=10), alice)
    make_stale(queued)
    make_stale(running)

    with mock.patch("batches.engine.dispatch.plan") as plan, mock.patch("batches.engine.dispatch.run") as run:
        recovered = {(r.batch_id, r.action) for r in recover_stale()}
        assert recover_stale() == [], "a recovered batch has a new lease"

    assert recovered == {(queued.pk, "replanned"), (running.pk, "resumed")}
    plan.assert_called_once_with(queued.pk)
    run.assert_called_once_with(running.pk, count=Chunk.objects.filter(batch=running).count())
    fresh.refresh_from_db()
    assert fresh.recoveries == 0


@pytest.mark.both_backends
def test_a_batch_that_cannot_be_resumed_is_failed_with_the_reason(settings, quick_records, make_ledger, alice):
    settings.BATCHES_MAX_RECOVERIES = 2
    stuck = start(make_ledger(records=3), alice)
    orphan = Batch.objects.create(operation="gone_operation", scope_key="x", lease_expires_at=timezone.now())
    with mock.patch("batches.engine.dispatch.plan"):
        for _ in range(3):
            make_stale(stuck)
            recover_stale()
    stuck.refresh_from_db()
    orphan.refresh_from_db()
    assert (stuck.status, stuck.error) == (BatchStatus.FAILED, "Cannot resume: no progress after 2 recoveries.")
    assert orphan.status == BatchStatus.FAILED
    assert orphan.error == "Cannot resume: the operation 'gone_operation' is not installed any more."


@pytest.mark.both_backends
def test_a_stale_batch_blocks_a_new_start_only_until_its_lease_ends(quick_records, make_ledger, alice, make_clerk):
    ledger = make_ledger(records=10)
    batch = start(ledger, alice)
    bob = make_clerk("bob")

    joined = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=bob)
    assert (joined.created, joined.resumed) == (False, False)

    make_stale(batch)
    with mock.patch("batches.engine.dispatch.plan") as plan:
        resumed = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=bob)
    assert (resumed.batch.pk, resumed.resumed) == (batch.pk, True)
    plan.assert_called_once_with(batch.pk)
    assert run_all(resumed.batch).status == BatchStatus.FINISHED


@pytest.mark.both_backends
def test_the_recover_command_reports_what_it_did(quick_records, make_ledger, alice, capsys):
    batch = start(make_ledger(records=3), alice)
    make_stale(batch)
    with mock.patch("batches.engine.dispatch.plan"):
        call_command("batches", "recover")
    assert f"Batch {batch.pk}: replanned." in capsys.readouterr().out


@pytest.mark.both_backends
def test_a_message_that_exhausted_its_retries_fails_its_batch_visibly(quick_records, make_ledger, alice):
    batch = start(make_ledger(records=3), alice)
    runner.plan(batch.pk)
    message = {
        "actor_name": "run_batch",
        "args": [batch.pk],
        "options": {"traceback": "Traceback ...\nRuntimeError: the payment gateway is down"},
    }
    batch_message_gave_up.fn(message, {"retries": 10, "max_retries": 10})
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FAILED
    assert batch.error == "Gave up after 10 retries of run_batch: RuntimeError: the payment gateway is down"


@pytest.mark.both_backends
def test_the_token_command_prints_a_working_token(alice, capsys):
    from batches.tokens import user_for_token

    call_command("batches", "token", "alice", "--name", "ci")
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("bt_") and user_for_token(raw) == alice
    with pytest.raises(Exception, match="No user 'nobody'"):
        call_command("batches", "token", "nobody")
