"""A worker stopped by a signal, whichever way it comes (to the whole process group as systemd's
KillMode=control-group sends it, or to Dramatiq's main process as `docker stop` does; SIGTERM, SIGINT,
SIGQUIT): one clean hand-over, exit 0, its registry row marked stopped, and the other worker carries on
with every record exactly once. How soon the stopped worker's chunks move again is printed."""

from __future__ import annotations

import os
import signal
import time

import pytest

from batches.engine import middleware
from batches.models import BatchStatus, Chunk, Worker
from batches.services import start_batch
from tests.support import refreshed, registered_workers, wait_until
from tests.testapp.models import Record


def held_chunks(worker_id: int) -> dict[int, int]:
    return {pk: cursor or 0 for pk, cursor in Chunk.objects.filter(claimed_by=worker_id).values_list("pk", "cursor")}


def moved_again(chunks: dict[int, int]) -> bool:
    rows = {pk: (cursor or 0, finished) for pk, cursor, finished in
            Chunk.objects.filter(pk__in=chunks).values_list("pk", "cursor", "finished_at")}  # fmt: skip
    return all(rows[pk][1] is not None or rows[pk][0] > cursor for pk, cursor in chunks.items())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("to", "signum"),
    [
        # On RabbitMQ too: a graceful stop hands messages back to the broker. The other ways of
        # sending a stop differ only before the broker is reached, so they run on one broker.
        pytest.param("group", signal.SIGTERM, marks=pytest.mark.both_brokers),
        ("group", signal.SIGINT),
        ("group", signal.SIGQUIT),
        ("main", signal.SIGTERM),
        ("main", signal.SIGINT),
        ("main", signal.SIGQUIT),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_a_stop_signal_hands_over_once_and_exits_0(worker_process, make_ledger, make_clerk, to, signum):
    total = 2_000
    ledger = make_ledger(records=total)
    env = {"RECORDS_ITEM_DELAY_MS": "5", "BATCHES_MESSAGE_SECONDS": "600"}  # no message ends on its own meanwhile
    stopped = worker_process(**env)
    (stopped_id,) = registered_workers(1)
    worker_process(**env)
    registered_workers(2)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_until(lambda: held_chunks(stopped_id) and refreshed(batch).processed > 100, timeout=60, what="work")

    held = held_chunks(stopped_id)
    assert stopped.process is not None
    signalled_at = time.monotonic()
    if to == "group":
        os.killpg(stopped.process.pid, signum)
    else:
        stopped.process.send_signal(signum)

    # Well within a container's grace period; far below the 600 s a message may work on a chunk.
    returncode = stopped.process.wait(timeout=60)
    exited_after = time.monotonic() - signalled_at
    wait_until(lambda: moved_again(held), timeout=60, what="the stopped worker's chunks to move again")
    moving_after = time.monotonic() - signalled_at
    print(
        f"{signum.name} to the {to}: exit {returncode} after {exited_after:.1f}s; its chunks moving {moving_after:.1f}s"
    )
    log = stopped.log()
    assert returncode == 0, log
    assert "Killing worker process" not in log, "a repeated signal did not cut the hand-over short"
    row = Worker.objects.get(pk=stopped_id)
    assert row.gone_at is not None and row.gone_reason == "stopped", "it left the registry itself"
    assert not Chunk.objects.filter(claimed_by=stopped_id).exists(), "it held nothing when it left"

    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the other worker to finish the batch")
    records = Record.objects.filter(ledger=ledger)
    assert batch.status == BatchStatus.FINISHED, batch.error
    assert not records.filter(marks__gt=1).exists(), "a record was marked twice"
    assert batch.done_count == records.filter(marks=1).count()
    assert batch.done_count + batch.failed_count == batch.total == total
    assert batch.worker_lost_at is None, "a stop, not a loss"


def test_a_repeat_within_moments_is_the_same_stop_and_a_later_one_forces_the_exit():
    clock = [100.0]
    calls: list[int] = []
    stop = middleware._StopOnce(lambda signum, frame: calls.append(signum), clock=lambda: clock[0])

    stop(signal.SIGTERM, None)  # from the process group
    clock[0] += 0.01
    stop(signal.SIGTERM, None)  # forwarded by Dramatiq's main process
    stop(signal.SIGQUIT, None)
    assert calls == [signal.SIGTERM], "one stop: Dramatiq's handler saw it once"

    clock[0] += middleware.SAME_STOP_SECONDS
    stop(signal.SIGTERM, None)  # an operator who will not wait: Dramatiq's forced exit
    assert calls == [signal.SIGTERM, signal.SIGTERM]
