"""A batch's report lists what the batch did, from what its checkpoints recorded, whatever its
operation's `items()` matches afterwards.

The operation here (tests/report_operation) reissues the tickets never reissued: each ticket it does
leaves its own `items()`, as "mark unpaid invoices paid" does. A report that ran `items()` again
would list none of them.
"""

import csv
import io
import random
import time

import pytest
from django.test import Client
from django.urls import reverse

from batches import operations, selectors
from batches.engine import runner
from batches.engine.done_keys import DoneKeys, decode
from batches.models import Batch, BatchStatus, Checkpoint
from batches.report import GONE
from batches.services import cancel_batch, retry_failed, start_batch
from site_config.demo.models import Event, Ticket
from tests.report_operation.operations import ReissueUnreissued
from tests.support import refreshed, wait_until

OPERATION = ReissueUnreissued.name


@pytest.fixture
def unreissued(monkeypatch):
    """The operation, registered in this process for this test only."""
    monkeypatch.setitem(operations._registry, OPERATION, ReissueUnreissued())


@pytest.fixture
def alice_api(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def start(event: Event, user, operation: str = OPERATION) -> Batch:
    return start_batch(operation=operation, data={"event_id": event.pk}, user=user).batch


def run_to_the_end(batch: Batch) -> Batch:
    for chunk_id in runner.plan(batch.pk):
        runner.run_chunk(chunk_id, budget_seconds=600)
    return refreshed(batch)


def report(client: Client, batch: Batch) -> list[dict[str, str]]:
    response = client.get(f"/api/batches/{batch.pk}/report.csv")
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


def keys(rows: list[dict[str, str]], outcome: str) -> list[str]:
    return [row["item_key"] for row in rows if row["outcome"] == outcome]


def ticket_keys(tickets) -> list[str]:
    return [str(pk) for pk in tickets.order_by("pk").values_list("pk", flat=True)]


def assert_lists_exactly_what_was_done(rows: list[dict[str, str]], batch: Batch, event: Event) -> None:
    """Each item once; done: the tickets reissued (once each); failed: the blocked seats."""
    batch = refreshed(batch)
    tickets = Ticket.objects.filter(event=event)
    listed = [row["item_key"] for row in rows]
    assert len(listed) == len(set(listed)), "an item is listed twice"
    assert not tickets.filter(reissue_count__gt=1).exists(), "a ticket was reissued twice"
    assert keys(rows, "done") == ticket_keys(tickets.filter(reissue_count=1))
    assert len(keys(rows, "done")) == batch.done_count
    assert len(keys(rows, "failed")) == batch.failed_count
    assert all("is blocked by the venue" in row["error"] for row in rows if row["outcome"] == "failed")


# --- the recorded keys -------------------------------------------------------------------------


def test_recorded_keys_come_back_exactly_consecutive_or_spread():
    rng = random.Random(7)
    for keys_in_pages in [
        [list(range(1, 2001)), list(range(2001, 4001))],  # consecutive: one run
        [list(range(10, 5000, 3))],  # another event's tickets in between: a run each
        [sorted(rng.sample(range(1, 10**6), 500)), sorted(rng.sample(range(10**6, 2**62), 500))],
    ]:
        done, failed = DoneKeys(), set()
        for page in keys_in_pages:
            page_failed = set(rng.sample(page, 5))
            done.add(page, page_failed)
            failed |= page_failed
        expected = [key for page in keys_in_pages for key in page if key not in failed]
        decoded = [key for start, end in decode(done.first, done.encode()) for key in range(start, end + 1)]
        assert decoded == expected and done.count == len(expected)
        assert (done.first, done.last) == (expected[0], expected[-1])

    consecutive = DoneKeys()
    consecutive.add(list(range(1, 100_001)))
    assert len(consecutive.encode()) == 4  # 100,000 keys: one run


# --- in this process ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.both_backends
def test_the_report_of_a_finished_batch_lists_every_item_it_did(unreissued, make_event, alice, alice_api, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 97
    event = make_event(tickets=1200, name="Gala")  # 3 chunks; seats 97, 194, … fail
    batch = run_to_the_end(start(event, alice))
    assert batch.status == BatchStatus.FINISHED and batch.done_count == 1188
    assert ReissueUnreissued().items(batch.params).count() == 12, "only the failed ones are still its items"

    rows = report(alice_api, batch)

    assert list(rows[0]) == ["item_key", "outcome", "error", "item"]
    assert_lists_exactly_what_was_done(rows, batch, event)
    assert len(rows) == 1200
    first = Ticket.objects.get(event=event, number=1)
    assert rows[0] == {"item_key": str(first.pk), "outcome": "done", "error": "", "item": "Seat 1 (Guest 1)"}
    assert {row["item"] for row in rows if row["outcome"] == "failed"} >= {"Seat 97 (Guest 97)"}
    assert sum(Checkpoint.objects.filter(batch=batch).values_list("done", flat=True)) == batch.done_count


@pytest.mark.django_db
def test_items_spread_among_others_are_listed_one_by_one(unreissued, alice, alice_api, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    ours, theirs = (Event.objects.create(name=name, starts_at="2030-01-01T10:00Z") for name in ("Ours", "Theirs"))
    Ticket.objects.bulk_create(
        [
            Ticket(event=event, number=n, holder=f"Guest {n}", code="x")
            for n in range(1, 601)
            for event in (ours, theirs)
        ]
    )  # ours and theirs alternate: none of our keys is next to another
    batch = run_to_the_end(start(ours, alice))

    rows = report(alice_api, batch)

    assert keys(rows, "done") == ticket_keys(Ticket.objects.filter(event=ours)) and len(rows) == 600
    assert not Ticket.objects.filter(event=theirs, reissue_count__gt=0).exists()


@pytest.mark.django_db
def test_items_deleted_since_are_listed_by_key_as_gone(unreissued, make_event, alice, alice_api, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 7
    event = make_event(tickets=30, name="Gala")
    batch = run_to_the_end(start(event, alice))
    deleted = {str(pk) for pk in Ticket.objects.filter(event=event, number__in=[1, 7, 30]).values_list("pk", flat=True)}
    Ticket.objects.filter(pk__in=deleted).delete()  # 1 and 30 were done, 7 failed

    rows = report(alice_api, batch)

    assert len(rows) == 30
    assert {row["item_key"] for row in rows if row["item"] == GONE} == deleted
    assert {row["outcome"] for row in rows if row["item_key"] in deleted} == {"done", "failed"}


@pytest.mark.django_db
def test_a_cancelled_batch_lists_what_it_did_and_what_it_skipped(unreissued, make_event, alice, alice_api, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY, settings.BATCHES_CHECKPOINT_SECONDS = 0, 7, 0.0
    event = make_event(tickets=40, name="Gala")
    batch = start(event, alice)
    (chunk_id,) = runner.plan(batch.pk)
    for _ in range(9):
        runner.run_checkpoint(chunk_id)
    cancel_batch(batch.pk, user=alice)

    rows = report(alice_api, batch)

    assert_lists_exactly_what_was_done(rows, batch, event)
    assert len(keys(rows, "done")) == 8 and len(keys(rows, "failed")) == 1  # seats 1 to 9, 7 failed
    assert keys(rows, "skipped") == ticket_keys(Ticket.objects.filter(event=event, number__gt=9))


@pytest.mark.django_db
def test_a_retry_lists_the_items_it_did_again_and_its_parent_keeps_its_failures(
    unreissued, make_event, alice, alice_api, settings
):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 7
    event = make_event(tickets=30, name="Gala")
    parent = run_to_the_end(start(event, alice))
    failed = keys(report(alice_api, parent), "failed")
    assert len(failed) == 4

    settings.DEMO_FAIL_EVERY = 0  # the venue unblocks the seats
    retry = run_to_the_end(retry_failed(parent.pk, user=alice).batch)

    assert keys(report(alice_api, retry), "done") == failed and len(report(alice_api, retry)) == 4
    parent_rows = report(alice_api, parent)
    assert keys(parent_rows, "failed") == failed and len(keys(parent_rows, "done")) == 26


@pytest.mark.django_db
def test_the_report_of_a_batch_whose_scope_was_deleted_lists_its_items_as_gone(
    unreissued, make_event, alice, alice_api, settings
):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY, settings.BATCHES_CHECKPOINT_SECONDS = 0, 7, 0.0
    event = make_event(tickets=20, name="Gala")
    batch = start(event, alice)
    (chunk_id,) = runner.plan(batch.pk)
    for _ in range(10):
        runner.run_checkpoint(chunk_id)
    cancel_batch(batch.pk, user=alice)
    done = ticket_keys(Ticket.objects.filter(event=event, reissue_count=1))
    event.delete()  # its tickets with it

    rows = report(alice_api, batch)

    assert keys(rows, "done") == done and len(done) == 9
    assert len(keys(rows, "failed")) == 1 and all(row["item"] == GONE for row in rows if row["item_key"])
    assert rows[-1]["item_key"] == "" and rows[-1]["outcome"] == "skipped"
    assert rows[-1]["error"] == "10 items not listed one by one: the batch's scope (Gala) no longer exists."
    assert len(rows) == 11


@pytest.mark.django_db
def test_a_running_batch_is_reported_as_it_stood_when_the_report_began(make_event, alice, settings):
    """The demo's operation keeps its items listed: a checkpoint committed while the report streams
    must not make one item both done and skipped."""
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY, settings.BATCHES_CHECKPOINT_SECONDS = 0, 0, 0.0
    event = make_event(tickets=200, name="Gala")
    batch = start(event, alice, operation="reissue_tickets")
    (chunk_id,) = runner.plan(batch.pk)
    for _ in range(120):  # one item each: more checkpoints than the report reads at once
        runner.run_checkpoint(chunk_id)

    rows = selectors.item_outcomes(refreshed(batch), page_size=5)
    first = next(rows)
    for _ in range(20):
        runner.run_checkpoint(chunk_id)
    listed = [first, *rows]

    assert [key for key, *_ in listed] == ticket_keys(Ticket.objects.filter(event=event))
    assert [outcome for _, outcome, *_ in listed] == ["done"] * 120 + ["skipped"] * 80


@pytest.mark.django_db
def test_items_done_before_checkpoints_recorded_them_are_counted(unreissued, make_event, alice, alice_api, settings):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    event = make_event(tickets=10, name="Gala")
    batch = run_to_the_end(start(event, alice))
    Checkpoint.objects.filter(batch=batch).delete()  # as a batch that ran before they were recorded

    rows = report(alice_api, batch)

    assert rows == [
        {
            "item_key": "",
            "outcome": "done",
            "error": "10 items not listed one by one: done before this version of the app recorded the items"
            " each checkpoint did.",
            "item": "",
        }
    ]


@pytest.mark.django_db
def test_the_admin_shows_the_first_items_done_and_links_the_report(
    unreissued, make_event, alice, admin_client, settings
):
    settings.DEMO_ITEM_DELAY_MS, settings.DEMO_FAIL_EVERY = 0, 0
    event = make_event(tickets=30, name="Gala")
    batch = run_to_the_end(start(event, alice))
    first, second = Ticket.objects.filter(event=event).order_by("pk")[:2]
    Ticket.objects.filter(pk=second.pk).delete()

    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()

    assert f"<li><code>{first.pk}</code>: Seat 1 (Guest 1)</li>" in page
    assert f"<li><code>{second.pk}</code>: {GONE}</li>" in page
    assert page.count("<li><code>") == 20
    assert f'href="/api/batches/{batch.pk}/report.csv" download' in page


# --- real worker processes ---------------------------------------------------------------------

WORKER_ENV = {
    "DJANGO_SETTINGS_MODULE": "tests.settings_report",  # the operation is installed in the worker
    "DEMO_FAIL_EVERY": "97",
    "DEMO_ITEM_TIME_LIMIT": "1",
    "BATCHES_LEASE_SECONDS": "1",
    "BATCHES_SWEEP_SECONDS": "0.5",
}


def wait_for_progress(batch: Batch, beyond: int) -> None:
    wait_until(lambda: refreshed(batch).processed > beyond or not batch.is_active, timeout=60, what="progress")


@pytest.mark.slow
def test_a_worker_finished_batch_lists_exactly_the_items_done(worker_process, unreissued, make_event, alice, alice_api):
    event = make_event(tickets=2000, name="Gala")
    worker_process(**WORKER_ENV, DEMO_ITEM_DELAY_MS="1")
    batch = start(event, alice)
    wait_until(lambda: not refreshed(batch).is_active, timeout=120, what="the batch to finish")

    rows = report(alice_api, batch)

    assert batch.status == BatchStatus.FINISHED, batch.error
    assert_lists_exactly_what_was_done(rows, batch, event)
    assert len(keys(rows, "done")) == 1980 and len(rows) == 2000


@pytest.mark.slow
def test_a_batch_cancelled_under_a_worker_lists_exactly_the_items_done(
    worker_process, unreissued, make_event, alice, alice_api
):
    event = make_event(tickets=2000, name="Gala")
    worker_process(**WORKER_ENV, DEMO_ITEM_DELAY_MS="5")
    batch = start(event, alice)
    wait_for_progress(batch, beyond=300)

    cancelled, ended = cancel_batch(batch.pk, user=alice)
    # Once the cancel has committed no checkpoint can: a checkpoint under way rolls back, its
    # effects with its record. So what the tables say now is final.
    rows = report(alice_api, batch)

    assert ended and cancelled.status == BatchStatus.CANCELLED
    assert_lists_exactly_what_was_done(rows, batch, event)
    assert 300 < len(keys(rows, "done")) + len(keys(rows, "failed")) < 2000
    failed = set(keys(rows, "failed"))
    untouched = [key for key in ticket_keys(Ticket.objects.filter(event=event, reissue_count=0)) if key not in failed]
    assert keys(rows, "skipped") == untouched


@pytest.mark.slow
def test_a_batch_resumed_after_kill_9_lists_exactly_the_items_done(
    worker_process, unreissued, make_event, alice, alice_api
):
    event = make_event(tickets=2400, name="Gala")
    worker = worker_process(**WORKER_ENV, DEMO_ITEM_DELAY_MS="10")
    batch = start(event, alice)
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"kill moments seeded with {seed}")
    for _ in range(3):
        wait_for_progress(batch, beyond=batch.processed)
        assert batch.is_active, "the batch finished before the kills; give it more work"
        time.sleep(rng.uniform(0, 0.5))  # a random moment: mid-item, mid-commit, between checkpoints
        worker.kill()
        worker = worker_process(**WORKER_ENV, DEMO_ITEM_DELAY_MS="10")
    wait_until(lambda: not refreshed(batch).is_active, timeout=180, what="the batch to finish")

    rows = report(alice_api, batch)

    assert batch.status == BatchStatus.FINISHED, batch.error
    assert_lists_exactly_what_was_done(rows, batch, event)
    assert len(keys(rows, "done")) == 2400 - 24 and len(rows) == 2400
