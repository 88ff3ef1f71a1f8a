"""The web UI over HTTP: start (HTMX and plain forms), the guard's answer, visibility, the poll."""

import html
import re

import pytest
from django.test import Client

from batches.models import Batch, BatchStatus, ItemFailure
from tests.support import HTMX, START_URL


def page_headers(client, url: str) -> dict[str, str]:
    return dict(client.get(url).headers)


def html_text(response) -> str:
    return html.unescape(response.content.decode())


def test_pages_need_a_login(client, event):
    for url in ["/", f"/events/{event.pk}/", "/batches/1/", "/batches/1/progress/"]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.post(START_URL, {"event_id": event.pk}).status_code == 302
    assert not Batch.objects.exists()


def test_htmx_start_answers_with_the_first_progress_fragment(alice_client, event):
    response = alice_client.post(START_URL, {"event_id": event.pk}, **HTMX)

    assert response.status_code == 202
    batch = Batch.objects.get()
    html = response.content.decode()
    assert f'hx-get="/batches/{batch.pk}/progress/?shown=queued"' in html
    assert 'hx-trigger="every 1s' in html
    assert re.search(r"<button[^>]*disabled", html), "the start button is rendered disabled while active"
    assert 'data-figure="done">0<' in html
    assert "Started." in html


def test_a_second_htmx_start_shows_the_running_batch_and_who_started_it(alice_client, client, event, make_user):
    alice_client.post(START_URL, {"event_id": event.pk}, **HTMX)
    colleague = Client()
    colleague.force_login(make_user("bob"))

    response = colleague.post(START_URL, {"event_id": event.pk}, **HTMX)

    assert response.status_code == 200
    assert Batch.objects.count() == 1
    assert re.search(
        r'Already running since <time datetime="[^"]+" title="[^"]+">\d\d:\d\d UTC</time>, started by alice',
        response.content.decode(),
    )
    assert f"/batches/{Batch.objects.get().pk}/progress/" in response.content.decode()


def test_plain_form_start_redirects_303_to_the_batch_page_which_refreshes_until_paused(alice_client, event):
    response = alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"/batches/{batch.pk}/?live=1"

    live = alice_client.get(response["Location"])
    page = live.content.decode()
    assert live["Refresh"] == "5", "without JavaScript, the page the person asked to keep live reloads"
    assert 'http-equiv="refresh"' not in page
    assert "Started." in page and f'href="/batches/{batch.pk}/">Stop reloading</a>' in page

    paused = alice_client.get(f"/batches/{batch.pk}/")
    assert "Refresh" not in paused.headers
    assert f'href="/batches/{batch.pk}/?live=1">Reload every 5 seconds</a>' in paused.content.decode()

    again = alice_client.post(START_URL, {"event_id": event.pk}, follow=True)
    assert again.redirect_chain == [(f"/batches/{batch.pk}/?live=1", 303)]
    assert "Already running since" in again.content.decode()
    assert Batch.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "event_id: This field is required."),
        ({"event_id": "abc"}, "event_id: Must be a whole number written with the digits 0-9, e.g. 42."),
        ({"event_id": "999999"}, "event_id: There is no event 999999."),
    ],
)
def test_bad_input_is_a_400_with_a_message_and_starts_nothing(alice_client, data, message):
    plain = alice_client.post(START_URL, data)
    htmx = alice_client.post(START_URL, data, **HTMX)
    assert plain.status_code == htmx.status_code == 400
    assert message in plain.content.decode() and message in htmx.content.decode()
    assert not Batch.objects.exists()


def test_unknown_operation_and_other_methods_are_refused(alice_client, event):
    assert alice_client.post("/batches/start/nope/", {"event_id": event.pk}).status_code == 404
    assert alice_client.get("/batches/start/nope/", {"event_id": event.pk}).status_code == 404
    assert alice_client.put(START_URL).status_code == 405
    # GET is the confirmation page (the no-JavaScript path): without params, a 400 that says why.
    response = alice_client.get(START_URL)
    assert response.status_code == 400 and "event_id: This field is required." in response.content.decode()
    assert not Batch.objects.exists()


def test_users_who_may_not_act_get_404_for_starts_and_for_others_batches(client, alice_client, event, make_user):
    alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()
    client.force_login(make_user("mallory", may_reissue=False))

    assert client.post(START_URL, {"event_id": event.pk}).status_code == 404
    for url in [f"/batches/{batch.pk}/", f"/batches/{batch.pk}/progress/", f"/batches/{batch.pk}/failures/"]:
        assert client.get(url).status_code == 404
    assert Batch.objects.count() == 1


