"""Faults short of a worker's death, with a real worker process: the worker cut off from Postgres
mid-checkpoint, or from the broker at its runners' hand-off, for 15 s, by a TCP proxy of the test's own
between the worker and the service (the machine's shared servers are never touched). The worker lives
on. The batch must move again soon after the cut ends, long before its lease would have run out (the
only way it moved again before), every ticket exactly once; and what its page says is never "Running"
while nothing has moved for longer than the stall threshold.

The engine's defaults (a 60 s lease: 30 s plus the demo's 30 s item time limit; a 15 s recovery sweep)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import dramatiq
import pytest
from django.conf import settings
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker

from batches.conf import batches_settings
from batches.engine.status import describe
from batches.models import Batch, Chunk
from batches.selectors import fresh
from batches.services import start_batch
from tests.support import TcpProxy, redis_server, refreshed, subprocess_database_url, wait_until
from tests.test_faults import assert_exactly_once

pytestmark = pytest.mark.slow

CUT_SECONDS = 15
TOTAL = 4_000  # 8 chunks of 500: more than the batch's 4 runners hold at once
RUNNERS = 4  # the demo operation's max_parallel, and the worker's threads


@dataclass
class Watch:
    """The batch as its page shows it, polled through a fault: for each poll, how long nothing had
    moved (by the test's own clock) and the condition shown."""

    batch: Batch
    shown: list[tuple[float, str, str]] = field(default_factory=list)
    processed: int = 0
    moved_at: float = field(default_factory=time.monotonic)

    def poll(self) -> Batch:
        batch = fresh(self.batch)
        now = time.monotonic()
        if batch.processed != self.processed:
            self.processed, self.moved_at = batch.processed, now
        condition = describe(batch)
        self.shown.append((now - self.moved_at, condition.code, condition.message))
        return batch

    def until(self, condition: Callable[[Batch], object], *, timeout: float, what: str) -> None:
        wait_until(lambda: condition(self.poll()), timeout=timeout, what=what)

    def through(self, seconds: float) -> None:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            self.poll()
            time.sleep(0.2)

    def lies(self) -> list[tuple[float, str, str]]:
        """'Running' shown while nothing had moved for longer than the stall threshold (and a poll)."""
        threshold = batches_settings.STALL_SECONDS + 1
        return [shown for shown in self.shown if shown[0] > threshold and shown[1] == "running"]


def every_runner_at_work(batch: Batch) -> bool:
    held = Chunk.objects.filter(batch=batch, claimed_by__isnull=False, finished_at__isnull=True).count()
    return batch.processed > 300 and held == RUNNERS


def cut_and_wait_for_progress(proxy: TcpProxy, batch: Batch, watch: Watch) -> tuple[float, datetime]:
    """Cut the proxy for CUT_SECONDS mid-batch, then wait until the batch moves again; (seconds from
    the cut's end to progress, the batch's lease as the cut began)."""
    watch.until(every_runner_at_work, timeout=120, what="every runner at work on a chunk")
    lease_at_cut = refreshed(batch).lease_expires_at
    proxy.cut()
    watch.through(CUT_SECONDS)
    before = watch.poll().processed
    proxy.restore()
    restored = time.monotonic()
    # Long enough for the old way (the lease, then a sweep) too, so that a failure says how long it took.
    patience = (lease_at_cut - timezone.now()).total_seconds() + batches_settings.SWEEP_SECONDS + 30
    watch.until(lambda shown: shown.processed > before, timeout=patience, what="the batch to move again")
    return time.monotonic() - restored, lease_at_cut


def test_a_database_cut_mid_checkpoint_lets_go_of_the_claims_and_moves_again_long_before_the_lease(
    worker_process, make_ledger, make_clerk
):
    ledger = make_ledger(records=TOTAL)
    database = urllib.parse.urlsplit(subprocess_database_url())
    with TcpProxy(database.hostname or "127.0.0.1", database.port or 5432) as proxy:
        credentials = database.netloc.rpartition("@")[0]
        proxied = urllib.parse.urlunsplit(database._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}"))
        worker = worker_process(threads=RUNNERS, DATABASE_URL=proxied, RECORDS_ITEM_DELAY_MS="10")
        batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
        watch = Watch(batch)

        moving_after, lease_at_cut = cut_and_wait_for_progress(proxy, batch, watch)
        print(f"database cut for {CUT_SECONDS}s mid-checkpoint: moving again {moving_after:.1f}s after it ended")
        assert timezone.now() < lease_at_cut, "moved again by the claims let go, not by the lease running out"

        watch.until(lambda shown: not shown.is_active, timeout=180, what="the batch to finish")
    assert_exactly_once(refreshed(batch), ledger, TOTAL)
    assert worker.process.poll() is None, "the worker rode out the cut"
    assert not watch.lies(), watch.lies()


@pytest.fixture
def broker_behind_a_proxy(tmp_path) -> Iterator[tuple[str, TcpProxy]]:
    """A `redis-server` of the test's own, which this process sends to directly, and a proxy in front
    of it for the worker: (the worker's REDIS_URL, the proxy)."""
    if settings.BROKER_KIND != "redis":
        pytest.skip("the broker cut is made on a Redis of the test's own")
    with redis_server(tmp_path / "redis") as server, TcpProxy("127.0.0.1", server.port) as proxy:
        shared = dramatiq.get_broker()
        dramatiq.set_broker(RedisBroker(url=server.url, namespace=settings.DRAMATIQ_BROKER["OPTIONS"]["namespace"]))
        try:
            yield f"redis://127.0.0.1:{proxy.port}/0", proxy
        finally:
            dramatiq.get_broker().close()
            dramatiq.set_broker(shared)


def test_a_broker_cut_at_the_hand_off_sends_the_lost_runners_again_when_it_is_back(
    worker_process, make_ledger, make_clerk, broker_behind_a_proxy
):
    broker_url, proxy = broker_behind_a_proxy
    ledger = make_ledger(records=TOTAL)
    # Runners hand over to a fresh message every second, so that each of them does during the cut.
    worker = worker_process(
        threads=RUNNERS, REDIS_URL=broker_url, BATCHES_MESSAGE_SECONDS="1", RECORDS_ITEM_DELAY_MS="10"
    )
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    watch = Watch(batch)

    moving_after, lease_at_cut = cut_and_wait_for_progress(proxy, batch, watch)
    print(f"broker cut for {CUT_SECONDS}s at the hand-off: moving again {moving_after:.1f}s after it ended")
    assert timezone.now() < lease_at_cut, "moved again by runners sent again, not by the lease running out"

    watch.until(lambda shown: not shown.is_active, timeout=180, what="the batch to finish")
    assert_exactly_once(refreshed(batch), ledger, TOTAL)
    assert worker.process.poll() is None, "the worker rode out the cut"
    assert not watch.lies(), watch.lies()
