"""The page contract over HTTP: the panel's views answer a host without django-htmx's middleware,
and the tags render what the panel needs on a page that is not ours (tests/host/)."""

import re

import pytest

from batches.models import Batch
from tests.support import HTMX, START_URL

HTMX_MIDDLEWARE = "django_htmx.middleware.HtmxMiddleware"


@pytest.fixture
def without_htmx_middleware(settings):
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if name != HTMX_MIDDLEWARE]


def test_without_htmx_middleware_a_start_is_a_panel_or_a_redirect_never_a_500(
    without_htmx_middleware, alice_client, make_event
):
    first, second = make_event(tickets=5), make_event(tickets=5)

    started = alice_client.post(START_URL, {"event_id": first.pk}, **HTMX)
    batch = Batch.objects.get()
    assert started.status_code == 202 and 'class="batch-panel' in started.content.decode()
    assert "Started." in started.content.decode()

    joined = alice_client.post(START_URL, {"event_id": first.pk}, **HTMX)
    assert joined.status_code == 200 and "no new one was started" in joined.content.decode()

    plain = alice_client.post(START_URL, {"event_id": second.pk})
    assert plain.status_code == 303 and re.fullmatch(r"/batches/\d+/\?live=1", plain["Location"])

    refused = alice_client.post(START_URL, {"event_id": 999_999}, **HTMX)
    assert refused.status_code == 400 and "There is no event 999999." in refused.content.decode()

    poll = alice_client.get(f"/batches/{batch.pk}/progress/?shown=queued", **HTMX)
    assert poll.status_code == 200 and 'data-figure="done"' in poll.content.decode()
    cancelled = alice_client.post(f"/batches/{batch.pk}/cancel/", **HTMX)
    assert cancelled.status_code == 200 and "Cancelled." in cancelled.content.decode()
    assert Batch.objects.count() == 2
