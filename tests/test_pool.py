"""Many batches on one pool of real `rundramatiq` processes: a small batch is not stuck behind a big
one, a fairness key shares the pool per user, and a worker killed with SIGKILL has its chunks moving
again once the registry declares it dead, each record still exactly once. How soon, with the default
settings, is `make bench` row 8."""

from __future__ import annotations

import pytest
from django.db.models import Sum
from django.utils import timezone

from batches.models import Batch, BatchStatus, Chunk, Worker
from batches.services import start_batch
from tests.support import refreshed, wait_until
from tests.testapp.models import Record
from tests.testapp.operations import MarkRecords

pytestmark = pytest.mark.slow

# The engine's settings are the defaults, but for a shorter silence before a killed worker is declared
# dead (10 s by default: the bench measures that) and shorter simulated work.
QUICKER = {
    "RECORDS_ITEM_DELAY_MS": "10",
    "BATCHES_WORKER_HEARTBEAT_SECONDS": "0.5",
    "BATCHES_WORKER_SILENCE_SECONDS": "3",
}


def start(ledger, user) -> Batch:
    return start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=user).batch


def registered(count: int) -> list[int]:
    """Wait for `count` live workers in the registry; their ids."""

    def live() -> list[int]:
        ids = list(Worker.objects.filter(gone_at__isnull=True).values_list("pk", flat=True))
        return sorted(ids) if len(ids) >= count else []

    return wait_until(live, timeout=60, what=f"{count} registered worker(s)")


def assert_exact(batch: Batch, ledger) -> None:
    batch = refreshed(batch)
    records = Record.objects.filter(ledger=ledger)
    assert batch.status == BatchStatus.FINISHED, batch.error
    assert not records.filter(marks__gt=1).exists(), "a record was marked twice"
    assert batch.done_count == records.filter(marks=1).count()
    assert batch.done_count + batch.failed_count == batch.total == records.count()


def test_a_small_batch_is_not_stuck_behind_a_big_one(worker_process, make_ledger, make_clerk):
    alice, bob = make_clerk("alice"), make_clerk("bob")
    small, big = make_ledger(20), make_ledger(6_000)
    worker_process(threads=4)
    registered(1)

    big_batch = start(big, alice)
    wait_until(lambda: refreshed(big_batch).processed > 100, timeout=60, what="the big batch to be under way")
    small_batch = start(small, bob)
    wait_until(lambda: not refreshed(small_batch).is_active, timeout=60, what="the small batch to finish")

    # The big batch (≥ 60 s of work on this pool) was still running: the small one did not wait for it.
    # How soon it finished, against its time alone, is `make bench` row 8.
    big_batch = refreshed(big_batch)
    assert big_batch.is_active and big_batch.processed < big_batch.total / 2
    Batch.objects.filter(pk=big_batch.pk).update(status=BatchStatus.CANCELLED)  # no need to wait for it
    assert_exact(small_batch, small)


def test_a_fairness_key_per_user_shares_the_pool_per_user(worker_process, make_ledger, make_clerk, monkeypatch):
    alice, bob = make_clerk("alice"), make_clerk("bob")
    worker_process(threads=4)
    registered(1)
    monkeypatch.setattr(MarkRecords, "fairness", lambda self, params, user: (f"user:{user.pk}", 1.0))
    alices = [start(make_ledger(3_000), alice) for _ in range(4)]
    bobs = start(make_ledger(3_000), bob)

    def done(batches: list[Batch]) -> int:
        return Batch.objects.filter(pk__in=[b.pk for b in batches]).aggregate(n=Sum("done_count"))["n"] or 0

    wait_until(lambda: done([bobs]) > 50, timeout=60, what="bob's batch to be under way")
    before = done(alices), done([bobs])
    wait_until(lambda: done([bobs]) > before[1] + 200, timeout=60, what="bob's batch to do 200 more")
    after = done(alices), done([bobs])
    alices_gain, bobs_gain = after[0] - before[0], after[1] - before[1]
    print(f"per-user key: while bob's 1 batch did {bobs_gain}, alice's 4 did {alices_gain} in all")
    assert all(refreshed(b).is_active for b in [*alices, bobs]), "all ran through the window"
    # Half the pool per user: bob's one batch does about what alice's four do together (1.0; the
    # ratio over a fixed window is `make bench` row 8). With each batch its own key, bob's would
    # do a quarter of theirs (0.25).
    assert bobs_gain >= 0.5 * alices_gain
    Batch.objects.filter(status=BatchStatus.RUNNING).update(status=BatchStatus.CANCELLED)


def held_chunks(worker_ids: list[int]) -> dict[int, int]:
    """The chunks these workers hold now, with their cursors."""
    return {
        pk: cursor or 0 for pk, cursor in Chunk.objects.filter(claimed_by__in=worker_ids).values_list("pk", "cursor")
    }


def moved_again(chunks: dict[int, int]) -> bool:
    now = dict(Chunk.objects.filter(pk__in=chunks).values_list("pk", "cursor"))
    finished = set(Chunk.objects.filter(pk__in=chunks, finished_at__isnull=False).values_list("pk", flat=True))
    return all(pk in finished or (now[pk] or 0) > cursor for pk, cursor in chunks.items())


@pytest.mark.parametrize(
    "restart",
    [
        # The survivor takes over on either broker (RabbitMQ hands the unacked messages back at once).
        pytest.param(False, id="two-workers", marks=pytest.mark.both_brokers),
        pytest.param(True, id="one-worker-restarted"),
    ],
)
def test_a_killed_workers_chunks_move_again(worker_process, make_ledger, make_clerk, restart):
    ledger = make_ledger(2_000)
    first = worker_process(threads=2, **QUICKER)
    (first_id,) = registered(1)
    if not restart:
        worker_process(threads=2, **QUICKER)
        registered(2)
    batch = start(ledger, make_clerk("alice"))
    wait_until(lambda: held_chunks([first_id]) and refreshed(batch).processed > 100, timeout=60, what="work")

    held = held_chunks([first_id])
    # Taken before the kill: a survivor's sweep may find the process gone before kill() has reaped it.
    kill_time = timezone.now()
    first.kill()
    if restart:
        worker_process(threads=2, **QUICKER)
    # Moving again once the registry declares the worker dead (3 s of silence here); far sooner than
    # Redis's own redelivery of a dead worker's messages (its heartbeat timeout, 60 s).
    wait_until(lambda: moved_again(held), timeout=30, what="the dead worker's chunks to move again")
    declared = Worker.objects.get(pk=first_id).gone_at
    assert declared is not None and declared > kill_time, "declared dead by the registry, after the kill"
    print(f"{len(held)} chunk(s) held by the killed worker moved again; declared dead {declared - kill_time} after")
    assert refreshed(batch).worker_lost_at is not None

    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")
    assert_exact(batch, ledger)
    assert Worker.objects.get(pk=first_id).gone_at is not None
    assert batch.heartbeat_at > batch.worker_lost_at, "running again after the loss"