def test_users_without_the_demos_permission_see_no_event_ticket_or_code(client, alice_client, event, make_user):
    event.tickets.filter(number=1).update(code="secret-code-42")
    pages = [f"/events/{event.pk}/", f"/events/{event.pk}/tickets/"]
    for url in pages:  # those with the permission read the codes
        assert "secret-code-42" in alice_client.get(url).content.decode()
    assert event.name in alice_client.get("/").content.decode()

    client.force_login(make_user("mallory", may_reissue=False))
    listing = client.get("/").content.decode()
    assert event.name not in listing and "You may not see the events" in listing
    for url in pages:
        response = client.get(url)
        assert response.status_code == 404 and "secret-code-42" not in response.content.decode()


def test_a_colleague_who_may_act_on_the_scope_sees_the_batch_from_the_event_page(alice_client, event, make_user):
    alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()
    colleague = Client()
    colleague.force_login(make_user("bob"))
    page = colleague.get(f"/events/{event.pk}/").content.decode()
    assert f'hx-get="/batches/{batch.pk}/progress/?shown=' in page
    assert colleague.get(f"/batches/{batch.pk}/").status_code == 200


def test_the_progress_poll_costs_at_most_three_queries(alice_client, event, django_assert_max_num_queries):
    alice_client.post(START_URL, {"event_id": event.pk}, **HTMX)
    batch = Batch.objects.get()
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.RUNNING, total=10, done_count=4)

    # The page shows a running batch: only its live figures come back, for the panel to swap in.
    with django_assert_max_num_queries(3):
        response = alice_client.get(f"/batches/{batch.pk}/progress/?shown=running", **HTMX)
    html = response.content.decode()
    assert 'data-figure="done">4<' in html and 'data-figure="percent">40%<' in html
    assert "<title>40% · Reissue tickets · Gala</title>" in html
    assert "<form" not in html and "HX-Retarget" not in response.headers

    # The page still shows it queued: the whole panel comes back, retargeted to replace the old one.
    with django_assert_max_num_queries(3):
        response = alice_client.get(f"/batches/{batch.pk}/progress/?shown=queued", **HTMX)
    assert response.headers["HX-Retarget"] == "#panel-reissue_tickets"
    assert response.headers["HX-Reswap"] == "outerHTML"
    html = response.content.decode()
    assert 'data-status="running"' in html and 'data-figure="done">4<' in html
    assert f'hx-get="/batches/{batch.pk}/progress/?shown=running"' in html


def test_a_finished_batch_stops_polling_and_shows_its_summary(alice_client, event):
    alice_client.post(START_URL, {"event_id": event.pk}, **HTMX)
    batch = Batch.objects.get()
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.FINISHED,
        total=10,
        done_count=9,
        failed_count=1,
        started_at="2030-01-01T10:00Z",
        finished_at="2030-01-01T10:01:05Z",
    )
    ItemFailure.objects.create(batch=batch, item_key="42", item_pk=42, error="SeatCannotBeReissued: Seat 7 is blocked.")

    fragment = alice_client.get(f"/batches/{batch.pk}/progress/", **HTMX).content.decode()
    assert 'hx-trigger="every' not in fragment
    assert "Finished in 1m 05s with 1 failed ticket." in fragment
    assert f'hx-get="/batches/{batch.pk}/failures/"' in fragment
    assert not re.search(r"<button[^>]*disabled", fragment)

    failures = alice_client.get(f"/batches/{batch.pk}/failures/", **HTMX).content.decode()
    assert "Seat 7 is blocked." in failures
    page = alice_client.get(f"/batches/{batch.pk}/").content.decode()
    assert (
        "Seat 7 is blocked." in page
        and 'http-equiv="refresh"' not in page
        and "Refresh" not in page_headers(alice_client, f"/batches/{batch.pk}/?live=1")
    )


def test_state_changing_requests_need_the_csrf_token(make_user, event):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    assert client.post(START_URL, {"event_id": event.pk}, **HTMX).status_code == 403
    assert not Batch.objects.exists()


def test_cancel_asks_first_without_javascript_then_ends_the_batch(alice_client, event):
    alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()

    confirm = alice_client.get(f"/batches/{batch.pk}/cancel/").content.decode()
    assert "Stop the run</button>" in confirm and "Keep it running</a>" in confirm and 'method="post"' in confirm
    assert Batch.objects.get().is_active, "the confirmation page changes nothing"

    response = alice_client.post(f"/batches/{batch.pk}/cancel/", follow=True)
    assert response.redirect_chain == [(f"/batches/{batch.pk}/", 303)]
    assert "Cancelled. Tickets not done yet are counted as skipped." in response.content.decode()
    assert Batch.objects.get().status == BatchStatus.CANCELLED


def test_htmx_cancel_answers_with_the_ended_panel(alice_client, event):
    alice_client.post(START_URL, {"event_id": event.pk}, **HTMX)
    batch = Batch.objects.get()
    page = alice_client.get(f"/events/{event.pk}/").content.decode()
    assert 'data-confirm="Stop this run?' in page and 'data-confirm-yes="Stop the run"' in page
    assert 'data-confirm-no="Keep it running"' in page and "hx-confirm" not in page

    html = alice_client.post(f"/batches/{batch.pk}/cancel/", **HTMX).content.decode()
    assert 'data-status="cancelled"' in html and "by alice" in html
    assert 'hx-trigger="every' not in html


