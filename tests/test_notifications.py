"""Told when it's done: the start's choice (form and API), the outbox row the end writes, the email
the outbox sends (once), and what a batch that did not ask for one gets (nothing)."""

import json
from unittest import mock

import pytest
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.test import Client
from django.utils import timezone

from batches.engine import exports, outbox
from batches.models import Batch, BatchStatus, Notification
from batches.services import cancel_batch, start_batch
from batches.testing import run_batch, run_to_end
from tests.testapp.operations import MarkRecords

# The outbox works on the zero-setup default too: `make run` on SQLite prints the emails.
pytestmark = [pytest.mark.django_db, pytest.mark.both_backends]

MARK_START = "/batches/start/mark_records/"
REISSUE_START = "/batches/start/reissue_tickets/"


@pytest.fixture
def clerk(make_clerk):
    return make_clerk("clara", email="clara@example.com")


def emails_for(batch: Batch) -> list[mail.EmailMessage]:
    return [m for m in mail.outbox if m.extra_headers.get("Message-ID", "").startswith(f"<batch-{batch.pk}-")]


def test_a_batch_that_asked_is_emailed_once_with_its_outcome_figures_failures_and_link(
    clerk, make_ledger, quick_records, settings
):
    settings.BATCHES_SITE_URL = "https://batches.example.com"
    ledger = make_ledger(records=30, name="Invoices")
    batch = start_batch(
        operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=True, site_url="http://ignored/"
    ).batch
    batch = run_to_end(batch)

    assert Notification.objects.filter(batch=batch, sent_at__isnull=True).count() == 1
    assert outbox.send_due() == 1
    assert outbox.send_due() == 0, "sent once, marked sent"

    (email,) = emails_for(batch)
    assert email.to == ["clara@example.com"]
    assert email.subject == f"Finished: Mark records · Invoices (#{batch.pk})"
    assert "30 records: 26 done, 4 failed, 0 skipped." in email.body
    assert "- Record 7: Record 7 is refused." in email.body
    assert f"The batch's page: https://batches.example.com/batches/{batch.pk}/" in email.body
    assert email.extra_headers["Message-ID"].endswith(".ended@batches.example.com>")
    assert Notification.objects.get(batch=batch).sent_at is not None


def test_the_link_is_built_from_the_starts_request_without_the_setting(clerk, ledger, quick_records):
    batch = start_batch(
        operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=True, site_url="http://shop.test/"
    ).batch
    run_to_end(batch)
    outbox.send_due()
    (email,) = emails_for(batch)
    assert f"The batch's page: http://shop.test/batches/{batch.pk}/" in email.body
    assert email.extra_headers["Message-ID"].endswith("@shop.test>")


def test_a_batch_that_did_not_ask_or_whose_starter_has_no_address_sends_nothing(
    clerk, make_clerk, make_ledger, quick_records
):
    run_batch("mark_records", {"ledger_id": make_ledger(records=5).pk}, user=clerk)  # the default: no
    no_address = make_clerk("bob")
    batch = start_batch(
        operation="mark_records", data={"ledger_id": make_ledger(records=5).pk}, user=no_address, notify=True
    ).batch
    run_to_end(batch)
    assert outbox.send_due() == 0
    assert not Notification.objects.exists() and mail.outbox == []


def test_a_cancelled_batch_says_who_cancelled_it(clerk, ledger, make_clerk):
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=True).batch
    cancel_batch(batch.pk, user=make_clerk("carol"))
    outbox.send_due()
    (email,) = emails_for(batch)
    assert email.subject.startswith("Cancelled: Mark records")
    assert "was cancelled by carol" in email.body


class RefusingBackend(EmailBackend):
    def send_messages(self, messages):
        raise ConnectionRefusedError("the mail server is away")


def test_a_refused_send_is_tried_again_later_and_counted(clerk, ledger, settings, quick_records):
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=True).batch
    run_to_end(batch)
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    assert outbox.send_due() == 0
    row = Notification.objects.get(batch=batch)
    assert (row.attempts, row.sent_at) == (1, None)
    assert "the mail server is away" in row.last_error
    assert outbox.send_due() == 0, "not before its next attempt"

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert outbox.send_due(now=row.next_attempt_at) == 1
    assert len(emails_for(batch)) == 1


# --- the start's choice -------------------------------------------------------------------------


def checkbox(html: str) -> str:
    start = html.index('name="_notify"')
    return html[html.rindex("<input", 0, start) : html.index(">", start) + 1]


def test_the_checkbox_follows_the_operations_default(clerk, ledger, make_user, event, monkeypatch):
    client = Client()
    client.force_login(clerk)
    assert "checked" not in checkbox(client.get(MARK_START, {"ledger_id": ledger.pk}).content.decode())
    # The demo's reissue declares itself long: ticked on its event page and its confirmation page.
    organiser = Client()
    organiser.force_login(make_user("olga", email="olga@example.com"))
    assert "checked" in checkbox(organiser.get(f"/events/{event.pk}/").content.decode())
    assert "checked" in checkbox(organiser.get(REISSUE_START, {"event_id": event.pk}).content.decode())
    monkeypatch.setattr(MarkRecords, "notify_by_default", True)
    assert "checked" in checkbox(client.get(MARK_START, {"ledger_id": ledger.pk}).content.decode())


