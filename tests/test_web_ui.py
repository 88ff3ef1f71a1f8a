"""The web UI as people use it (issue 11), over HTTP: true figures, confirmation, names for people,
the end-of-batch event, the history, the title, the favicon, the admin's labels, the API docs."""

import json
import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from batches.engine.runner import describe
from batches.models import Batch, BatchStatus, ItemFailure
from batches.operations import get_operation
from tests.support import HTMX, START_URL


def make_batch(event, user, **fields) -> Batch:
    values = {
        "operation": "reissue_tickets",
        "scope_key": f"event:{event.pk}",
        "params": {"event_id": event.pk},
        "scope_label": event.name,
        "status": BatchStatus.FINISHED,
        "total": 20,
        "created_by": user,
    }
    return Batch.objects.create(**{**values, **fields})


def test_a_cancelled_batch_shows_what_was_worked_not_what_was_skipped(alice_client, alice, event, admin_client):
    started = timezone.now() - timedelta(seconds=10)
    batch = make_batch(
        event,
        alice,
        status=BatchStatus.CANCELLED,
        total=2000,
        done_count=384,
        failed_count=4,
        skipped_count=1612,
        started_at=started,
        finished_at=started + timedelta(seconds=10),
    )

    html = alice_client.get(f"/batches/{batch.pk}/").content.decode()
    assert 'data-figure="percent">19%<' in html  # 388 of 2,000 worked, not 100%
    assert 'data-figure="rate">38.8/s<' in html  # worked per second, not 200/s
    assert 'data-figure="done">384<' in html and 'data-figure="failed">4<' in html
    assert 'data-figure="skipped">1,612<' in html
    assert 'aria-valuetext="388 of 2,000 tickets, 19%"' in html
    segments = dict(re.findall(r'data-segment="(\w+)" x="[\d.]+" y="0" width="([\d.]+)"', html))
    assert segments == {"done": "19.20", "failed": "0.20", "skipped": "80.60"}

    admin = admin_client.get("/admin/batches/batch/").content.decode()
    assert "19%, 1,612 skipped" in admin and ">100%<" not in admin


def test_the_live_figures_are_not_a_live_region_and_carry_what_to_announce(alice_client, alice, event):
    batch = make_batch(event, alice, status=BatchStatus.RUNNING, done_count=9, started_at=timezone.now())
    fragment = alice_client.get(f"/batches/{batch.pk}/progress/?shown=running", **HTMX).content.decode()
    assert 'role="status"' not in fragment and "aria-live" not in fragment
    assert 'data-progress="9 of 20 tickets worked, 45%."' in fragment
    page = alice_client.get(f"/events/{event.pk}/").content.decode()
    assert "aria-live" not in page, "the panel's script makes the page's one live region (e2e/test_web_ui.py)"


def test_a_start_asks_first_on_a_page_without_javascript_and_in_a_dialog_with_it(alice_client, event):
    page = alice_client.get(f"/events/{event.pk}/").content.decode()
    question = "Reissue all 20 tickets of Gala? Each gets a new code."
    assert f'data-confirm="{question}"' in page and f'<form method="get" action="{START_URL}"' in page

    confirm = alice_client.get(f"{START_URL}?event_id={event.pk}")
    html = confirm.content.decode()
    assert confirm.status_code == 200 and question in html
    assert f'<form method="post" action="{START_URL}"' in html and f'href="/events/{event.pk}/">Not now</a>' in html
    assert not Batch.objects.exists(), "asking changes nothing"

    assert alice_client.get(f"{START_URL}?event_id=abc").status_code == 400
    assert alice_client.post(START_URL, {"event_id": event.pk}).status_code == 303
    assert Batch.objects.count() == 1


def test_the_start_confirmation_page_is_404_for_those_who_may_not_act(client, make_user, event):
    client.force_login(make_user("mallory", may_reissue=False))
    assert client.get(f"{START_URL}?event_id={event.pk}").status_code == 404


