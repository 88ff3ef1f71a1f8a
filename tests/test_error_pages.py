"""Issue 16: error pages in the site's layout with a way back, fragments for htmx requests; a
signed-out htmx request gets 401 and a sentence, not the login page; Retry from a batch's page goes
to the new batch's page."""

import html
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from batches.models import Batch, BatchStatus, ItemFailure
from tests.support import HTMX, START_URL, free_port, web_server


def text(response) -> str:
    return html.unescape(response.content.decode())


def assert_error_page(response, status: int, heading: str, way_back: str = "Back to the events") -> str:
    """In the site's layout (its header, one <main>, the stylesheets) with a way back: the site's
    words on its own error pages, the web UI's generic ones on its refusals."""
    body = text(response)
    assert response.status_code == status, body[:500]
    assert response["Content-Type"].startswith("text/html")
    assert '<header class="site-header">' in body and body.count("<main") == 1
    assert "/static/site.css" in body and "/static/batches/css/batches.css" in body
    assert f"<h1>{heading}</h1>" in body and f"<title>{heading}</title>" in body
    assert re.search(rf'<ul class="ways-back">.*?<a href="/">{way_back}</a>.*?</ul>', body, re.S), "a way back"
    return body


def assert_fragment(response, status: int, code: str) -> str:
    body = text(response)
    assert response.status_code == status
    assert "<html" not in body and "<main" not in body and "site-header" not in body
    assert re.fullmatch(rf'\s*<p class="problem" data-problem="{code}">[^<]+<a href="[^"]+">[^<]+</a></p>\s*', body)
    return body


def test_404_is_a_page_in_the_layout_with_a_way_back_and_a_fragment_for_htmx(alice_client, event):
    for url in ("/batches/999/", "/events/999/", "/no/such/page/"):
        body = assert_error_page(alice_client.get(url), 404, "Page not found")
        assert "Log out alice" in body, "the signed-in header, as on every page"
    fragment = assert_fragment(
        alice_client.get("/batches/999/progress/", HTTP_HX_CURRENT_URL="http://testserver/batches/999/", **HTMX),
        404,
        "not-found",
    )
    assert '<a href="/batches/999/">reload the page</a>' in fragment


def test_400_is_a_page_in_the_layout(client, settings):
    assert_error_page(client.get("/", HTTP_HOST="elsewhere.example"), 400, "Bad request")


def test_403_is_a_page_in_the_layout(client, make_user):
    staff = make_user("staffer", may_reissue=False, is_staff=True)
    client.force_login(staff)
    body = assert_error_page(client.get("/admin/batches/batch/"), 403, "Not allowed")
    assert "may not see or do this" in body


def test_a_refused_csrf_check_says_why_in_plain_words_with_a_reload_link(make_user, event):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    page = f"http://testserver/events/{event.pk}/"
    client.get(f"/events/{event.pk}/")  # the CSRF cookie, as a page sets it

    body = assert_error_page(
        client.post(START_URL, {"event_id": event.pk, "csrfmiddlewaretoken": "x" * 64}, HTTP_REFERER=page),
        403,
        "This page is out of date",
    )
    assert "before you logged in or out (perhaps in another tab)" in body and "nothing was changed" in body
    assert f'<a href="/events/{event.pk}/">Reload it</a>' in body
    assert "CSRF token" not in body, "Django's reason, not shown as such"

    fragment = assert_fragment(
        client.post(START_URL, {"event_id": event.pk}, HTTP_X_CSRFTOKEN="x" * 64, HTTP_HX_CURRENT_URL=page, **HTMX),
        403,
        "out-of-date",
    )
    assert f'This page is out of date: <a href="/events/{event.pk}/">reload it</a>' in fragment
    # A page on another site is never offered as the one to reload.
    elsewhere = client.post(START_URL, {"event_id": event.pk}, HTTP_REFERER="https://evil.example/x")
    assert '<a href="/">Reload it</a>' in text(elsewhere)
    no_cookie = Client(enforce_csrf_checks=True).post(START_URL, {"event_id": event.pk})
    assert "did not send the cookie this form needs" in text(no_cookie)
    assert not Batch.objects.exists()


def test_429_is_a_page_in_the_layout_with_retry_after(settings, alice_client, make_event):
    settings.BATCHES_MAX_ACTIVE_PER_USER, settings.BATCHES_STARTS_PER_MINUTE = 1, 0
    first, second = make_event(tickets=2), make_event(tickets=2)
    alice_client.post(START_URL, {"event_id": first.pk})
    response = alice_client.post(START_URL, {"event_id": second.pk})
    body = assert_error_page(response, 429, "Could not start", way_back="Back to the home page")
    assert "the most one person may run at once" in body and int(response["Retry-After"]) >= 1


