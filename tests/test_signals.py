"""batches.signals: each sent once per transition of a batch, after its commit, whoever makes the change
(the web process, a worker, a worker that took over from one killed with SIGKILL); a receiver that
raises is logged and breaks nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection

from batches import operations
from batches.models import Batch, BatchStatus
from batches.operations import Operation
from batches.services import cancel_batch, start_batch
from batches.testing import run_batch
from tests.signal_log import SIGNALS, read_signal_log, signal_log
from tests.support import refreshed, wait_until
from tests.testapp.models import Record
from tests.testapp.operations import MarkRecords


@dataclass(frozen=True)
class Sent:
    signal: str
    sender: type | None
    batch_id: int
    status: str
    processed: int
    created_by: str | None


@pytest.fixture
def sent() -> Iterator[list[Sent]]:
    """Every signal this process sends during the test, in order."""
    received: list[Sent] = []
    lock = threading.Lock()
    receivers = []
    for name, signal in SIGNALS.items():

        def receive(sender: type | None, batch: Batch, _name: str = name, **kwargs: Any) -> None:
            user = batch.created_by.get_username() if batch.created_by else None
            with lock:
                received.append(Sent(_name, sender, batch.pk, batch.status, batch.processed, user))

        signal.connect(receive, weak=False)
        receivers.append((signal, receive))
    yield received
    for signal, receive in receivers:
        signal.disconnect(receive)


def names(sent: list[Sent]) -> list[str]:
    return [s.signal for s in sent]


class StampEveryRecord(Operation):
    """A host's operation that fails every item: over its limit of failures, the engine fails the batch."""

    name = "stamp_every_record"
    label = "Stamp every record"
    chunk_size = 10
    max_failures = 3

    class Params(Operation.Params):
        ledger_id: int

    def scope(self, params: Mapping[str, Any]) -> str:
        return f"ledger:{params['ledger_id']}"

    def may_act(self, user: Any, params: Mapping[str, Any]) -> bool:
        return user.is_authenticated

    def items(self, params: Mapping[str, Any]) -> Any:
        return Record.objects.filter(ledger_id=params["ledger_id"])

    def handle(self, item: Record, ctx: Any) -> None:
        raise ValueError(f"no ink for record {item.number}")


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_finished_batch_sends_created_started_and_finished_once_each(sent, quick_records, make_ledger, make_clerk):
    ledger = make_ledger(records=1200)
    batch = run_batch("mark_records", {"ledger_id": ledger.pk}, user=make_clerk("alice"))

    assert names(sent) == ["created", "started", "finished"]
    assert {(s.sender, s.batch_id, s.created_by) for s in sent} == {(MarkRecords, batch.pk, "alice")}
    created, started, finished = sent
    assert (created.status, started.status) == (BatchStatus.QUEUED, BatchStatus.RUNNING)
    # The receiver gets the batch as committed: at its finish, every item counted.
    assert (finished.status, finished.processed) == (BatchStatus.FINISHED, 1200)


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_batch_over_its_failure_limit_sends_failed_and_not_finished(sent, monkeypatch, make_ledger, make_clerk):
    monkeypatch.setitem(operations._registry, StampEveryRecord.name, StampEveryRecord())
    ledger = make_ledger(records=30)
    batch = run_batch(StampEveryRecord.name, {"ledger_id": ledger.pk}, user=make_clerk("alice"))

    assert batch.status == BatchStatus.FAILED and "more than 3 items failed" in batch.error
    assert names(sent) == ["created", "started", "failed"]
    assert {s.sender for s in sent} == {StampEveryRecord}


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_an_empty_scope_is_started_and_finished_at_once(sent, make_ledger, make_clerk):
    run_batch("mark_records", {"ledger_id": make_ledger(records=0).pk}, user=make_clerk("alice"))
    assert names(sent) == ["created", "started", "finished"]


@pytest.mark.both_backends
def test_a_batch_cancelled_while_queued_sends_cancelled_and_was_never_started(
    sent, make_ledger, make_clerk, django_capture_on_commit_callbacks
):
    alice = make_clerk("alice")
    with django_capture_on_commit_callbacks(execute=True):
        batch = start_batch(operation="mark_records", data={"ledger_id": make_ledger(records=5).pk}, user=alice).batch
    with django_capture_on_commit_callbacks(execute=True):
        cancel_batch(batch.pk, user=alice)
    with django_capture_on_commit_callbacks(execute=True):
        cancel_batch(batch.pk, user=alice)  # already over: no change, no signal

    assert names(sent) == ["created", "cancelled"]
    assert sent[1].status == BatchStatus.CANCELLED