def test_failed_items_are_named_for_people_and_expected_failures_read_as_sentences(alice_client, alice, event):
    op = get_operation("reissue_tickets")
    blocked = op.expected_errors[0]("Seat 7 is blocked by the venue.")
    assert describe(blocked, op) == "Seat 7 is blocked by the venue."
    assert describe(KeyError("x"), op) == "KeyError: 'x'", "unexpected exceptions keep their type"

    ticket = event.tickets.get(number=7)
    batch = make_batch(event, alice, done_count=19, failed_count=1)
    ItemFailure.objects.create(batch=batch, item_key=str(ticket.pk), item_pk=ticket.pk, error=describe(blocked, op))
    for url in (f"/batches/{batch.pk}/", f"/batches/{batch.pk}/failures/", f"/events/{event.pk}/"):
        html = alice_client.get(url).content.decode()
        assert "<td>Seat 7 (Guest 7)</td><td>Seat 7 is blocked by the venue.</td>" in html, url
        assert f"<td>{ticket.pk}</td>" not in html


def test_when_a_batch_ends_the_panel_tells_the_page(alice_client, alice, event):
    batch = make_batch(event, alice, status=BatchStatus.RUNNING, started_at=timezone.now())
    running = alice_client.get(f"/batches/{batch.pk}/progress/?shown=queued", **HTMX)
    assert "HX-Trigger" not in running.headers

    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.FINISHED, done_count=20, finished_at=timezone.now())
    ended = alice_client.get(f"/batches/{batch.pk}/progress/?shown=running", **HTMX)
    assert json.loads(ended["HX-Trigger"]) == {
        "batch-ended": {"batch": batch.pk, "operation": "reissue_tickets", "status": "finished"}
    }

    page = alice_client.get(f"/events/{event.pk}/").content.decode()
    assert f'hx-get="/events/{event.pk}/tickets/" hx-trigger="batch-ended from:body"' in page
    tickets = alice_client.get(f"/events/{event.pk}/tickets/").content.decode()
    assert 'id="tickets"' in tickets and "<code>orig</code>" in tickets


def test_the_batch_page_links_its_event_its_history_and_its_report(alice_client, alice, event):
    batch = make_batch(event, alice, done_count=20)
    html = alice_client.get(f"/batches/{batch.pk}/").content.decode()
    assert f'<a href="/events/{event.pk}/">← Gala</a>' in html
    assert '<a href="/batches/">Batches</a>' in html
    assert f'href="/api/batches/{batch.pk}/report.csv" download' in html
    report = alice_client.get(f"/api/batches/{batch.pk}/report.csv")
    assert report.status_code == 200 and report["Content-Type"].startswith("text/csv")


def test_batch_number_links_to_the_batch_page_except_on_it(alice_client, alice, event):
    batch = make_batch(event, alice, status=BatchStatus.RUNNING, started_at=timezone.now())
    link = f'<a href="/batches/{batch.pk}/" data-focus-key="batch-link">Batch #{batch.pk}</a>'
    assert link in alice_client.get(f"/events/{event.pk}/").content.decode()
    on_its_page = alice_client.get(f"/batches/{batch.pk}/").content.decode()
    assert f"Batch #{batch.pk}" in on_its_page and link not in on_its_page
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.FINISHED, finished_at=timezone.now())
    swapped_in = alice_client.get(
        reverse("batches:progress", args=[batch.pk]) + "?shown=running",
        HTTP_HX_CURRENT_URL=f"http://testserver/batches/{batch.pk}/",
        **HTMX,
    ).content.decode()
    assert f"Batch #{batch.pk}" in swapped_in and link not in swapped_in, "a panel swapped into the batch page"


def test_one_title_rule_with_a_mark_once_ended(alice_client, alice, event):
    batch = make_batch(event, alice, status=BatchStatus.RUNNING, done_count=5, started_at=timezone.now())
    titles = [
        alice_client.get(f"/events/{event.pk}/").content.decode(),
        alice_client.get(f"/batches/{batch.pk}/").content.decode(),
        alice_client.get(f"/batches/{batch.pk}/progress/?shown=running", **HTMX).content.decode(),
    ]
    for html in titles:
        assert "<title>25% · Reissue tickets · Gala</title>" in html
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.CANCELLED, finished_at=timezone.now())
    for url in (f"/events/{event.pk}/", f"/batches/{batch.pk}/"):
        assert "<title>Cancelled · Reissue tickets · Gala</title>" in alice_client.get(url).content.decode()


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"


