"""Operators review batches in the admin: read-only, filterable, with failed items."""

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch, BatchStatus, Chunk, ItemFailure, Worker


@pytest.fixture
def batch(make_user, make_finished_batch):
    return make_finished_batch("Gala", tickets=10, failed=7, created_by=make_user("alice"))


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
    assert "Seat 7 is blocked by the venue." in page
    assert 'name="_save"' not in page
    assert admin_client.get(reverse("admin:batches_batch_add")).status_code == 403
    failures = admin_client.get(reverse("admin:batches_itemfailure_changelist") + f"?batch__id__exact={batch.pk}")
    assert failures.status_code == 200 and "Seat 7 is blocked by the venue." in failures.content.decode()


def run_action(admin_client, action: str, *batches: Batch, **extra: str):
    url = reverse("admin:batches_batch_changelist")
    data = {"action": action, "_selected_action": [b.pk for b in batches], **extra}
    return admin_client.post(url, data, follow=True)


def test_the_cancel_action_asks_first_and_cancels_only_once_confirmed(admin_client, batch):
    running = [
        Batch.objects.create(
            operation="reissue_tickets", scope_key=f"event:r{n}", scope_label=f"Run {n}", status=BatchStatus.RUNNING
        )
        for n in range(2)
    ]

    asked = run_action(admin_client, "cancel", *running, batch)
    page = asked.content.decode()
    assert asked.status_code == 200 and "cancel_selected_confirmation.html" in asked.templates[0].name
    assert "Stop these 2 runs?" in page and "Reissue tickets: Run 0" in page and "Reissue tickets: Run 1" in page
    assert "1 of the selected batches has already ended" in page
    assert 'class="button cancel-link">No, keep them running</a>' in page
    assert Batch.objects.filter(pk__in=[b.pk for b in running], status=BatchStatus.RUNNING).count() == 2
    # The page's own form: what it posts back is what confirms.
    confirm = dict(re.findall(r'<input type="hidden" name="(action|post)" value="([^"]+)">', page))
    selected = re.findall(r'<input type="hidden" name="_selected_action" value="(\d+)">', page)
    assert confirm == {"action": "cancel", "post": "yes"} and sorted(map(int, selected)) == [b.pk for b in running]

    done = run_action(admin_client, confirm["action"], *running, post=confirm["post"]).content.decode()
    assert "Cancelled 2 batch(es)." in done
    assert Batch.objects.filter(pk__in=[b.pk for b in running], status=BatchStatus.CANCELLED).count() == 2


def test_the_cancel_action_over_ended_batches_only_says_so(admin_client, batch):
    page = run_action(admin_client, "cancel", batch).content.decode()
    assert "None of the selected batches is running: nothing to cancel." in page
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED


def test_the_admin_names_batches_by_their_operation_label_and_rounds_worker_rates(admin_client, batch):
    page = admin_client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert f"Reissue tickets: Gala (#{batch.pk})" in page and "reissue_tickets on" not in page
    now = timezone.now()
    Worker.objects.create(host="w", pid=1, threads=2, started_at=now, heartbeat_at=now, items_per_second=7.98266930896)
    workers = admin_client.get(reverse("admin:batches_worker_changelist")).content.decode()
    assert '<td class="field-rate">8.0</td>' in workers and "7.98" not in workers


def test_admin_actions_cancel_retry_and_resume(admin_client, batch, make_user):
    running = Batch.objects.create(operation="reissue_tickets", scope_key="event:running", status=BatchStatus.RUNNING)
    stale = Batch.objects.create(
        operation="reissue_tickets",
        scope_key="event:stale",
        status=BatchStatus.QUEUED,
        lease_expires_at="2020-01-01T00:00Z",
    )

    page = run_action(admin_client, "cancel", running, post="yes").content.decode()
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


@pytest.mark.parametrize(
    "url",
    [
        reverse("admin:batches_batch_changelist") + "?status=%00",
        reverse("admin:batches_batch_changelist") + "?operation=%00",
        reverse("admin:batches_itemfailure_changelist") + "?batch__operation=%00",
    ],
)
def test_a_nul_byte_in_an_admin_filter_is_refused_not_a_server_error(admin_client, batch, url):
    response = admin_client.get(url)
    assert 400 <= response.status_code < 500


@pytest.fixture
def orphaned(make_user, make_event):
    """Finished batches with failed items: one of an operation no longer installed, one whose event is gone."""
    event = make_event(tickets=3, name="Cancelled gig")
    alice = make_user("alice")
    common = {"status": BatchStatus.FINISHED, "total": 3, "done_count": 2, "failed_count": 1, "created_by": alice}
    gone_op = Batch.objects.create(operation="gone_op", scope_key="thing:1", params={"thing": 1}, **common)
    gone_event = Batch.objects.create(
        operation="reissue_tickets", scope_key=f"event:{event.pk}", params={"event_id": event.pk}, **common
    )
    for batch in (gone_op, gone_event):
        ItemFailure.objects.create(batch=batch, item_key="3", item_pk=3, error="Seat 3 is blocked.")
    event.delete()
    return gone_op, gone_event


def test_a_batch_whose_operation_or_event_is_gone_still_shows_and_its_retry_warns(admin_client, orphaned):
    gone_op, _ = orphaned
    listing = admin_client.get(reverse("admin:batches_batch_changelist"))
    assert listing.status_code == 200 and "gone_op" in listing.content.decode()
    page = admin_client.get(reverse("admin:batches_batch_change", args=[gone_op.pk]))
    assert page.status_code == 200 and "Seat 3 is blocked." in page.content.decode()
    assert admin_client.get(reverse("admin:batches_batch_changelist") + "?operation=gone_op").status_code == 200
    before = Batch.objects.count()

    response = run_action(admin_client, "retry_failed_items", *orphaned)

    assert response.status_code == 200
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert {w.split(":")[0] for w in warnings} == {f"Batch #{b.pk}" for b in orphaned}, warnings
    assert Batch.objects.count() == before


def test_the_workers_list_says_what_each_runs_at_a_cost_that_does_not_grow_with_the_workers(
    admin_client, batch, django_assert_max_num_queries
):
    now = timezone.now()
    url = reverse("admin:batches_worker_changelist")

    def add_worker(index: int) -> None:
        worker = Worker.objects.create(host="w", pid=index, threads=2, started_at=now, heartbeat_at=now)
        Chunk.objects.create(batch=batch, index=index, last_key=index + 1, size=1, claimed_by=worker)

    add_worker(0)
    with django_assert_max_num_queries(50) as one_worker:
        page = admin_client.get(url).content.decode()
    assert f"batch #{batch.pk} chunk 0" in page
    for index in range(1, 8):
        add_worker(index)
    with django_assert_max_num_queries(len(one_worker.captured_queries)):
        page = admin_client.get(url).content.decode()
    assert f"batch #{batch.pk} chunk 7" in page
