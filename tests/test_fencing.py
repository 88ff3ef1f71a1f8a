"""A claim is a lease with a fencing token: handing a chunk over never waits for the runner it is taken
from, and that runner's checkpoint under way is refused and rolled back; a worker's transaction that
goes quiet (frozen, cut off) is ended by the database server. Run in-process on Postgres, with the
runner that loses its chunk in one thread and the worker handing it over in another. The same fault
with real worker processes, frozen by SIGSTOP, is in tests/test_faults.py."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from unittest import mock

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from batches.engine import dispatch, runner, state, waits
from batches.models import Batch, BatchStatus, Chunk, Worker
from tests.test_engine import assert_counters_match_the_tables, start
from tests.testapp.models import Record
from tests.testapp.operations import MarkRecords

pytestmark = [pytest.mark.django_db(transaction=True)]


def registered() -> Worker:
    now = timezone.now()
    return Worker.objects.create(host="elsewhere", pid=1, threads=1, started_at=now, heartbeat_at=now)


def in_another_thread(work: Callable[[], object], *, within: float) -> object:
    """Run `work` on a connection of its own; its result, or AssertionError if it waited past `within`."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:  # handed back to the test
            result.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=within)
    assert not thread.is_alive(), f"still waiting after {within}s: it waited on the other runner's locks"
    if isinstance(result[0], Exception):
        raise result[0]
    return result[0]


def test_a_hand_over_mid_checkpoint_does_not_wait_and_the_old_runners_checkpoint_is_refused(
    quick_records, settings, make_ledger, make_clerk, caplog
):
    if connection.vendor != "postgresql":
        pytest.skip("two writers at once: SQLite has one at a time")
    settings.BATCHES_CHECKPOINT_SECONDS = 60.0  # the checkpoint lasts until its chunk's items are done
    ledger = make_ledger(records=40)
    batch = start(ledger, make_clerk("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    lost, survivor = registered(), registered()
    claim = state.claim_chunk(batch.pk, lost.pk)
    assert claim is not None and claim.chunk_id == chunk_id
    handed: list[object] = []
    handle = MarkRecords.handle

    def hand_over_midway(self, item, ctx):
        handle(self, item, ctx)
        if item.number == 20 and not handed:  # the lost worker has marked 20 records, uncommitted

            def declare_lost() -> int:
                with dispatch.kept_in_process(), waits.bookkeeping():
                    return state.hand_over(lost.pk, lost=True)

            handed.append(in_another_thread(declare_lost, within=5))

    with (
        mock.patch.object(MarkRecords, "handle_many", None),
        mock.patch.object(MarkRecords, "handle", hand_over_midway),
        caplog.at_level(logging.WARNING, logger="batches.engine.runner"),
    ):
        refused = runner.run_checkpoint(chunk_id, worker_id=lost.pk, token=claim.token)

    assert handed == [1], "handed over while the lost runner's checkpoint was under way"
    assert refused is runner.ChunkState.GONE
    assert "refused" in caplog.text
    assert not Record.objects.filter(ledger=ledger, marks__gt=0).exists(), "its items rolled back"
    assert Chunk.objects.get(pk=chunk_id).cursor is None

    taken = state.claim_chunk(batch.pk, survivor.pk)
    assert taken is not None and taken.token > claim.token
    assert runner.run_chunk(chunk_id, budget_seconds=600, worker_id=survivor.pk, token=taken.token) is (
        runner.ChunkState.FINISHED
    )
    assert runner.run_checkpoint(chunk_id, worker_id=lost.pk, token=claim.token) is runner.ChunkState.GONE
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED
    assert_counters_match_the_tables(batch, ledger)


def test_a_checkpoint_whose_worker_goes_quiet_in_it_is_ended_by_the_server(
    quick_records, settings, make_ledger, make_clerk
):
    if connection.vendor != "postgresql":
        pytest.skip("the server's own timeouts are Postgres's")
    settings.BATCHES_CHECKPOINT_SECONDS = 0.1
    settings.BATCHES_TRANSACTION_GRACE_SECONDS = 0.2
    ledger = make_ledger(records=10)
    batch = start(ledger, make_clerk("alice"))
    (chunk_id,) = runner.plan(batch.pk)
    frozen = threading.Event()

    def freeze_after_the_first(self, item, ctx):
        Record.objects.filter(pk=item.pk).update(marks=1, done=True)
        frozen.wait(timeout=2)  # as a frozen process would: not a line of Python, the row still locked

    with (
        mock.patch.object(MarkRecords, "item_time_limit", 0.2),
        mock.patch.object(MarkRecords, "handle_many", None),
        mock.patch.object(MarkRecords, "handle", freeze_after_the_first),
        pytest.raises((OperationalError, InterfaceError)),  # the server ended its session
    ):
        runner.run_checkpoint(chunk_id)
    connection.close()

    # Gone with its transaction: its row lock too, so another runner could mark the record at once.
    assert in_another_thread(lambda: Record.objects.filter(ledger=ledger).update(marks=0), within=5) == 10
    assert not Record.objects.filter(ledger=ledger, marks__gt=0).exists()
    assert Chunk.objects.get(pk=chunk_id).cursor is None
    assert Batch.objects.get(pk=batch.pk).processed == 0
