"""The guard: one active batch per (operation, scope), whatever the concurrency."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from batches.models import Batch, BatchStatus
from batches.services import StartResult, start_batch
from tests.support import wait_until

PARALLEL_STARTS = 50


def _start_in_own_connection(barrier: threading.Barrier, user, ledger_id: int) -> tuple[int, bool]:
    try:
        barrier.wait()
        result = start_batch(operation="mark_records", data={"ledger_id": ledger_id}, user=user)
        return result.batch.pk, result.created
    finally:
        connection.close()  # each thread has its own connection; give it back


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_parallel_starts_create_exactly_one_batch_and_every_caller_gets_its_id(make_ledger, make_clerk):
    ledger = make_ledger(records=3)
    user = make_clerk("alice")
    barrier = threading.Barrier(PARALLEL_STARTS)
    with ThreadPoolExecutor(max_workers=PARALLEL_STARTS) as pool:
        futures = [pool.submit(_start_in_own_connection, barrier, user, ledger.pk) for _ in range(PARALLEL_STARTS)]
        results = [future.result(timeout=120) for future in futures]

    batch_ids = {batch_id for batch_id, _ in results}
    assert len(results) == PARALLEL_STARTS
    assert batch_ids == set(Batch.objects.values_list("pk", flat=True))
    assert len(batch_ids) == 1
    assert sum(created for _, created in results) == 1


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_second_start_joins_the_active_batch_and_a_finished_one_frees_the_scope(make_ledger, make_clerk):
    ledger = make_ledger(records=3)
    alice, bob = make_clerk("alice"), make_clerk("bob")

    first = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice)
    second = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=bob)
    assert first.created and not second.created
    assert second.batch.pk == first.batch.pk
    assert second.batch.created_by == alice

    Batch.objects.filter(pk=first.batch.pk).update(status=BatchStatus.FINISHED)
    third = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=bob)
    assert third.created and third.batch.pk != first.batch.pk


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_other_scopes_are_independent(make_ledger, make_clerk):
    user = make_clerk("alice")
    one, two = make_ledger(records=1), make_ledger(records=1)
    a = start_batch(operation="mark_records", data={"ledger_id": one.pk}, user=user)
    b = start_batch(operation="mark_records", data={"ledger_id": two.pk}, user=user)
    assert a.created and b.created and a.batch.pk != b.batch.pk


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_a_second_active_batch_even_past_the_service():
    Batch.objects.create(operation="op", scope_key="s", status=BatchStatus.RUNNING)
    Batch.objects.create(operation="op", scope_key="s", status=BatchStatus.FINISHED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Batch.objects.create(operation="op", scope_key="s", status=BatchStatus.QUEUED)


@pytest.mark.django_db(transaction=True)
def test_a_deadlock_the_database_reports_is_retried_inside_the_guard(make_ledger, make_clerk, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time: it has no deadlocks to report")
    ledger, alice = make_ledger(records=1), make_clerk("alice")
    active = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).batch
    holding, start_waits = threading.Event(), threading.Event()

    def waiting_on_a_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    def hold_the_batch_then_lock_its_user() -> None:
        # Whatever holds the scope's batch row and then wants the user row closes a cycle with
        # a start, which holds the user row and wants the batch row.
        try:
            with transaction.atomic():
                Batch.objects.select_for_update().filter(pk=active.pk).first()
                holding.set()
                start_waits.wait(timeout=30)
                get_user_model().objects.select_for_update().filter(pk=alice.pk).first()
        finally:
            connection.close()

    def start() -> StartResult:
        try:
            holding.wait(timeout=30)
            return start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(hold_the_batch_then_lock_its_user)
        started = pool.submit(start)
        wait_until(waiting_on_a_lock, timeout=30, what="the start to wait on the batch row")
        start_waits.set()
        result = started.result(timeout=60)
        holder.result(timeout=60)

    assert result.batch.pk == active.pk and not result.created
    assert any("deadlock detected" in record.getMessage() for record in caplog.records), "no deadlock happened"
    assert Batch.objects.count() == 1
