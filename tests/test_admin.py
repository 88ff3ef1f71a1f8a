"""Operators review batches in the admin: read-only, filterable, with failed items."""

import pytest
from django.urls import reverse

from batches.models import Batch, BatchStatus, ItemFailure


@pytest.fixture
def batch(make_user, make_event):
    event = make_event(tickets=10, name="Gala")
    batch = Batch.objects.create(
        operation="reissue_tickets",
        scope_key=f"event:{event.pk}",
        params={"event_id": event.pk},
        scope_label="Gala",
        status=BatchStatus.FINISHED,
        total=10,
        done_count=9,
        failed_count=1,
        created_by=make_user("alice"),
    )
    ItemFailure.objects.create(batch=batch, item_key="7", item_pk=7, error="SeatCannotBeReissued: Seat 7 is blocked.")
    return batch


def test_operators_list_filter_and_search_batches(admin_client, batch):
    url = reverse("admin:batches_batch_changelist")
    page = admin_client.get(url).content.decode()
    assert "Gala" in page and "100%" in page
    for query in ["?status__exact=finished", "?operation=reissue_tickets", "?q=alice", f"?q={batch.pk}"]:
        response = admin_client.get(url + query)
        assert response.status_code == 200 and "Gala" in response.content.decode(), query
    assert "Gala" not in admin_client.get(url + "?status__exact=running").content.decode()


def test_the_batch_page_shows_its_failed_items_and_cannot_be_edited(admin_client, batch):
    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert "Seat 7 is blocked." in page
    assert 'name="_save"' not in page
    assert admin_client.get(reverse("admin:batches_batch_add")).status_code == 403
    failures = admin_client.get(reverse("admin:batches_itemfailure_changelist") + f"?batch__id__exact={batch.pk}")
    assert failures.status_code == 200 and "Seat 7 is blocked." in failures.content.decode()


def run_action(admin_client, action: str, *batches: Batch):
    url = reverse("admin:batches_batch_changelist")
    return admin_client.post(url, {"action": action, "_selected_action": [b.pk for b in batches]}, follow=True)


def test_admin_actions_cancel_retry_and_resume(admin_client, batch, make_user):
    running = Batch.objects.create(operation="reissue_tickets", scope_key="event:running", status=BatchStatus.RUNNING)
    stale = Batch.objects.create(
        operation="reissue_tickets",
        scope_key="event:stale",
        status=BatchStatus.QUEUED,
        lease_expires_at="2020-01-01T00:00Z",
    )

    page = run_action(admin_client, "cancel", running).content.decode()
    assert "Cancelled 1 batch(es)." in page
    running.refresh_from_db()
    assert running.status == BatchStatus.CANCELLED

    page = run_action(admin_client, "retry_failed_items", batch).content.decode()
    retry = Batch.objects.get(retry_of=batch)
    assert f"started batch #{retry.pk}" in page

    page = run_action(admin_client, "resume_stale", stale, batch).content.decode()
    assert f"Recovered: #{stale.pk} replanned. Not stale (left alone): 1." in page
    stale.refresh_from_db()
    assert stale.recoveries == 1
