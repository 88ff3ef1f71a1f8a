"""A status that never lies: each condition a batch can be in, derived from the batch row, the
chunk claims and the worker registry, in the one query that loads the batch."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from batches import formats, selectors
from batches.conf import batches_settings
from batches.engine import scheduler, shown_batch, state, status, workers
from batches.models import Batch, BatchStatus, Chunk, Worker

pytestmark = pytest.mark.both_backends


@pytest.fixture
def now():
    return timezone.now()


def worker(now, *, threads: int = 4, silent_for: float = 0, gone: bool = False) -> Worker:
    seen = now - timedelta(seconds=silent_for)
    return Worker.objects.create(
        host="elsewhere", pid=1, threads=threads, started_at=seen, heartbeat_at=seen, gone_at=now if gone else None
    )


def batch(now, *, state: str = BatchStatus.RUNNING, checkpoint_ago: float = 0.5, **fields) -> Batch:
    planned = state != BatchStatus.QUEUED
    fields = {
        "total": 100 if planned else None,
        "started_at": now - timedelta(minutes=1) if planned else None,
        "heartbeat_at": now - timedelta(seconds=checkpoint_ago) if planned else None,
        **fields,
    }
    return Batch.objects.create(
        operation="mark_records", scope_key=f"ledger:{Batch.objects.count() + 1}", status=state, **fields
    )


def claim(batch: Batch, by: Worker, index: int = 0) -> Chunk:
    return Chunk.objects.create(batch=batch, index=index, last_key=index + 1, size=1, claimed_by=by)


def condition(batch: Batch, now, *, described_at=None) -> status.Condition:
    """The batch's condition, as polled at `now` and (if given) described at a later moment."""
    return status.describe(status.with_liveness(Batch.objects.filter(pk=batch.pk), now).get(), described_at or now)


def test_no_worker_running_says_since_when_in_plain_words(db, now):
    worker(now, silent_for=120)
    queued = batch(now, state=BatchStatus.QUEUED)
    said = condition(queued, now)
    clock = formats.clock(now - timedelta(seconds=120), seconds=True)
    assert said.code == "no_worker" and not said.moving
    assert said.message == f"No worker is running since {clock}. This batch will start when one does."
    assert said.since == now - timedelta(seconds=120)


def test_a_started_batch_without_a_worker_is_paused_and_says_where_it_resumes(db, now):
    dead = worker(now, silent_for=30)
    running = batch(now, checkpoint_ago=30, done_count=1_200, failed_count=34)
    claim(running, dead)
    said = condition(running, now)
    clock = formats.clock(dead.heartbeat_at, seconds=True)
    assert said.code == "paused" and not said.moving
    assert said.message == f"Paused: no worker is running since {clock}. It resumes from item 1,235 when one starts."


def test_a_lost_worker_is_told_by_one_time_before_and_after_a_worker_comes_back(db, now):
    dead = worker(now, silent_for=30)
    running = batch(now, checkpoint_ago=30, done_count=41)
    claim(running, dead)
    before = condition(running, now)

    worker(now)  # one starts, and its first sweep finds the dead one
    assert workers.sweep_dead(now) == [dead.pk]
    after = condition(running, now)

    clock = formats.clock(dead.heartbeat_at, seconds=True)
    assert (before.code, after.code) == ("paused", "worker_lost")
    assert f"since {clock}." in before.message and "resumes from item 42 " in before.message
    assert after.message == f"A worker was lost at {clock}; resuming from item 42."
    assert before.since == after.since == dead.heartbeat_at


def test_time_left_is_unknown_while_nothing_moves_and_the_rate_leaves_the_pause_out(db, now):
    # 60 items in the minute up to its last checkpoint, then five minutes without a worker.
    dead = worker(now, silent_for=300)
    paused = batch(now, checkpoint_ago=300, done_count=60, started_at=now - timedelta(minutes=6))
    chunk = claim(paused, dead)
    said = condition(paused, now)
    figures = selectors.progress(Batch.objects.get(pk=paused.pk), now, moving=said.moving)
    assert said.code == "paused" and figures.eta is None
    assert figures.rate == pytest.approx(1.0), "the rate it had, not one averaged over the pause"

    alive = worker(now)
    workers.sweep_dead(now)
    # Moving again: 6 items in the 6 s after the resume.
    Chunk.objects.filter(pk=chunk.pk).update(claimed_by=alive, handed_over_at=None)
    Batch.objects.filter(pk=paused.pk).update(done_count=66, heartbeat_at=now + timedelta(seconds=6))
    later = now + timedelta(seconds=6)
    said = condition(paused, later)
    figures = selectors.progress(Batch.objects.get(pk=paused.pk), later, moving=said.moving)
    assert said.moving
    assert figures.rate == pytest.approx(1.0) and figures.eta == timedelta(seconds=34)