@pytest.mark.django_db
def test_a_rolled_back_start_sends_nothing(sent, make_ledger, make_clerk):
    start_batch(operation="mark_records", data={"ledger_id": make_ledger(records=3).pk}, user=make_clerk("alice"))
    assert sent == []  # the test's transaction never commits


@pytest.mark.both_backends
@pytest.mark.django_db(transaction=True)
def test_a_receiver_that_raises_is_logged_and_the_batch_and_other_receivers_go_on(
    sent, caplog, quick_records, make_ledger, make_clerk
):
    def broken_webhook(sender: type, batch: Batch, **kwargs: Any) -> None:
        raise ConnectionError("the webhook's server is down")

    signal = SIGNALS["started"]
    signal.connect(broken_webhook)
    try:
        batch = run_batch("mark_records", {"ledger_id": make_ledger(records=40).pk}, user=make_clerk("alice"))
    finally:
        signal.disconnect(broken_webhook)

    assert batch.status == BatchStatus.FINISHED and batch.processed == 40
    assert names(sent) == ["created", "started", "finished"]
    (logged,) = [r for r in caplog.records if r.name == "django.dispatch"]
    assert logged.levelno == logging.ERROR and "broken_webhook" in logged.getMessage()
    assert "the webhook's server is down" in logged.getMessage() and logged.exc_info


@pytest.mark.django_db(transaction=True)
def test_concurrent_cancels_send_cancelled_once(sent, make_ledger, make_clerk):
    alice = make_clerk("alice")
    batch = start_batch(operation="mark_records", data={"ledger_id": make_ledger(records=5).pk}, user=alice).batch
    barrier = threading.Barrier(4)
    ended: list[bool] = []

    def cancel() -> None:
        try:
            barrier.wait()
            ended.append(cancel_batch(batch.pk, user=alice)[1])
        finally:
            connection.close()

    threads = [threading.Thread(target=cancel) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(ended) == [False, False, False, True]
    assert names(sent) == ["created", "cancelled"]


# --- from real worker processes ---------------------------------------------------------------

# A worker that logs every signal it sends to BATCHES_SIGNAL_LOG, with the short leases of the fault tests.
SIGNAL_WORKER_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.signal_log_site",
    "RECORDS_FAIL_EVERY": "97",
    "RECORDS_ITEM_TIME_LIMIT": "1",
    "BATCHES_LEASE_SECONDS": "1",
    "BATCHES_SWEEP_SECONDS": "0.5",
}


def of_batch(path, batch: Batch) -> list[dict[str, Any]]:
    return [line for line in read_signal_log(path) if line["batch"] == batch.pk]


def test_a_worker_sends_started_and_finished_once_each(worker_process, tmp_path, make_ledger, make_clerk):
    log = tmp_path / "signals.jsonl"
    worker = worker_process(4, **SIGNAL_WORKER_ENV, BATCHES_SIGNAL_LOG=str(log), RECORDS_ITEM_DELAY_MS="1")
    ledger = make_ledger(records=2000)  # 4 chunks, run side by side: their last checkpoints race to close it
    with signal_log(log):
        batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_until(lambda: not refreshed(batch).is_active, timeout=120, what="the batch to finish")
    worker.stop()  # every signal the worker was to send is in the log now

    lines = of_batch(log, batch)
    assert [line["signal"] for line in lines] == ["created", "started", "finished"]
    created, started, finished = lines
    assert created["pid"] != started["pid"], "started is sent by the worker that planned the batch"
    assert {line["sender"] for line in lines} == {"MarkRecords"}
    assert (finished["status"], finished["processed"], finished["total"]) == ("finished", 2000, 2000)


@pytest.mark.slow
def test_a_worker_killed_mid_run_does_not_make_the_batch_finish_twice(
    worker_process, tmp_path, make_ledger, make_clerk
):
    log = tmp_path / "signals.jsonl"
    env = {**SIGNAL_WORKER_ENV, "BATCHES_SIGNAL_LOG": str(log), "RECORDS_ITEM_DELAY_MS": "5"}
    first = worker_process(**env)
    ledger = make_ledger(records=1500)
    with signal_log(log):
        batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_until(lambda: refreshed(batch).processed > 200, timeout=60, what="progress")
    assert batch.is_active, "the batch finished before the kill; give it more work"

    first.kill()
    second = worker_process(**env)
    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")
    second.stop()

    assert batch.status == BatchStatus.FINISHED and batch.processed == 1500
    lines = of_batch(log, batch)
    assert [line["signal"] for line in lines] == ["created", "started", "finished"]
    assert lines[1]["pid"] != lines[2]["pid"], "the worker that took over finished it"
