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


@pytest.fixture
def host(settings):
    """The test host's settings (tests/host/settings.py): its own base.html, URLs, CSP, and no
    HtmxMiddleware."""
    from tests.host import settings as host_settings

    for name in ("ROOT_URLCONF", "MIDDLEWARE", "TEMPLATES"):
        setattr(settings, name, getattr(host_settings, name))


def test_a_hosts_page_gets_the_panel_from_the_tags_alone(host, alice_client, event):
    page = alice_client.get(f"/shop/events/{event.pk}/")
    markup = page.content.decode()
    assert page.status_code == 200 and "Host shop: a project of its own" in markup, "the host's own base.html"
    assert (
        "default-src 'self'" in page["Content-Security-Policy"]
        and "style-src 'self';" in page["Content-Security-Policy"]
    )
    head = markup.split("</head>")[0]
    for asset in (
        "/static/batches/css/batches.css",
        "/static/django_htmx/htmx-2.min.js",
        "/static/batches/js/batches.js",
    ):
        assert f'"{asset}"' in head
    assert not re.search(r"<script(?![^>]*\ssrc=)", markup), "no inline script"
    assert " style=" not in markup and "<style" not in markup, "no inline style"
    assert "<title>Reissue tickets · Gala</title>" in markup
    panel = re.search(r'<section class="batch-panel"[^>]*>', markup).group(0)
    assert re.search(r"""hx-headers='\{"X-CSRFToken": "\w{32,}"\}'""", panel), "the panel carries its CSRF header"
    assert (
        'hx-post="/jobs/start/reissue_tickets/"' in markup and 'data-confirm="Reissue all 20 tickets of Gala?' in markup
    )


def test_on_a_hosts_page_someone_who_may_not_act_gets_no_panel(host, client, make_user, event):
    client.force_login(make_user("carol", may_reissue=False))
    markup = client.get(f"/shop/events/{event.pk}/").content.decode()
    assert "batch-panel" not in markup and "<title></title>" in markup


def test_without_javascript_a_start_on_a_hosts_page_goes_to_the_batch_page_in_its_layout(host, alice_client, event):
    question = alice_client.get(f"/jobs/start/reissue_tickets/?event_id={event.pk}")
    assert question.status_code == 200 and "Host shop" in question.content.decode()
    assert "Reissue all 20 tickets of Gala? Each gets a new code." in question.content.decode()

    started = alice_client.post("/jobs/start/reissue_tickets/", {"event_id": event.pk})
    batch = Batch.objects.get()
    assert started.status_code == 303 and started["Location"] == f"/jobs/{batch.pk}/?live=1"
    page = alice_client.get(started["Location"])
    markup = page.content.decode()
    assert page.status_code == 200 and "Host shop" in markup and f"(batch #{batch.pk})" in markup
    assert '<p class="notice" role="status">Started.</p>' in markup, "the batch page says it, in the host's layout"

    refused = alice_client.post("/jobs/start/reissue_tickets/", {"event_id": 999_999})
    assert refused.status_code == 400 and "There is no event 999999." in refused.content.decode()
    assert "Host shop" in refused.content.decode() and "Back to the home page" in refused.content.decode()
