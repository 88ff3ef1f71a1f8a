"""A runner that fails lets go: its claim is released on the way out, or, when the database would not
let it, by its own worker's next sweep; and a running batch no runner is at work on is sent runners
again (workers.sweep_runners). The fault tests with real workers are in tests/test_cut_off.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from batches.engine import dispatch, runner, state, workers
from batches.models import Batch, Chunk, Worker
from batches.operations import get_operation
from tests.test_status import batch, claim, worker

pytestmark = pytest.mark.both_backends


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def me(now, monkeypatch) -> Worker:
    """This process, registered as a worker of 4 threads, running nothing yet."""
    registered = worker(now)
    monkeypatch.setattr(workers.me, "worker_id", registered.pk)
    monkeypatch.setattr(workers.me, "running", workers.RunningChunks())
    return registered


@pytest.fixture
def nobody_here(monkeypatch) -> None:
    """This process is no worker (a web process): it only tops batches up."""
    monkeypatch.setattr(workers.me, "worker_id", None)
    monkeypatch.setattr(workers.me, "running", workers.RunningChunks())


def chunks(of: Batch, count: int) -> list[Chunk]:
    return [Chunk.objects.create(batch=of, index=index, last_key=index + 1, size=1) for index in range(count)]


def claimed_by(chunk: Chunk) -> int | None:
    chunk.refresh_from_db()
    return chunk.claimed_by_id


def test_a_claim_being_made_is_never_taken_for_one_whose_runner_is_gone():
    running = workers.RunningChunks()
    with running.claiming():
        assert running.snapshot() is None, "mid-claim: no list to go by"
        running.hold(7)
    assert running.snapshot() == {7}
    running.hold(7)  # let go and claimed again at once by another runner of this process
    running.let_go(7)
    assert running.snapshot() == {7}
    running.let_go(7)
    assert running.snapshot() == frozenset()


def test_a_runner_that_fails_lets_go_of_its_chunk_on_the_way_out(db, now, me, monkeypatch):
    cut = batch(now, max_parallel=2)
    chunks(cut, 2)

    def database_gone(chunk_id, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(runner, "run_chunk", database_gone)
    with pytest.raises(OperationalError):
        runner.run_runner(cut.pk)

    assert not Chunk.objects.filter(batch=cut, claimed_by__isnull=False).exists(), "let go for its retry"
    assert workers.me.running.snapshot() == frozenset()


def test_claims_whose_runner_is_gone_are_let_go_by_their_own_worker_and_sent_runners(
    db, now, me, django_capture_on_commit_callbacks
):
    cut = batch(now, max_parallel=4)
    orphan, running, new = (claim(cut, me, index) for index in range(3))
    Chunk.objects.filter(pk__in=[orphan.pk, running.pk]).update(claimed_at=now - timedelta(seconds=1))
    Chunk.objects.filter(pk=new.pk).update(claimed_at=now + timedelta(milliseconds=1))  # claimed after the look
    workers.me.running.hold(running.pk)

    with dispatch.kept_in_process() as sent, django_capture_on_commit_callbacks(execute=True):
        let_go, topped_up = workers.sweep_runners(now)

    assert (let_go, topped_up) == (1, {})
    assert claimed_by(orphan) is None
    assert claimed_by(running) == claimed_by(new) == me.pk, "a runner at work, however slow, keeps its chunk"
    assert [(message.actor_name, message.args) for message in sent] == [(dispatch.RUN, (cut.pk,))]


def test_another_workers_claims_are_left_to_it_and_to_the_registry(db, now, me):
    other = worker(now)
    theirs = claim(batch(now), other)
    Chunk.objects.filter(pk=theirs.pk).update(claimed_at=now - timedelta(minutes=1))
    with dispatch.kept_in_process():
        assert workers.sweep_runners(now)[0] == 0
    assert claimed_by(theirs) == other.pk


def lease_renewed(ago: float, now) -> dict:
    """A lease as a checkpoint (or a top-up) `ago` seconds before `now` left it."""
    return {"lease_expires_at": now - timedelta(seconds=ago) + state.lease_for(get_operation("reissue_tickets"))}


def test_a_running_batch_no_runner_is_at_work_on_is_sent_its_runners_once_per_grace(db, now, nobody_here):
    worker(now, threads=4)
    lost = batch(now, checkpoint_ago=5, max_parallel=4, **lease_renewed(5, now))
    chunks(lost, 3)

    with dispatch.kept_in_process() as sent:
        assert workers.sweep_runners(now) == (0, {lost.pk: 3})
        # Another worker's sweep a moment later: taken on already.
        assert workers.sweep_runners(now + timedelta(seconds=1)) == (0, {})
        # The runners never came (the broker lost them too): sent again.
        assert workers.sweep_runners(now + timedelta(seconds=4)) == (0, {lost.pk: 3})
    assert [message.args for message in sent] == [(lost.pk,)] * 6


@pytest.mark.parametrize("why", ["a live claim", "every thread busy", "a recent checkpoint", "no chunk waiting"])
def test_a_batch_with_a_runner_at_work_or_on_its_way_is_left_alone(db, now, nobody_here, why):
    pool = worker(now, threads=1 if why == "every thread busy" else 4)
    left = batch(now, checkpoint_ago=1 if why == "a recent checkpoint" else 5, max_parallel=4, **lease_renewed(5, now))
    if why == "no chunk waiting":
        claim(left, worker(now, silent_for=60))  # a dead worker's, for the registry to hand over
    else:
        chunks(left, 2)
    if why == "a live claim":
        claim(left, pool, index=2)
    if why == "every thread busy":
        claim(batch(now), pool)

    with dispatch.kept_in_process() as sent:
        assert workers.sweep_runners(now) == (0, {})
    assert not sent
