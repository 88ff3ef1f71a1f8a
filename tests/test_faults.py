"""Fault injection against real `rundramatiq` processes on Postgres and Redis (RabbitMQ with
BROKER_URL): workers killed with SIGKILL, the broker flushed or restarted, database connections
terminated. The batch must still complete, each record's effect exactly once, the counters equal to
the truth in the tables."""

import os
import random
import signal
import time
import urllib.parse
from collections.abc import Callable, Iterator

import dramatiq
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from batches.conf import batches_settings
from batches.models import Batch, BatchStatus, Chunk, ItemFailure, Worker
from batches.services import cancel_batch, start_batch
from tests.support import TcpProxy, flush_broker, redis_server, refreshed, wait_until
from tests.testapp.models import Record

pytestmark = pytest.mark.slow

# Short leases and a fast sweep, so that a dead worker's batch is picked up within seconds.
FAULT_ENV = {
    "RECORDS_FAIL_EVERY": "97",
    "RECORDS_ITEM_TIME_LIMIT": "1",
    "BATCHES_LEASE_SECONDS": "1",
    "BATCHES_SWEEP_SECONDS": "0.5",
}


def wait_for_progress(batch: Batch, beyond: int, timeout: float = 60) -> None:
    wait_until(lambda: refreshed(batch).processed > beyond or not batch.is_active, timeout=timeout, what="progress")


def assert_exactly_once(batch: Batch, ledger, total: int) -> None:
    records = Record.objects.filter(ledger=ledger)
    assert batch.status == BatchStatus.FINISHED, batch.error
    assert batch.total == total
    assert not records.filter(marks__gt=1).exists(), "a record was marked twice"
    assert batch.done_count == records.filter(marks=1).count()
    failed_numbers = set(records.filter(marks=0).values_list("number", flat=True))
    assert failed_numbers == set(range(97, total + 1, 97))
    assert batch.failed_count == ItemFailure.objects.filter(batch=batch).count() == len(failed_numbers)
    assert batch.done_count + batch.failed_count == total and batch.skipped_count == 0


@pytest.mark.both_brokers  # what a dead consumer leaves on the broker differs
def test_kill_9_at_ten_random_moments_loses_nothing_and_repeats_nothing(worker_process, make_ledger, make_clerk):
    total, kills = 2400, 10
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"kill moments seeded with {seed}")
    ledger = make_ledger(records=total)
    worker = worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="10")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch

    for _ in range(kills):
        wait_for_progress(batch, beyond=batch.processed)
        assert batch.is_active, f"the batch finished before all {kills} kills; give it more work"
        time.sleep(rng.uniform(0, 0.5))  # a random moment: mid-item, mid-commit, between checkpoints
        worker.kill()
        worker = worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="10")

    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")
    assert_exactly_once(batch, ledger, total)
    assert batch.recoveries == 0, "the last checkpoints reset the recovery count"


@pytest.mark.both_brokers
def test_a_flushed_broker_mid_batch_is_recovered_by_the_sweep(worker_process, make_ledger, make_clerk):
    total = 2000
    ledger = make_ledger(records=total)
    worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="3")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_for_progress(batch, beyond=100)
    assert batch.is_active

    flush_broker()  # every queued message is gone

    wait_until(lambda: not refreshed(batch).is_active, timeout=120, what="the batch to finish")
    assert_exactly_once(batch, ledger, total)


@pytest.fixture
def broker_to_restart(tmp_path) -> Iterator[tuple[dict[str, str], Callable[[], str]]]:
    """A broker this test may take down, and the environment that points a worker at it.

    Redis: a `redis-server` of the test's own, which this process sends to as well, restarted
    without persistence (every message gone). RabbitMQ: the shared server behind a proxy of the
    test's own, whose cut resets the worker's connections and refuses new ones for a while (as a
    restart would; unacked messages go back to the queue). The shared servers are never touched."""
    if settings.BROKER_KIND == "redis":
        with redis_server(tmp_path / "redis") as server:
            shared = dramatiq.get_broker()
            dramatiq.set_broker(RedisBroker(url=server.url, namespace=settings.DRAMATIQ_BROKER["OPTIONS"]["namespace"]))
            try:
                yield {"REDIS_URL": server.url}, server.restart
            finally:
                dramatiq.get_broker().close()
                dramatiq.set_broker(shared)
        return
    url = urllib.parse.urlsplit(settings.BROKER_URL)
    with TcpProxy(url.hostname or "127.0.0.1", url.port or 5672) as proxy:
        credentials = f"{url.username}:{url.password}@" if url.username else ""
        proxied = urllib.parse.urlunsplit(url._replace(netloc=f"{credentials}127.0.0.1:{proxy.port}"))
        yield {"BROKER_URL": proxied}, lambda: proxy.outage(3)


@pytest.mark.both_brokers
def test_a_broker_restart_mid_batch_loses_nothing_and_repeats_nothing(
    worker_process, make_ledger, make_clerk, broker_to_restart
):
    broker_env, restart = broker_to_restart
    total = 2000
    ledger = make_ledger(records=total)
    worker = worker_process(**FAULT_ENV, **broker_env, RECORDS_ITEM_DELAY_MS="3")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_for_progress(batch, beyond=100)
    assert batch.is_active

    print(restart())

    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")
    assert_exactly_once(batch, ledger, total)
    assert worker.process.poll() is None, "the worker rode out the restart"


