"""An operation as an admin action: the ticket list's "Reissue selected tickets" runs as a batch over
exactly what the person selected, answers at once and shows its progress inside the admin."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext

from batches.models import Batch, BatchStatus
from batches.selectors import item_outcomes
from batches.testing import run_to_end
from site_config.demo.models import Ticket

CHANGELIST = "/admin/demo/ticket/"


@pytest.fixture(autouse=True)
def quick(settings):
    settings.DEMO_ITEM_DELAY_MS = 0
    settings.DEMO_FAIL_EVERY = 97


@pytest.fixture
def make_clerk(make_user):
    """Staff who may view tickets and reissue them, and nothing else."""

    def make(username: str, *, may_reissue: bool = True):
        user = make_user(username, may_reissue=may_reissue, is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_ticket"))
        return user

    return make


@pytest.fixture
def clerk_client(client, make_clerk):
    client.force_login(make_clerk("clerk"))
    return client


def act(client, query: str = "", *, select_across: bool = False, pks=(), action: str = "reissue_selected"):
    """Post the changelist's action form. Django wants a ticked row even with "Select all" (the
    browser sends the page's), so one is sent when none is given."""
    if not pks:
        pks = list(Ticket.objects.order_by("pk").values_list("pk", flat=True)[:1])
    data = {
        "action": action,
        "index": "0",
        "select_across": "1" if select_across else "0",
        "_selected_action": list(pks),
    }
    return client.post(CHANGELIST + query, data)


def test_select_all_across_pages_runs_one_batch_over_the_filtered_rows(clerk_client, make_event):
    gala, other = make_event(tickets=250, name="Gala"), make_event(tickets=30, name="Other")
    first_page = list(Ticket.objects.filter(event=gala).order_by("pk").values_list("pk", flat=True)[:100])

    response = act(clerk_client, f"?event__id__exact={gala.pk}&o=2", select_across=True, pks=first_page)

    batch = Batch.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/admin/batches/batch/{batch.pk}/progress/"
    assert batch.operation == "reissue_selected_tickets" and batch.scope_label == "Tickets where event is Gala"
    assert batch.params["filters"] == {"event__id__exact": [str(gala.pk)]}, "the ordering is not the selection"
    batch = run_to_end(batch)
    assert (batch.total, batch.done_count, batch.failed_count) == (250, 248, 2)  # seats 97 and 194 fail
    assert not Ticket.objects.filter(event=gala, reissue_count=0).exclude(number__in=[97, 194]).exists()
    assert not Ticket.objects.filter(event=other, reissue_count__gt=0).exists()


def test_ticked_rows_are_the_selection_and_a_search_narrows_select_all(clerk_client, make_event):
    gala = make_event(tickets=40, name="Gala")
    ticked = list(Ticket.objects.filter(event=gala, number__in=[3, 5, 8]).values_list("pk", flat=True))
    batch = run_to_end(act(clerk_client, pks=ticked) and Batch.objects.get())
    assert (batch.total, batch.scope_label) == (3, "3 selected tickets")
    assert sorted(Ticket.objects.filter(reissue_count=1).values_list("number", flat=True)) == [3, 5, 8]

    act(clerk_client, "?q=%22Guest+1%22", select_across=True, pks=ticked)  # "Guest 1", "Guest 10".."Guest 19"
    searched = run_to_end(Batch.objects.latest("pk"))
    assert (searched.total, searched.scope_label) == (11, 'Tickets matching “"Guest 1"”')


def test_the_same_selection_joins_its_run_and_another_does_not(client, make_clerk, make_event):
    gala = make_event(tickets=20, name="Gala")
    first, second = make_clerk("first"), make_clerk("second")
    query = f"?event__id__exact={gala.pk}"
    client.force_login(first)
    act(client, query, select_across=True)
    act(client, query + "&p=2&o=-3", select_across=True)  # a double click, from another page and order
    client.force_login(second)
    joined = act(client, query, select_across=True)
    assert Batch.objects.count() == 1
    batch = Batch.objects.get()
    assert joined["Location"] == f"/admin/batches/batch/{batch.pk}/progress/"
    page = client.get(joined["Location"]).content.decode()
    assert "Already running since" in page and "started by first" in page

    act(client, query + "&q=Guest", select_across=True)  # another selection: a run of its own
    assert Batch.objects.count() == 2


def test_the_admins_permission_rules_apply(client, make_clerk, make_user, make_event):
    gala = make_event(tickets=5, name="Gala")
    client.force_login(make_clerk("viewer", may_reissue=False))  # may view tickets, not reissue them
    page = client.get(CHANGELIST).content.decode()
    assert "Reissue selected tickets" not in page
    act(client, select_across=True)
    assert not Batch.objects.exists()
    client.force_login(make_user("outsider", is_staff=True))  # may reissue, may not view the list
    assert act(client, f"?event__id__exact={gala.pk}", select_across=True).status_code == 403
    assert not Batch.objects.exists()


