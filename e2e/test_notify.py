"""Told when it's done, in a real browser: the "Email me when it ends" checkbox, and a browser
notification when a batch ends while its tab is in the background."""

import pytest
from playwright.sync_api import Browser, Page, expect

from batches.models import Batch

from .conftest import log_in, screenshot, start_run

TICKETS = 120
ITEM_DELAY_MS = "20"
# The event page has two panels (reissue and export): the tests act on the reissue one.
REISSUE_PANEL = "#panel-reissue_tickets"

# Records each notification the page makes (the real one is made too): headless Chromium shows none.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  if (!Real) return;
  window.__notifications = [];
  function Recording(title, options) {
    window.__notifications.push({ title: title, body: options && options.body, tag: options && options.tag });
    return new Real(title, options);
  }
  Object.defineProperty(Recording, "permission", { get: () => Real.permission });
  Recording.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recording;
})();
"""


@pytest.fixture
def scenario(live_server, worker_process, make_event, make_user):
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS=ITEM_DELAY_MS, DEMO_FAIL_EVERY="97")
    event = make_event(tickets=TICKETS, name="Gala")
    make_user("alice", email="alice@example.com")
    worker.wait_ready()
    return {"base": live_server.url, "event_url": f"{live_server.url}/events/{event.pk}/"}


def test_the_email_checkbox_is_ticked_for_a_long_operation_and_its_choice_is_kept(browser: Browser, scenario):
    page = browser.new_context().new_page()
    log_in(page, scenario["base"], "alice")
    page.goto(scenario["event_url"])
    checkbox = page.locator(REISSUE_PANEL).get_by_label("Email me when it ends")
    expect(checkbox).to_be_checked()  # the demo's reissue declares itself long

    checkbox.uncheck()
    start_run(page)
    expect(
        page.locator(f'{REISSUE_PANEL}[data-status="running"], {REISSUE_PANEL}[data-status="finished"]')
    ).to_be_visible()
    assert Batch.objects.get().notify is False


@pytest.mark.screenshots
def test_a_batch_ending_in_a_background_tab_is_told_by_a_browser_notification(browser: Browser, scenario):
    context = browser.new_context()
    context.grant_permissions(["notifications"], origin=scenario["base"])
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = context.new_page()
    log_in(page, scenario["base"], "alice")
    page.goto(scenario["event_url"])

    opt_in = page.locator(REISSUE_PANEL).get_by_role("button", name="Notify me in this browser")
    expect(opt_in).to_be_visible()  # hidden without the Notification API: progressive enhancement
    opt_in.click()
    expect(
        page.locator(REISSUE_PANEL).get_by_role("button", name="Browser notifications on (turn off)")
    ).to_have_attribute("aria-pressed", "true")

    expect(page.locator(REISSUE_PANEL).get_by_label("Email me when it ends")).to_be_checked()
    screenshot(page, "notifications.png")
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible()
    background(page)
    page.wait_for_function("() => window.__notifications.length > 0", timeout=60_000)
    batch = Batch.objects.get()
    notes = page.evaluate("() => window.__notifications")
    told = {"title": "Reissue tickets finished", "body": f"Batch #{batch.pk} finished.", "tag": f"batch-{batch.pk}"}
    assert notes == [told]


def background(page: Page) -> None:
    """The tab goes to the background: another tab comes to the front (headless Chromium does not
    hide the first then, so the page is told it is hidden, as a browser tells it)."""
    other = page.context.new_page()
    other.bring_to_front()
    if page.evaluate("() => document.hidden"):
        return
    page.evaluate(
        """() => {
          Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
          Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
          document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