def test_times_carry_their_moment_and_their_zone(alice_client, alice, event):
    batch = make_batch(event, alice, status=BatchStatus.RUNNING, started_at=timezone.now())
    html = alice_client.get(f"/batches/{batch.pk}/").content.decode()
    assert re.search(r'Started by alice at <time datetime="[^"]+\+00:00" title="[^"]+">\d\d:\d\d UTC</time>', html)
    event_list = alice_client.get("/").content.decode()
    assert '<time datetime="2030-01-01T10:00:00+00:00" title="Tuesday 1 January 2030, 10:00:00 UTC">' in event_list
    assert ">1 Jan 2030, 10:00 UTC</time>" in event_list


def test_history_shows_visible_batches_newest_first_filtered_and_paginated(client, make_user, make_event, alice):
    bob = make_user("bob", may_reissue=False)
    events = [make_event(tickets=1, name=f"Event {n}") for n in range(30)]
    for n, event in enumerate(events):
        make_batch(event, bob, status=BatchStatus.CANCELLED if n % 3 == 0 else BatchStatus.FINISHED, done_count=1)
    others = make_batch(events[0], alice, done_count=1)
    client.force_login(bob)

    first = client.get("/batches/").content.decode()
    shown = [int(pk) for pk in re.findall(r'<tr data-batch="(\d+)">', first)]
    mine = list(Batch.objects.filter(created_by=bob).order_by("-created_at", "-id").values_list("pk", flat=True))
    assert shown == mine[:25] and others.pk not in shown
    assert "Page 1 of 2" in first and 'href="?page=2" rel="next">Older</a>' in first

    second = client.get("/batches/?page=2").content.decode()
    assert [int(pk) for pk in re.findall(r'<tr data-batch="(\d+)">', second)] == mine[25:]

    cancelled = client.get("/batches/?status=cancelled&operation=reissue_tickets").content.decode()
    rows = re.findall(r'<tr data-batch="(\d+)">', cancelled)
    assert len(rows) == 10 and "Page 1 of" not in cancelled
    assert '<option value="reissue_tickets" selected>Reissue tickets</option>' in cancelled
    assert "No batches match these filters." in client.get("/batches/?operation=nothing").content.decode()


def test_the_history_title_says_whose_batches_it_lists_and_filters_to_ones_own(client, make_user, make_event):
    colleague, bob = make_user("colleague"), make_user("bob", may_reissue=False)
    event = make_event(tickets=1, name="Gala")
    theirs = make_batch(event, bob)
    mine = make_batch(event, colleague, status=BatchStatus.CANCELLED)

    def rows(html: str) -> list[int]:
        return [int(pk) for pk in re.findall(r'<tr data-batch="(\d+)">', html)]

    # colleague may reissue any event's tickets, so sees everyone's runs: "Batches", with who started each.
    client.force_login(colleague)
    everyone = client.get("/batches/").content.decode()
    assert "<title>Batches</title>" in everyone and "<h1>Batches</h1>" in everyone and "Your batches" not in everyone
    assert rows(everyone) == [mine.pk, theirs.pk] and "<td data-started-by>bob</td>" in everyone
    assert '<input type="checkbox" name="mine" value="1"> Started by me' in everyone
    own = client.get("/batches/?mine=1").content.decode()
    assert rows(own) == [mine.pk] and '<input type="checkbox" name="mine" value="1" checked>' in own
    assert rows(client.get("/batches/?mine=1&status=finished").content.decode()) == []

    # bob sees only the runs he started: "Your batches", and no filter that could change nothing.
    client.force_login(bob)
    his = client.get("/batches/?mine=1").content.decode()
    assert "<title>Your batches</title>" in his and "<h1>Your batches</h1>" in his
    assert rows(his) == [theirs.pk] and 'name="mine"' not in his and "data-started-by" not in his


def test_history_needs_a_login(client):
    response = client.get("/batches/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_admin_shows_operation_labels_and_no_dramatiq_tasks(admin_client, alice, event):
    make_batch(event, alice, done_count=20)
    index = admin_client.get("/admin/").content.decode()
    assert "Django Dramatiq" not in index and "/admin/django_dramatiq/" not in index
    changelist = admin_client.get("/admin/batches/batch/").content.decode()
    assert '<td class="field-operation_label">Reissue tickets</td>' in changelist
    assert "?operation=reissue_tickets" in changelist and ">Reissue tickets</a>" in changelist


def test_the_api_docs_show_the_bearer_token_form_as_code(client):
    schema = client.get("/api/openapi.json").json()
    assert "`Authorization: Bearer <token>`" in schema["info"]["description"]