def test_the_progress_page_is_in_the_admin_live_with_cancel_failures_and_retry(
    clerk_client, make_clerk, client, make_event
):
    make_event(tickets=200, name="Gala")
    progress = act(clerk_client, select_across=True)["Location"]
    batch = Batch.objects.get()
    page = clerk_client.get(progress)
    html = page.content.decode()
    assert page.status_code == 200 and "admin/base_site.html" in [t.name for t in page.templates]
    assert f'hx-get="/admin/batches/batch/{batch.pk}/progress/live/"' in html and 'hx-trigger="every 1s"' in html
    assert "Cancel run" in html
    live = clerk_client.get(f"/admin/batches/batch/{batch.pk}/progress/live/").content.decode()
    assert live.lstrip().startswith("{#") is False and 'id="batch-progress"' in live

    batch = run_to_end(batch)
    html = clerk_client.get(progress).content.decode()
    assert 'hx-trigger="every 1s"' not in html, "polling stops with the batch"
    assert "Seat 97 is blocked by the venue." in html and "Seat 97 (Guest 97)" in html
    retried = clerk_client.post(f"/admin/batches/batch/{batch.pk}/progress/retry/")
    retry = Batch.objects.get(retry_of=batch)
    assert retried["Location"] == f"/admin/batches/batch/{retry.pk}/progress/"
    assert retry.operation == "reissue_selected_tickets"

    asked = clerk_client.get(f"/admin/batches/batch/{retry.pk}/progress/cancel/").content.decode()
    assert "Stop" in asked and "Yes, stop the run" in asked
    clerk_client.post(f"/admin/batches/batch/{retry.pk}/progress/cancel/")
    assert Batch.objects.get(pk=retry.pk).status == BatchStatus.CANCELLED

    client.force_login(make_clerk("stranger", may_reissue=False))  # may not see others' reissues
    assert client.get(progress).status_code == 404
    assert client.get(f"/admin/batches/batch/{batch.pk}/progress/live/").status_code == 404


def test_a_forged_selection_is_refused_with_a_sentence(clerk_client, make_event):
    make_event(tickets=5)
    response = act(clerk_client, pks=["x"])
    assert not Batch.objects.exists()
    assert response.status_code == 302
    page = clerk_client.get(response["Location"]).content.decode()
    assert "Nothing was done: the selection holds something that is not an item of this list." in page


@pytest.mark.django_db(transaction=False)
def test_a_million_rows_answer_in_bounded_queries_and_run_over_exactly_the_click(
    clerk_client, make_event, monkeypatch, settings
):
    from site_config.demo.operations import ReissueSelectedTickets

    settings.DEMO_FAIL_EVERY = 0  # each page in one UPDATE
    monkeypatch.setattr(ReissueSelectedTickets, "chunk_size", 50_000)
    big, other = make_event(tickets=0, name="Big"), make_event(tickets=3, name="Other")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Ticket._meta.db_table} (event_id, number, holder, code, reissue_count)"
            " SELECT %s, n, 'Guest ' || n, 'orig', 0 FROM generate_series(1, 1000000) AS n",
            [big.pk],
        )
        cursor.execute(f"ANALYZE {Ticket._meta.db_table}")

    first_page = list(Ticket.objects.filter(event=big).order_by("pk").values_list("pk", flat=True)[:100])
    with CaptureQueriesContext(connection) as queries:
        response = act(clerk_client, f"?event__id__exact={big.pk}", select_across=True, pks=first_page)
    assert response.status_code == 302
    assert len(queries) <= 25, [q["sql"][:120] for q in queries]
    reads_ids = [q["sql"] for q in queries if re.search(r'SELECT "demo_ticket"\."id"(?! *(<|>|=))', q["sql"])]
    assert not reads_ids, "no query reads the selection's rows"

    later = Ticket.objects.create(event=big, number=1_000_001, holder="Late", code="orig")
    gone = list(
        Ticket.objects.filter(event=big, number__range=(999_991, 1_000_000)).order_by("pk").values_list("pk", flat=True)
    )
    batch = Batch.objects.get()
    from batches.engine import state  # plan at once, as a worker does a moment after the click

    state.plan(batch.pk)
    Ticket.objects.filter(pk__in=gone).delete()  # before their turn

    batch = run_to_end(batch)
    assert batch.total == 1_000_000
    assert (batch.done_count + batch.failed_count, batch.skipped_count) == (999_990, 10)
    later.refresh_from_db()
    assert later.reissue_count == 0, "a row created after the click is left alone"
    assert not Ticket.objects.filter(event=other, reissue_count__gt=0).exists()
    skipped = [row for row in item_outcomes(batch) if row[1] == "skipped"]
    assert len(skipped) == 1 and "10 items" in skipped[0][2], skipped