def test_others_cannot_cancel_or_retry(alice_client, client, event, make_user):
    alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()
    client.force_login(make_user("mallory", may_reissue=False))
    assert client.get(f"/batches/{batch.pk}/cancel/").status_code == 404
    assert client.post(f"/batches/{batch.pk}/cancel/").status_code == 404
    assert client.post(f"/batches/{batch.pk}/retry-failed/").status_code == 404
    assert Batch.objects.get().is_active


def test_retry_failed_from_the_page_starts_a_linked_batch(alice_client, event):
    alice_client.post(START_URL, {"event_id": event.pk})
    first = Batch.objects.get()
    Batch.objects.filter(pk=first.pk).update(status=BatchStatus.FINISHED, total=10, done_count=9, failed_count=1)
    ItemFailure.objects.create(batch=first, item_key="1", item_pk=1, error="boom")
    assert "Retry 1 failed ticket" in alice_client.get(f"/batches/{first.pk}/").content.decode()

    response = alice_client.post(f"/batches/{first.pk}/retry-failed/")
    retry = Batch.objects.exclude(pk=first.pk).get()
    assert response.status_code == 303 and response["Location"] == f"/batches/{retry.pk}/?live=1"
    assert retry.retry_of_id == first.pk
    page = alice_client.get(response["Location"]).content.decode()
    assert f"Started a retry of the failed tickets of #{first.pk}." in page

    again = alice_client.post(f"/batches/{retry.pk}/retry-failed/", **HTMX)
    assert again.status_code == 400 and "still running" in again.content.decode()


def test_a_nul_byte_in_a_query_string_or_a_form_is_a_400_plain_page(alice_client, admin_client, event):
    for client, url in [
        (alice_client, f"/events/{event.pk}/?page=%00"),
        (admin_client, "/admin/batches/batch/?status=%00"),
        (admin_client, "/admin/batches/batch/?operation=%00"),
        (admin_client, "/admin/batches/batch/?q=%00"),
        (admin_client, "/admin/batches/itemfailure/?batch__operation=%00"),
    ]:
        response = client.get(url)
        assert response.status_code == 400, url
        assert response["Content-Type"].startswith("text/plain") and "NUL character" in response.content.decode()
    response = alice_client.post(START_URL, {"event_id": f"{event.pk}\x00"}, **HTMX)
    assert response.status_code == 400 and "NUL character" in response.content.decode()
    assert not Batch.objects.exists()


def _finished_with_a_failure(client, event) -> Batch:
    client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get(scope_key=f"event:{event.pk}")
    Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.FINISHED, total=10, done_count=9, failed_count=1)
    ItemFailure.objects.create(batch=batch, item_key="1", item_pk=1, error="boom")
    return batch


def test_retry_of_a_batch_whose_event_was_deleted_says_why_and_starts_nothing(alice_client, event):
    batch = _finished_with_a_failure(alice_client, event)
    event_id = event.pk
    event.delete()
    htmx = alice_client.post(f"/batches/{batch.pk}/retry-failed/", **HTMX)
    plain = alice_client.post(f"/batches/{batch.pk}/retry-failed/")
    for response in (htmx, plain):
        assert response.status_code == 400
        assert f"Cannot retry. There is no event {event_id}." in response.content.decode()
    assert 'class="batch-panel"' in htmx.content.decode() and "<h1>Could not retry</h1>" in plain.content.decode()
    assert Batch.objects.count() == 1


def test_a_batch_whose_operation_was_removed_still_shows_and_cannot_be_retried(alice_client, event):
    batch = _finished_with_a_failure(alice_client, event)
    Batch.objects.filter(pk=batch.pk).update(operation="gone_operation")

    page = alice_client.get(f"/batches/{batch.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "gone_operation (no longer installed)" in html and "boom" in html
    assert "/retry-failed/" not in html and "/batches/start/" not in html
    for response in (
        alice_client.post(f"/batches/{batch.pk}/retry-failed/", **HTMX),
        alice_client.post(f"/batches/{batch.pk}/retry-failed/"),
    ):
        assert response.status_code == 400
        message = "Cannot retry: the operation 'gone_operation' of this batch is no longer installed."
        assert message in html_text(response)
    assert Batch.objects.count() == 1


def test_cancelling_a_batch_whose_operation_was_removed_answers_with_its_panel(alice_client, event):
    alice_client.post(START_URL, {"event_id": event.pk})
    batch = Batch.objects.get()
    Batch.objects.filter(pk=batch.pk).update(operation="gone_operation")
    response = alice_client.post(f"/batches/{batch.pk}/cancel/", **HTMX)
    assert response.status_code == 200 and 'data-status="cancelled"' in response.content.decode()
    assert Batch.objects.get().status == BatchStatus.CANCELLED
