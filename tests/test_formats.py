"""One format, decided in one place (batches/formats.py), wherever a batch is shown: the panel, its
polls, the history, the pages without JavaScript, the admin and the terminal client. Numbers with
thousands separators, the operation's own word for its items, failed items in item order, and
times in the viewer's zone, named, the same on a first render and after a swap (issue 16, item 5)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.utils import timezone

from batches.models import Batch, BatchStatus, ItemFailure, Worker
from site_config.viewer_zone import COOKIE
from tests.support import HTMX

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
# One batch's figures, each past a thousand: 10,766 done and 1,234 failed of 12,000 tickets.
FIGURES = {"total": 12000, "done_count": 10766, "failed_count": 1234}


def make_batch(event, user, **fields) -> Batch:
    values = {
        "operation": "reissue_tickets",
        "scope_key": f"event:{event.pk}",
        "params": {"event_id": event.pk},
        "scope_label": event.name,
        "status": BatchStatus.FINISHED,
        "created_by": user,
        **FIGURES,
    }
    return Batch.objects.create(**{**values, **fields})


@pytest.fixture
def finished(event, alice) -> Batch:
    started = timezone.now() - timedelta(minutes=2)
    batch = make_batch(event, alice, started_at=started, finished_at=started + timedelta(minutes=2))
    ItemFailure.objects.create(batch=batch, item_key="7", item_pk=7, error="Seat 7 is blocked by the venue.")
    return batch


@pytest.fixture
def running(event, alice) -> Batch:
    """A running batch, with a live worker (else the panel says there is none)."""
    now = timezone.now()
    Worker.objects.create(host="here", pid=1, threads=2, started_at=now, heartbeat_at=now)
    return make_batch(
        event, alice, status=BatchStatus.RUNNING, done_count=1980, failed_count=20, started_at=timezone.now()
    )


# --- numbers and the item noun, place by place ---------------------------------------------------


def test_the_batch_page_panel(alice_client, finished):
    html = alice_client.get(f"/batches/{finished.pk}/").content.decode()
    assert 'data-figure="done">10,766<' in html
    assert 'data-figure="failed">1,234<' in html
    assert 'data-figure="total">12,000<' in html
    assert "Finished in 2m 00s with 1,234 failed tickets." in html
    assert "Retry 1,234 failed tickets" in html
    assert "Failed tickets (1,234)" in html
    assert "10766" not in html and "1234" not in html and "failed item" not in html


def test_the_poll_fragment(alice_client, running):
    fragment = alice_client.get(f"/batches/{running.pk}/progress/?shown=running", **HTMX).content.decode()
    assert 'data-figure="done">1,980<' in fragment and 'data-figure="total">12,000<' in fragment
    assert 'data-progress="2,000 of 12,000 tickets worked, 16%."' in fragment
    assert 'aria-valuetext="2,000 of 12,000 tickets, 16%"' in fragment


def test_the_history(alice_client, finished):
    html = alice_client.get("/batches/").content.decode()
    assert 'data-figure="done">10,766<' in html and 'data-figure="failed">1,234<' in html


def test_the_cancel_page_without_javascript(alice_client, running):
    html = alice_client.get(f"/batches/{running.pk}/cancel/").content.decode()
    assert "has worked 2,000 of 12,000 tickets." in html
    assert "the tickets not done yet are skipped" in html


def test_the_event_pages(alice_client, make_event):
    event = make_event(tickets=1200, name="Big night")
    assert "1,200 tickets" in alice_client.get(f"/events/{event.pk}/").content.decode()
    assert "<td>1,200</td>" in alice_client.get("/").content.decode()


def test_the_admin(admin_client, finished):
    listing = admin_client.get("/admin/batches/batch/").content.decode()
    assert ">10,766<" in listing and ">1,234<" in listing and ">12,000<" in listing
    page = admin_client.get(f"/admin/batches/batch/{finished.pk}/change/").content.decode()
    assert ">10,766<" in page and "All 1,234 failed tickets" in page


def test_the_terminal_client(finished):
    out = StringIO()
    call_command("batches", "list", stdout=out)
    assert f"Batch {finished.pk} finished: 12,000 of 12,000 tickets worked, 10,766 done, 1,234 failed in 2m 00s." in (
        out.getvalue()
    )


# --- failed items in item order ------------------------------------------------------------------


def test_failed_items_are_listed_in_item_order_everywhere(alice_client, admin_client, alice, make_event):
    event = make_event(tickets=1600, name="Big night")
    batch = make_batch(event, alice, total=1600, done_count=1596, failed_count=4, started_at=timezone.now())
    pks = dict(event.tickets.values_list("number", "pk"))
    for seat in (1067, 1552, 97, 582):  # the order parallel chunks recorded them in
        ItemFailure.objects.create(batch=batch, item_key=str(pks[seat]), item_pk=pks[seat], error=f"Seat {seat}.")
    in_order = [97, 582, 1067, 1552]

    page = alice_client.get(f"/batches/{batch.pk}/").content.decode()
    assert [int(seat) for seat in re.findall(r"<td>Seat (\d+) \(Guest", page)] == in_order
    fragment = alice_client.get(f"/batches/{batch.pk}/failures/", **HTMX).content.decode()
    assert [int(seat) for seat in re.findall(r"<td>Seat (\d+) \(Guest", fragment)] == in_order
    api = alice_client.get(f"/api/batches/{batch.pk}/failures").json()
    assert [item["item_key"] for item in api["results"]] == [str(pks[seat]) for seat in in_order]
    admin = admin_client.get(f"/admin/batches/batch/{batch.pk}/change/").content.decode()
    assert [int(seat) for seat in re.findall(r"</code>: Seat (\d+)\.", admin)] == in_order


# --- times: the viewer's zone, named, the same on a first render and after a swap ----------------


def running_since(html: str) -> str:
    found = re.search(r"Running since <time [^>]*>([^<]+)</time>\.", html)
    assert found, "the running status with its time"
    return found.group(1)


def test_a_time_reads_the_same_on_the_first_render_and_after_each_swap(alice_client, running):
    alice_client.cookies[COOKIE] = "Europe/Berlin"
    expected = running.started_at.astimezone(BERLIN).strftime("%H:%M %Z")
    assert expected.endswith(("CET", "CEST"))

    first = alice_client.get(f"/batches/{running.pk}/").content.decode()
    live = alice_client.get(f"/batches/{running.pk}/progress/?shown=running", **HTMX).content.decode()
    panel = alice_client.get(f"/batches/{running.pk}/progress/?shown=queued", **HTMX).content.decode()

    assert running_since(first) == running_since(live) == running_since(panel) == expected
    assert f'title="{running.started_at.astimezone(BERLIN):%A %-d %B %Y, %H:%M:%S %Z}"' in first


def test_announcements_name_the_zone_the_screen_shows(alice_client, alice, event):
    """A condition with a time (no worker since …) says it in the announcement as on the screen."""
    seen = timezone.now() - timedelta(minutes=5)
    Worker.objects.create(host="gone", pid=1, threads=2, started_at=seen, heartbeat_at=seen, gone_at=seen)
    batch = make_batch(event, alice, status=BatchStatus.QUEUED, total=None, done_count=0, failed_count=0)
    alice_client.cookies[COOKIE] = "Europe/Berlin"

    fragment = alice_client.get(f"/batches/{batch.pk}/progress/?shown=queued", **HTMX).content.decode()

    said = seen.astimezone(BERLIN).strftime("%H:%M:%S %Z")
    announce = re.search(r'data-announce="([^"]*)"', fragment).group(1)
    status = re.search(r'<p class="status">(.*?)</p>', fragment, re.S).group(1)
    assert said in announce and said in status
    assert "UTC" not in announce and "UTC" not in status


@pytest.mark.parametrize("cookie", [None, "Nowhere/Else", "../../etc/passwd", "/etc/localtime", "UTC; x=1", "x" * 300])
def test_without_a_usable_zone_times_are_in_the_servers_zone_and_say_so(alice_client, running, cookie):
    if cookie is not None:
        alice_client.cookies[COOKIE] = cookie
    response = alice_client.get(f"/batches/{running.pk}/")
    assert response.status_code == 200
    assert running_since(response.content.decode()) == f"{timezone.localtime(running.started_at):%H:%M} UTC"


def test_the_admin_writes_24_hour_times_with_the_zone(admin_client, alice, event):
    make_batch(event, alice, created_at=datetime(2030, 1, 1, 23, 4, tzinfo=ZoneInfo("UTC")))
    Batch.objects.update(created_at=datetime(2030, 1, 1, 23, 4, tzinfo=ZoneInfo("UTC")))  # auto_now_add

    listing = admin_client.get("/admin/batches/batch/").content.decode()
    assert "1 Jan 2030, 23:04 UTC" in listing
    assert "p.m." not in listing and "a.m." not in listing

    admin_client.cookies[COOKIE] = "Europe/Berlin"
    assert "2 Jan 2030, 00:04 CET" in admin_client.get("/admin/batches/batch/").content.decode()