def test_someone_without_an_email_address_is_not_offered_the_email(alice_client, event):
    assert 'name="_notify"' not in alice_client.get(f"/events/{event.pk}/").content.decode()


def test_the_confirmation_page_carries_the_choice_on(client, clerk, ledger):
    client.force_login(clerk)
    page = client.get(MARK_START, {"ledger_id": ledger.pk, "_notify": "on", "_notify_offered": "1"})
    assert page.status_code == 200 and "checked" in checkbox(page.content.decode())


@pytest.mark.parametrize(
    ("form", "default", "asked"),
    [
        ({"_notify": "on", "_notify_offered": "1"}, False, True),
        ({"_notify_offered": "1"}, True, False),  # offered, unticked
        ({}, True, True),  # a form that does not offer it: the operation's default
        ({}, False, False),
    ],
)
def test_the_form_start_stores_the_choice(client, clerk, ledger, monkeypatch, form, default, asked):
    monkeypatch.setattr(MarkRecords, "notify_by_default", default)
    client.force_login(clerk)
    response = client.post(MARK_START, {"ledger_id": ledger.pk, **form})
    assert response.status_code == 303
    batch = Batch.objects.get()
    assert batch.notify is asked
    assert batch.site_url == "http://testserver/"


def test_the_api_field(clerk, ledger, monkeypatch):
    from tests.test_api import api_client, post

    api = api_client(clerk)
    body = {"operation": "mark_records", "params": {"ledger_id": ledger.pk}}
    response = post(api, "/api/batches", {**body, "notify": True})
    assert response.status_code == 202 and response.json()["notify"] is True
    assert Batch.objects.get().notify is True
    cancel_batch(response.json()["id"], user=clerk)

    monkeypatch.setattr(MarkRecords, "notify_by_default", True)
    omitted = post(api, "/api/batches", body)
    assert omitted.json()["notify"] is True, "omitted: the operation's default"
    cancel_batch(omitted.json()["id"], user=clerk)
    assert post(api, "/api/batches", {**body, "notify": False}).json()["notify"] is False

    refused = post(api, "/api/batches", {**body, "notify": "please"})
    assert refused.status_code in (400, 422)
    listed = {op["name"]: op for op in json.loads(api.get("/api/operations").content)}
    assert listed["mark_records"]["notify_by_default"] is True


def test_a_batch_with_nothing_to_do_owes_its_email_too(clerk, make_ledger):
    batch = start_batch(
        operation="mark_records", data={"ledger_id": make_ledger(records=0).pk}, user=clerk, notify=True
    ).batch
    batch = run_to_end(batch)
    assert batch.status == BatchStatus.FINISHED
    assert outbox.send_due() == 1
    assert "0 records: 0 done, 0 failed, 0 skipped." in emails_for(batch)[0].body


def test_a_retry_asks_for_the_email_when_the_batch_it_retries_did(clerk, ledger, quick_records):
    from batches.services import retry_failed

    first = run_to_end(
        start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=True).batch
    )
    assert first.failed_count
    retry = retry_failed(first.pk, user=clerk).batch
    assert retry.notify is True


def test_the_terminal_client_asks_with_notify(clerk, ledger):
    from django.core.management import call_command

    call_command("batches", "start", "mark_records", f"ledger_id={ledger.pk}", "--user", "clara", "--notify")
    assert Batch.objects.get().notify is True


def test_an_email_that_is_not_ready_waits_without_counting_an_attempt(clerk, ledger, quick_records, monkeypatch):
    from batches import emails

    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=True).batch
    run_to_end(batch)
    monkeypatch.setattr(emails, "ready", lambda batch: False)  # an export whose file is being assembled
    assert outbox.send_due() == 0
    row = Notification.objects.get(batch=batch)
    assert (row.attempts, row.sent_at) == (0, None)
    assert outbox.send_due(now=row.created_at + outbox.WAIT_FOR_FILE) == 1, "not forever"


def test_an_exports_email_waits_for_its_file_and_links_to_it(make_event, make_user, settings, tmp_path):
    settings.BATCHES_SITE_URL = "https://batches.example.com"
    settings.MEDIA_ROOT = str(tmp_path)
    owner = make_user("erin", email="erin@example.com")
    event = make_event(tickets=30, name="Gala")
    batch = start_batch(
        operation="export_tickets", data={"event_id": event.pk, "format": "csv"}, user=owner, notify=True
    ).batch
    assembled = exports.assemble
    with mock.patch.object(exports, "assemble", lambda *args, **kwargs: False):
        batch = run_to_end(batch)
    assert batch.status == BatchStatus.FINISHED
    assert outbox.send_due() == 0, "the email waits for the file"

    assert assembled(batch.pk)
    assert outbox.send_due(now=timezone.now() + outbox.READY_AGAIN) == 1
    (email,) = emails_for(batch)
    assert f"Download the file: https://batches.example.com/batches/{batch.pk}/download/" in email.body