def test_a_poll_between_two_checkpoints_neither_lowers_the_rate_nor_counts_down(db, now):
    pool = worker(now)
    running = batch(now, checkpoint_ago=0, done_count=30)
    claim(running, pool)
    seen = [
        selectors.progress(running, now + timedelta(seconds=s), moving=True) for s in (0, 3)
    ]  # the next checkpoint is late
    assert seen[0].rate == seen[1].rate == pytest.approx(0.5) and seen[0].eta == seen[1].eta


@pytest.mark.parametrize("staff", [False, True])
def test_how_to_start_a_worker_is_shown_to_staff_only_and_never_announced(db, now, client, make_clerk, staff):
    viewer = make_clerk("alice", is_staff=staff)
    client.force_login(viewer)
    worker(now, silent_for=60)
    running = batch(now, checkpoint_ago=60, done_count=7, created_by=viewer)
    response = client.get(f"/batches/{running.pk}/progress/?shown=running", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert 'data-condition="paused"' in html and "It resumes from item 8 when one starts." in html
    assert ("<code>python manage.py rundramatiq</code>" in html) is staff
    announced = re.search(r'data-announce="([^"]*)"', html).group(1)
    assert "Paused: no worker is running since" in announced
    assert not re.search(r"[<>`]|&lt;|rundramatiq", announced), "plain words only"


def test_queued_says_how_many_batches_are_ahead_or_that_every_thread_is_busy(db, now):
    pool = worker(now, threads=2)
    first = batch(now, state=BatchStatus.QUEUED)
    second = batch(now, state=BatchStatus.QUEUED)
    assert condition(second, now).message == "Queued: 1 batch ahead of it."
    busy = batch(now)
    claim(busy, pool, 0)
    claim(busy, pool, 1)
    said = condition(first, now)
    assert (said.code, said.message) == ("queued", "Queued: every worker thread is busy (2 of 2).")


def test_running(db, now):
    pool = worker(now)
    running = batch(now)
    claim(running, pool)
    assert condition(running, now).code == "running"


def test_a_lost_worker_shows_until_its_chunks_have_moved_again_and_long_enough_to_read(db, now):
    alive, dead = worker(now), worker(now, silent_for=30)
    running = batch(now, processed_at_loss=41)
    claim(running, alive, 0)
    lost = claim(running, dead, 1)
    assert state.hand_over(dead.pk, lost=True, now=now) == 1
    said = condition(running, now)
    assert said.code == "worker_lost" and said.since == dead.heartbeat_at, "told by when it was last heard from"
    assert not said.moving, "its chunk waits for a thread"
    assert "A worker was lost at" in said.message and "resuming from item" in said.message
    # Its next checkpoint, a second later:
    Chunk.objects.filter(pk=lost.pk).update(claimed_by=alive, handed_over_at=None)
    Batch.objects.filter(pk=running.pk).update(heartbeat_at=now + timedelta(seconds=1))
    shown = condition(running, now, described_at=now + timedelta(seconds=2))
    assert shown.code == "worker_lost" and shown.moving, "long enough to read"
    assert condition(running, now, described_at=now + status.LOST_NOTICE).code == "running"


def test_a_lost_worker_shows_while_its_chunks_wait_for_a_thread_however_long(db, now):
    worker(now)  # a live worker, all of whose threads are busy elsewhere
    dead = worker(now, silent_for=30)
    running = batch(now)
    claim(running, dead)
    state.hand_over(dead.pk, lost=True, now=now)
    assert condition(running, now, described_at=now + 3 * status.LOST_NOTICE).code == "worker_lost"


def test_stalled_names_the_last_checkpoint_while_workers_are_alive(db, now, settings):
    pool = worker(now)
    stuck = batch(now, checkpoint_ago=batches_settings.STALL_SECONDS + 5)
    claim(stuck, pool)
    said = condition(stuck, now)
    assert said.code == "stalled" and "no progress since" in said.message
    assert said.since == stuck.heartbeat_at


def test_waiting_for_its_turn_when_every_thread_is_busy_with_other_batches(db, now, settings):
    pool = worker(now, threads=1)
    claim(batch(now), pool)
    waiting = batch(now, checkpoint_ago=batches_settings.STALL_SECONDS + 5)
    said = condition(waiting, now)
    assert (said.code, said.message) == ("waiting", "Waiting for its turn: every worker thread is busy (1 of 1).")


def test_runners_lost_at_a_hand_off_say_so_never_running(db, now, settings):
    """A broker cut at the runners' hand-off: the chunks are let go, the successors never sent; the
    worker is alive and idle. First a short wait for the broker, then stalled, its runners sent again."""
    worker(now)
    lease_ends = now + timedelta(seconds=40)
    orphaned = batch(now, checkpoint_ago=5, lease_expires_at=lease_ends, done_count=300)
    for index in range(3):
        Chunk.objects.create(batch=orphaned, index=index, last_key=index + 1, size=1)
    last = formats.clock(orphaned.heartbeat_at, seconds=True)

    waiting = condition(orphaned, now)
    assert (waiting.code, waiting.message) == (
        "waiting",
        f"Waiting for the broker: no worker has taken up its work since {last}.",
    )
    assert not waiting.moving and waiting.since == orphaned.heartbeat_at

    later = now + timedelta(seconds=batches_settings.STALL_SECONDS)
    stalled = condition(orphaned, now, described_at=later)
    assert stalled.code == "stalled" and not stalled.moving
    assert stalled.message == (
        f"Stalled: no worker has taken up its work since {last}."
        " Its runners are sent again every few seconds until one does."
    )


def test_claims_left_behind_by_a_cut_say_stalled_and_when_it_resumes(db, now, settings):
    """A database cut: the worker lives on, its runners died mid-checkpoint holding their claims."""
    pool = worker(now)
    lease_ends = now + timedelta(seconds=20)
    stuck = batch(now, checkpoint_ago=batches_settings.STALL_SECONDS + 1, lease_expires_at=lease_ends)
    claim(stuck, pool)
    said = condition(stuck, now)
    resumes = formats.clock(lease_ends + timedelta(seconds=batches_settings.SWEEP_SECONDS), seconds=True)
    assert said.code == "stalled" and said.message.endswith(
        f"its worker is alive. Resuming by {resumes} at the latest."
    )


def test_a_runner_hand_off_between_two_checkpoints_is_still_running(db, now):
    worker(now)
    handing_off = batch(now, checkpoint_ago=0.5)
    Chunk.objects.create(batch=handing_off, index=0, last_key=1, size=1)  # let go; its successor is on its way
    assert condition(handing_off, now).code == "running"


@pytest.mark.parametrize("quiet", [5, 11, 60, 600])
@pytest.mark.parametrize("pool_busy", [False, True])
def test_a_running_batch_without_a_claim_is_never_said_to_be_running(db, now, quiet, pool_busy):
    pool = worker(now, threads=1)
    if pool_busy:
        claim(batch(now), pool)
    unclaimed = batch(now, checkpoint_ago=quiet, lease_expires_at=now + timedelta(seconds=30))
    Chunk.objects.create(batch=unclaimed, index=0, last_key=1, size=1)
    said = condition(unclaimed, now)
    assert said.code != "running" and not said.moving, said


def test_ended_batches_keep_their_status(db, now):
    worker(now, gone=True)
    for ended in (BatchStatus.FINISHED, BatchStatus.FAILED, BatchStatus.CANCELLED):
        assert condition(batch(now, state=ended), now).code == ended


def test_liveness_comes_in_the_batchs_own_query(db, now):
    pool = worker(now)
    running = batch(now)
    claim(running, pool)
    with CaptureQueriesContext(connection) as queries:
        condition(running, now)
    assert len(queries) == 1


def demand(batch_id: int, key: str, wants: int, claims: int = 0, served: int = 0, weight: float = 1.0):
    return scheduler.Demand(batch_id, key, weight, claims, wants, 4, timezone.now() - timedelta(seconds=served))


def test_shares_split_the_pool_by_key_and_weight_and_never_beyond_what_a_batch_can_use():
    alone = scheduler.shares([demand(1, "a", wants=8)], threads=4)
    assert alone == {1: 4}, "a batch alone has the whole pool"
    big_and_small = scheduler.shares([demand(1, "b1", wants=4, claims=4), demand(2, "b2", wants=1)], threads=4)
    assert big_and_small == {1: 3, 2: 1}
    per_user = scheduler.shares(
        [*(demand(i, "user:a", wants=4) for i in range(1, 5)), demand(5, "user:b", wants=4)], threads=4
    )
    assert sum(per_user[i] for i in range(1, 5)) == 2 and per_user[5] == 2
    weighted = scheduler.shares([demand(1, "gold", wants=8, weight=3), demand(2, "free", wants=8)], threads=8)
    assert weighted == {1: 6, 2: 2}


def test_batches_that_cannot_all_run_take_turns_least_recently_served_first():
    waiting = [demand(1, "k1", wants=1, claims=1, served=0), demand(2, "k2", wants=1, served=30)]
    assert scheduler.shares(waiting, threads=1) == {1: 0, 2: 1}


def test_a_runner_beyond_max_parallel_ends_instead_of_running_a_chunk_more(db, now):
    pool = worker(now, threads=8)
    running = batch(now, max_parallel=2)
    claim(running, pool, 0)
    claim(running, pool, 1)
    Chunk.objects.create(batch=running, index=2, last_key=3, size=1)
    assert scheduler.verdict(running.pk) is scheduler.Verdict.ENOUGH
    Chunk.objects.filter(batch=running, index=1).update(claimed_by=None)
    assert scheduler.verdict(running.pk) is scheduler.Verdict.GO


def test_the_one_batch_read_gives_what_the_orm_query_gives_in_one_query(db, now, make_clerk):
    alice = make_clerk("alice")
    pool, dead = worker(now), worker(now, silent_for=30)
    running = batch(now, created_by=alice, cancelled_by=alice, params={"ledger_id": 7}, worker_lost_at=now)
    claim(running, pool, 0)
    claim(running, dead, 1)
    batch(now, state=BatchStatus.QUEUED)
    expected = selectors.shown_batches().get(pk=running.pk)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(2):  # prepared once per connection (Postgres), then only executed
            loaded = shown_batch.load(running.pk)
    assert len(queries) == 2
    fields = [field.attname for field in Batch._meta.concrete_fields]
    assert [getattr(loaded, name) for name in fields] == [getattr(expected, name) for name in fields]
    assert loaded.created_by == loaded.cancelled_by == alice and loaded.created_by.get_username() == "alice"
    for name in status.LIVENESS_SQL:
        assert getattr(loaded, name) == getattr(expected, name), name
    assert loaded.live_threads == 4 and loaded.own_claims == 1, "the dead worker's claim is not a live one"
    assert shown_batch.load(running.pk + 100) is None and shown_batch.load(2**70) is None


def test_shared_poll_answers_show_each_change_at_once_and_only_to_whom_it_is_for(db, now, client, make_clerk):
    alice, staff = make_clerk("alice"), make_clerk("sam", is_staff=True)
    worker(now, silent_for=60)
    paused = batch(now, checkpoint_ago=60, done_count=7, created_by=alice)
    url = f"/batches/{paused.pk}/progress/?shown=running"

    def poll(user) -> str:
        client.force_login(user)
        return client.get(url, headers={"HX-Request": "true"}).content.decode()

    first = poll(alice)
    assert 'data-figure="done">7<' in first and poll(alice) == first
    assert "rundramatiq" in poll(staff) and "rundramatiq" not in poll(alice)
    Batch.objects.filter(pk=paused.pk).update(done_count=8, heartbeat_at=now)
    moved = poll(alice)
    assert 'data-figure="done">8<' in moved and "It resumes from item 9 when one starts." in moved
