"""The page contract in a real browser: the panel on a host's page that is not ours (tests/host/:
its own base.html, its own strict CSP, no django-htmx middleware), with and without JavaScript."""

import re
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, expect
from pytest_django.live_server_helper import LiveServer

from batches.models import Batch
from tests.host import settings as host_settings

from .conftest import confirm_in_dialog, watch_csp


@pytest.fixture
def host_server(settings, transactional_db) -> Iterator[LiveServer]:
    """A live server of the test host. Its own (the session's live server loaded the site's
    middleware when it started): the host's settings are in place before this one starts."""
    for name in ("ROOT_URLCONF", "MIDDLEWARE", "TEMPLATES"):
        setattr(settings, name, getattr(host_settings, name))
    server = LiveServer("localhost")
    server._live_server_modified_settings.enable()
    try:
        yield server
    finally:
        server._live_server_modified_settings.disable()
        server.stop()


def signed_in(browser: Browser, server: LiveServer, user, *, javascript: bool = True) -> BrowserContext:
    """A browser signed in as `user` (the host has no login page of ours)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(java_script_enabled=javascript)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": server.url}])
    return context


def test_the_panel_on_a_hosts_page_asks_first_runs_live_to_the_end_and_shows_refusals(
    browser: Browser, host_server, worker_process, make_event, make_user, settings
):
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS="10")
    event = make_event(tickets=300, name="Gala")
    alice = make_user("alice")
    worker.wait_ready()
    page = signed_in(browser, host_server, alice).new_page()
    violations = watch_csp(page)

    response = page.goto(f"{host_server.url}/shop/events/{event.pk}/")
    assert "style-src 'self';" in response.headers["content-security-policy"]
    expect(page.locator(".host-brand")).to_have_text("Host shop: a project of its own")

    page.get_by_role("button", name="Reissue tickets").click()
    dialog = page.locator("#batches-confirm")
    expect(dialog).to_contain_text("Reissue all 300 tickets of Gala? Each gets a new code.")
    confirm_in_dialog(page, "Not now")
    expect(dialog).not_to_be_visible()
    assert not Batch.objects.exists(), "asked first, and the answer was no"

    page.get_by_role("button", name="Reissue tickets").click()
    confirm_in_dialog(page, "Reissue tickets")
    panel = page.locator(".batch-panel")
    expect(panel).to_have_attribute("data-status", "running", timeout=15_000)
    page.wait_for_function("() => Number(document.querySelector('[data-figure=done]').textContent) > 0")
    expect(panel).to_have_attribute("data-status", "finished", timeout=60_000)
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuetext", "300 of 300 tickets, 100%")
    expect(page).to_have_title("Finished · Reissue tickets · Gala")
    expect(page.locator("#batches-announcer")).to_contain_text("finished")
    # The panel's styles restyle nothing of the host's (which has none: the browser's defaults stand).
    assert page.evaluate("getComputedStyle(document.body).margin") == "8px"
    assert page.locator(".host-paragraph").evaluate("e => getComputedStyle(e).color") == "rgb(0, 0, 0)"

    # A refusal is the panel with its message, swapped in: a per-user limit (429), then bad input (400).
    settings.BATCHES_STARTS_PER_MINUTE = 1
    page.get_by_role("button", name="Reissue tickets").click()
    confirm_in_dialog(page, "Reissue tickets")
    expect(panel.get_by_role("alert")).to_contain_text("You have started 1 batches in the last minute")
    settings.BATCHES_STARTS_PER_MINUTE = 0
    gone = event.pk
    event.delete()
    page.get_by_role("button", name="Reissue tickets").click()
    confirm_in_dialog(page, "Reissue tickets")
    expect(panel.get_by_role("alert")).to_contain_text(f"There is no event {gone}.")
    assert Batch.objects.count() == 1

    assert violations == [], violations


def test_without_javascript_the_panel_on_a_hosts_page_posts_and_lands_on_the_batch_page(
    browser: Browser, host_server, make_event, make_user
):
    event = make_event(tickets=5, name="Gala")
    page = signed_in(browser, host_server, make_user("alice"), javascript=False).new_page()
    page.goto(f"{host_server.url}/shop/events/{event.pk}/")

    page.get_by_role("button", name="Reissue tickets").click()  # a page that asks first
    expect(page.get_by_text("Reissue all 5 tickets of Gala? Each gets a new code.")).to_be_visible()
    expect(page.locator(".host-brand")).to_be_visible()
    page.get_by_role("button", name="Reissue tickets").click()

    batch = Batch.objects.get()
    page.wait_for_url(re.compile(rf"/jobs/{batch.pk}/\?live=1$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"(batch #{batch.pk})")
    expect(page.get_by_role("status")).to_have_text("Started.")
    expect(page.locator(".host-brand")).to_be_visible()