def test_terminated_database_connections_mid_batch_are_retried_with_exact_counts(
    worker_process, make_ledger, make_clerk
):
    total = 2000
    ledger = make_ledger(records=total)
    worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="3")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch

    terminated = 0
    for beyond in (100, 700, 1300):
        wait_for_progress(batch, beyond=beyond)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated += cursor.fetchone()[0]

    assert terminated >= 3, "the worker's connections were there to terminate"
    wait_until(lambda: not refreshed(batch).is_active, timeout=120, what="the batch to finish")
    assert_exactly_once(batch, ledger, total)


def test_cancel_mid_run_stops_the_worker_within_the_bound_and_frees_the_scope(worker_process, make_ledger, make_clerk):
    ledger = make_ledger(records=2000)
    alice = make_clerk("alice")
    worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="20")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).batch
    wait_for_progress(batch, beyond=50)

    cancelled, ended = cancel_batch(batch.pk, user=alice)
    assert ended and cancelled.status == BatchStatus.CANCELLED
    assert not Batch.objects.active().exists(), "the scope is free at once"

    def marked() -> int:
        return Record.objects.filter(ledger=ledger, marks__gt=0).count()

    # The bound: one item or one second, whichever is longer. Then nothing more may change.
    time.sleep(1.0)
    after_bound = marked()
    cancelled.refresh_from_db()
    assert after_bound == cancelled.done_count, "the checkpoint under way at the cancel was rolled back"
    assert cancelled.skipped_count == 2000 - cancelled.done_count - cancelled.failed_count
    time.sleep(1.0)
    assert marked() == after_bound, "the worker kept working after the cancel"
    assert start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).created


@pytest.mark.both_brokers  # a graceful stop hands messages back to the broker
def test_a_deploy_sigterm_hands_over_at_the_next_checkpoint_and_a_new_worker_finishes(
    worker_process, make_ledger, make_clerk
):
    total = 2000
    ledger = make_ledger(records=total)
    worker = worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="10", BATCHES_MESSAGE_SECONDS="600")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_for_progress(batch, beyond=100)

    worker.process.terminate()
    # Within a container's usual grace period, far below the 600 s a message may work on a chunk.
    worker.process.wait(timeout=10)
    assert refreshed(batch).is_active

    worker_process(**FAULT_ENV, RECORDS_ITEM_DELAY_MS="1")
    wait_until(lambda: not refreshed(batch).is_active, timeout=120, what="the batch to finish")
    assert_exactly_once(batch, ledger, total)


FREEZE_SECONDS = 20


def test_a_frozen_worker_is_handed_over_without_waiting_for_it_and_its_checkpoint_is_refused(
    worker_process, make_ledger, make_clerk
):
    """SIGSTOP one of two workers for 20 s mid-batch (a stop-the-world pause, a VM migration): the
    survivor declares it dead after the silence limit and its chunks move again while it is still
    frozen; the survivor's heartbeat never ages past half the silence limit meanwhile; once continued,
    the frozen worker's checkpoint under way does not commit. The engine's defaults, but for a 1 s item
    time limit (so that a checkpoint's transaction dies on the server 6.5 s into a freeze)."""
    total = 6000
    ledger = make_ledger(records=total)
    env = {"RECORDS_FAIL_EVERY": "97", "RECORDS_ITEM_TIME_LIMIT": "1", "RECORDS_ITEM_DELAY_MS": "10"}
    frozen, survivor = worker_process(**env), worker_process(**env)
    workers = wait_until(
        lambda: len(rows := list(Worker.objects.filter(gone_at__isnull=True))) == 2 and rows,
        timeout=60,
        what="two registered workers",
    )
    frozen_id = next(row.pk for row in workers if os.getpgid(row.pid) == frozen.process.pid)
    survivor_id = next(row.pk for row in workers if row.pk != frozen_id)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_until(
        lambda: (
            Chunk.objects.filter(batch=batch, claimed_by=frozen_id, finished_at__isnull=True).exists()
            and refreshed(batch).processed > 300
        ),
        timeout=60,
        what="the worker to be frozen at work on a chunk",
    )

    os.killpg(frozen.process.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        held = dict(
            Chunk.objects.filter(batch=batch, claimed_by=frozen_id, finished_at__isnull=True).values_list(
                "pk", "cursor"
            )
        )
        ages: list[float] = []
        moved_after = None
        while time.monotonic() - stopped < FREEZE_SECONDS:
            heard = Worker.objects.filter(pk=survivor_id).values_list("heartbeat_at", flat=True).get()
            ages.append((timezone.now() - heard).total_seconds())
            moved = Chunk.objects.filter(pk__in=held).exclude(claimed_by=frozen_id)
            if moved_after is None and any(
                cursor != held[pk] or finished
                for pk, cursor, finished in moved.values_list("pk", "cursor", "finished_at")
            ):
                moved_after = time.monotonic() - stopped
            time.sleep(0.2)
    finally:
        os.killpg(frozen.process.pid, signal.SIGCONT)

    print(
        f"frozen for {FREEZE_SECONDS}s: its chunks moving again {moved_after and round(moved_after, 1)}s into the"
        f" freeze; survivor's heartbeat at most {max(ages):.1f}s old"
    )
    assert held, "the frozen worker held a chunk"
    assert moved_after is not None, "the frozen worker's chunks moved on while it was still stopped"
    assert max(ages) <= batches_settings.WORKER_SILENCE_SECONDS / 2, "the survivor's heartbeat never waited"

    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")
    assert_exactly_once(batch, ledger, total)
    wait_until(
        lambda: "declared dead while alive" in frozen.log(), timeout=30, what="the frozen worker to wake to its death"
    )
    log = frozen.log()
    # Refused for its token, or ended by the server (idle in its transaction past the item time limit).
    assert "refused" in log or "server closed the connection" in log, "its checkpoint under way did not commit"
    assert frozen.process.poll() is None and survivor.process.poll() is None
