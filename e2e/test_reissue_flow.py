"""The whole flow in a real browser: start, live progress, the guard across tabs, reload, no-JS, the CSP."""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from batches.models import Batch
from tests.support import wait_until

from .conftest import confirm_in_dialog, log_in, start_run, watch_csp

TICKETS = 300
ITEM_DELAY_MS = "20"  # 300 items at 20 ms: a run of several seconds, several polls


@pytest.fixture
def scenario(live_server, worker_process, make_event, make_user):
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS=ITEM_DELAY_MS, DEMO_FAIL_EVERY="97")
    event = make_event(tickets=TICKETS, name="Gala")
    make_user("alice")
    worker.wait_ready()
    return {"base": live_server.url, "event_url": f"{live_server.url}/events/{event.pk}/"}


def figure(page: Page, name: str) -> int:
    return int(page.locator(f'[data-figure="{name}"]').inner_text().replace(",", ""))  # "1,980"


def wait_for_more_done(page: Page) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('[data-figure=done]').textContent) > n",
        arg=figure(page, "done"),
        timeout=5000,
    )


def test_start_shows_live_progress_until_the_summary(browser: Browser, scenario):
    page = browser.new_context().new_page()
    log_in(page, scenario["base"], "alice")
    page.goto(scenario["event_url"])
    button = page.get_by_role("button", name="Reissue tickets")

    start_run(page)
    expect(button).to_be_disabled()
    expect(page.locator('[data-figure="done"]')).to_be_visible(timeout=1000)
    expect(page.locator("#panel-reissue_tickets")).to_contain_text("Started.")

    wait_for_more_done(page)
    expect(page).to_have_title(re.compile(r"^\d+% · Reissue tickets · Gala$"))

    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=60_000)
    panel = page.locator("#panel-reissue_tickets")
    expect(panel).to_contain_text(re.compile(r"Finished in \d+s with 3 failed tickets\."))
    assert (figure(page, "done"), figure(page, "failed"), figure(page, "total")) == (297, 3, TICKETS)
    expect(page.locator(".failures")).to_contain_text("Seat 97 is blocked by the venue.")
    expect(button).to_be_enabled()
    assert panel.get_attribute("hx-trigger") is None, "polling stops once the batch is finished"


def test_a_second_tab_and_a_reload_show_the_running_batch(browser: Browser, scenario):
    context = browser.new_context()
    first_tab = context.new_page()
    log_in(first_tab, scenario["base"], "alice")
    first_tab.goto(scenario["event_url"])
    second_tab = context.new_page()
    second_tab.goto(scenario["event_url"])  # opened before the first click: its button is enabled

    start_run(first_tab)
    expect(first_tab.locator("#panel-reissue_tickets")).to_contain_text("Started.")
    start_run(second_tab)

    expect(second_tab.locator("#panel-reissue_tickets")).to_contain_text(
        re.compile(r"Already running since \d\d:\d\d [A-Z]+, started by alice")
    )
    batch = Batch.objects.get()
    expect(second_tab.locator(f'a[href="/batches/{batch.pk}/"]')).to_be_visible()

    first_tab.reload()
    expect(first_tab.locator(f'#panel-reissue_tickets[hx-get^="/batches/{batch.pk}/progress/"]')).to_be_visible()
    expect(first_tab.get_by_role("button", name="Reissue tickets")).to_be_disabled()
    assert Batch.objects.count() == 1


def test_without_javascript_the_form_asks_then_redirects_to_a_page_that_refreshes_until_done(
    browser: Browser, scenario
):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, scenario["base"], "alice")
    page.goto(scenario["event_url"])

    page.get_by_role("button", name="Reissue tickets").click()
    expect(page.locator("main")).to_contain_text(f"Reissue all {TICKETS} tickets of Gala? Each gets a new code.")
    assert not Batch.objects.exists()
    page.get_by_role("button", name="Reissue tickets").click()

    batch = Batch.objects.get()
    page.wait_for_url(f"{scenario['base']}/batches/{batch.pk}/?live=1")
    expect(page.locator(".notice").first).to_contain_text("Started.")
    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=60_000)
    expect(page.locator(".failures")).to_contain_text("Seat 194 is blocked by the venue.")
    assert (figure(page, "done"), figure(page, "failed")) == (297, 3)


def test_cancel_asks_for_confirmation_and_ends_the_run(browser: Browser, scenario):
    page = browser.new_context().new_page()
    log_in(page, scenario["base"], "alice")
    page.goto(scenario["event_url"])
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)

    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#batches-confirm")).to_contain_text("Stop this run?")
    confirm_in_dialog(page, "Keep it running")
    wait_for_more_done(page)  # polls went on after keeping it
    assert Batch.objects.get().is_active, "keeping it running cancels nothing"

    page.get_by_role("button", name="Cancel run").click()
    confirm_in_dialog(page, "Stop the run")
    expect(page.locator('#panel-reissue_tickets[data-status="cancelled"]')).to_be_visible()
    expect(page.locator("#panel-reissue_tickets")).to_contain_text(
        "Cancelled. Tickets not done yet are counted as skipped."
    )
    expect(page.get_by_role("button", name="Reissue tickets")).to_be_enabled()
    batch = Batch.objects.get()
    assert batch.status == "cancelled" and batch.skipped_count > 0


HIDE_TAB_AND_COUNT_REQUESTS = """() => {
    window.requestsWhileHidden = 0;
    document.addEventListener("htmx:beforeRequest", () => { window.requestsWhileHidden += 1; });
    Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
    document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW_TAB = """() => {
    Object.defineProperty(document, "hidden", {configurable: true, get: () => false});
    Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "visible"});
    document.dispatchEvent(new Event("visibilitychange"));
}"""


def test_under_a_strict_csp_progress_polls_and_pauses_while_the_tab_is_hidden(browser: Browser, scenario):
    page = browser.new_context().new_page()
    violations = watch_csp(page)
    log_in(page, scenario["base"], "alice")
    response = page.goto(scenario["event_url"])
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy

    start_run(page)
    wait_for_more_done(page)  # polls run under the policy
    page.evaluate(HIDE_TAB_AND_COUNT_REQUESTS)
    batch = Batch.objects.get()

    def ended() -> bool:
        batch.refresh_from_db()
        return not batch.is_active

    wait_until(ended, timeout=60, what="the batch to end")
    assert page.evaluate("window.requestsWhileHidden") == 0, "a hidden tab does not poll"
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible()

    page.evaluate(SHOW_TAB)
    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=5000)
    assert violations == []


def test_the_admin_and_the_api_docs_work_under_the_csp(browser: Browser, live_server, make_user):
    make_user("root", may_reissue=False, is_staff=True, is_superuser=True)
    page = browser.new_context().new_page()
    violations = watch_csp(page)
    log_in(page, live_server.url, "root")

    page.goto(f"{live_server.url}/admin/batches/batch/")
    before = page.locator("#main").get_attribute("class") or ""
    page.get_by_role("button", name="Toggle navigation").click()  # runs the admin's own script
    page.wait_for_function("before => document.querySelector('#main').className !== before", arg=before)

    page.goto(f"{live_server.url}/api/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Bulk operations API")
    expect(page.locator(".opblock").first).to_be_visible()
    assert violations == []
