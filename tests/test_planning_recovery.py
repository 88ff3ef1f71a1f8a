"""A worker killed with SIGKILL in the middle of planning a batch: the batch is planned again as soon as
the worker registry declares that worker dead (not after the batch's lease and a sweep), exactly once:
one set of chunks, every record once. How soon, with the default settings, is printed."""

from __future__ import annotations

import os
import time

import pytest
from django.db import DEFAULT_DB_ALIAS, connections

from batches.models import BatchStatus, Chunk, Worker
from batches.operations import get_operation
from batches.services import start_batch
from tests.support import refreshed, registered_workers, wait_until
from tests.testapp.models import Record

pytestmark = [pytest.mark.slow, pytest.mark.both_brokers]  # what a dead consumer leaves on the broker differs

TOTAL = 3_000


def planning_blocked_on_the_chunk_table() -> bool:
    """A worker's planning transaction is under way: it holds the batch row and waits to insert chunks."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE %s",
            [f'INSERT INTO "{Chunk._meta.db_table}"%'],
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_plan_is_replanned_once_the_registry_declares_it_dead(
    worker_process, make_ledger, make_clerk
):
    ledger = make_ledger(records=TOTAL)
    # The engine's defaults (a 30 s lease, a 15 s sweep, a 2 s heartbeat), short items.
    processes = [worker_process(RECORDS_ITEM_DELAY_MS="1") for _ in range(2)]
    registered_workers(2)

    # The test holds the chunk table, so that planning stops mid-way (batch row locked, items read) for
    # as long as it takes to kill the planner there.
    holder = connections.create_connection(DEFAULT_DB_ALIAS)
    with holder.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(f'LOCK TABLE "{Chunk._meta.db_table}" IN SHARE MODE')
    try:
        batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
        first_lease_ends = batch.lease_expires_at
        wait_until(planning_blocked_on_the_chunk_table, timeout=60, what="a worker to be planning the batch")
        planner_id = refreshed(batch).planning_worker
        assert planner_id is not None and batch.status == BatchStatus.QUEUED
        planner_pid = Worker.objects.get(pk=planner_id).pid
        (planner,) = [p for p in processes if p.process and os.getpgid(planner_pid) == p.process.pid]
        planner.kill()
        killed_at = time.monotonic()
    finally:
        with holder.cursor() as cursor:
            cursor.execute("ROLLBACK")
        holder.close()

    wait_until(lambda: refreshed(batch).processed > 0, timeout=120, what="the batch to be planned again and move")
    moving_after = time.monotonic() - killed_at
    # On Redis the registry's sweep plans it again; RabbitMQ may be first, redelivering the dead
    # consumer's plan message at once. Either way, long before the lease would have.
    declared = Worker.objects.get(pk=planner_id)
    route = f"the registry: {declared.gone_reason}" if declared.gone_at else "the broker's redelivery"
    print(f"killed mid-plan: moving again {moving_after:.1f}s after the kill, planned again by {route}")

    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")
    assert batch.status == BatchStatus.FINISHED, batch.error
    assert batch.started_at < first_lease_ends, "planned again by the registry, not by the lease's recovery sweep"
    chunk_size = get_operation("mark_records").chunk_size
    indexes = sorted(Chunk.objects.filter(batch=batch).values_list("index", flat=True))
    assert indexes == list(range(-(-TOTAL // chunk_size))), "planned exactly once: one set of chunks"
    records = Record.objects.filter(ledger=ledger)
    assert not records.filter(marks__gt=1).exists(), "a record was marked twice"
    assert batch.done_count == records.filter(marks=1).count()
    assert batch.done_count + batch.failed_count == batch.total == TOTAL