def test_500_is_a_page_in_the_layout_and_a_fragment_for_htmx(alice_client, monkeypatch, django_assert_num_queries):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("batches.selectors.history", broken)
    alice_client.raise_request_exception = False
    body = assert_error_page(alice_client.get("/batches/"), 500, "Something went wrong")
    assert "try again in a moment" in body and "Log out" not in body, "rendered without the session's user"
    assert_fragment(alice_client.get("/batches/", **HTMX), 500, "server-error")

    from django.test import RequestFactory

    from site_config.error_pages import server_error

    with django_assert_num_queries(0):
        server_error(RequestFactory().get("/"))


@pytest.mark.django_db(transaction=True)
def test_500_renders_in_the_layout_with_the_database_down(tmp_path: Path):
    """Through the web command (granian), its database a closed port: a session cookie makes the
    request need the database, which fails; the page still renders."""
    closed = f"postgres://postgres@127.0.0.1:{free_port()}/batches"
    with web_server(tmp_path / "web.log", workers=1, threads=2, DATABASE_URL=closed) as base:
        request = urllib.request.Request(
            base + "/batches/", headers={"Cookie": "sessionid=abcdefghijklmnopqrstuvwxyz0123"}
        )
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=10)
    assert failed.value.code == 500
    body = html.unescape(failed.value.read().decode())
    assert "<h1>Something went wrong</h1>" in body and '<header class="site-header">' in body
    assert '<a href="/">Back to the events</a>' in body


def test_a_signed_out_poll_gets_401_and_a_sentence_with_a_login_link_back_to_the_page(alice_client, event):
    alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()
    Session.objects.all().delete()  # this test's own database: only its session
    page = f"http://testserver/events/{event.pk}/"

    poll = alice_client.get(f"/batches/{batch.pk}/progress/?shown=queued", HTTP_HX_CURRENT_URL=page, **HTMX)
    fragment = assert_fragment(poll, 401, "signed-out")
    login = f"/accounts/login/?next=%2Fevents%2F{event.pk}%2F"
    assert f'You were signed out. The batch keeps running. <a href="{login}">Log in again</a>' in fragment
    assert "Username" not in fragment and "<title>" not in fragment

    cancel = alice_client.post(f"/batches/{batch.pk}/cancel/", HTTP_HX_CURRENT_URL=page, **HTMX)
    assert "You were signed out. <a" in assert_fragment(cancel, 401, "signed-out")
    assert Batch.objects.get().is_active
    # Without htmx, the login page as before.
    plain = alice_client.get(f"/batches/{batch.pk}/")
    assert plain.status_code == 302 and plain["Location"] == f"/accounts/login/?next=/batches/{batch.pk}/"


def _finished_with_a_failure(user, event) -> Batch:
    batch = Batch.objects.create(
        operation="reissue_tickets",
        scope_key=f"event:{event.pk}",
        params={"event_id": event.pk},
        scope_label=event.name,
        status=BatchStatus.FINISHED,
        total=20,
        done_count=19,
        failed_count=1,
        created_by=user,
    )
    ItemFailure.objects.create(batch=batch, item_key="7", item_pk=7, error="Seat 7 is blocked.")
    return batch


def test_retry_from_the_batch_page_goes_to_the_new_batchs_page(alice_client, alice, event):
    first = _finished_with_a_failure(alice, event)
    page = f"http://testserver/batches/{first.pk}/"
    response = alice_client.post(f"/batches/{first.pk}/retry-failed/", HTTP_HX_CURRENT_URL=page, **HTMX)
    retry = Batch.objects.get(retry_of=first)
    assert response.status_code == 200
    location = json.loads(response["HX-Location"])
    assert location == {
        "path": f"/batches/{retry.pk}/",
        "target": "#batches-page",
        "select": "#batches-page",
        "swap": "outerHTML",
    }

    new_page = text(alice_client.get(location["path"], **HTMX))
    assert f"(batch #{retry.pk})" in new_page and f"/api/batches/{retry.pk}/report" in new_page
    assert f"Started a retry of the failed tickets of #{first.pk}." in new_page, "the notice, on the page it lands on"


def test_retry_from_the_event_page_swaps_the_panel_in_place(alice_client, alice, event):
    first = _finished_with_a_failure(alice, event)
    page = f"http://testserver/events/{event.pk}/"
    response = alice_client.post(f"/batches/{first.pk}/retry-failed/", HTTP_HX_CURRENT_URL=page, **HTMX)
    assert response.status_code == 202 and "HX-Location" not in response
    assert 'class="batch-panel"' in text(response)


def test_retry_without_javascript_redirects_to_the_new_batchs_page(alice_client, alice, event):
    first = _finished_with_a_failure(alice, event)
    response = alice_client.post(f"/batches/{first.pk}/retry-failed/")
    retry = Batch.objects.get(retry_of=first)
    assert response.status_code == 303 and response["Location"] == f"/batches/{retry.pk}/?live=1"
