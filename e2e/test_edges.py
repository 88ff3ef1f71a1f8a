"""Issue 16 in a real browser: signed out mid-run, a stale page's start and cancel, the web server
restarting mid-run, and Retry landing on the new batch's page (with and without JavaScript)."""

import os
import re
import time

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.sessions.models import Session
from playwright.sync_api import Browser, BrowserContext, Page, expect

from batches.models import Batch
from tests.support import free_port, serving, wait_until, web_server_setup

from .conftest import confirm_in_dialog, log_in, start_run

RUNNING_TITLE = re.compile(r"^\d+% · Reissue tickets · Gala$")
RETRYING = "Can\u2019t reach the server; retrying\u2026"
# What a deploy's restart looks like from the page: the web server gone this long, then back.
OUTAGE_SECONDS = 5
AXE = Axe.from_file(os.environ["AXE_CORE_JS"]) if os.environ.get("AXE_CORE_JS") else Axe()

WATCH_ANNOUNCEMENTS = """() => {
    const region = document.getElementById('batches-announcer');
    window.announcements = [];
    new MutationObserver(() => window.announcements.push(region.textContent))
        .observe(region, {childList: true, characterData: true, subtree: true});
}"""


def done(page: Page) -> int:
    return int(re.sub(r"\D", "", page.locator('[data-figure="done"]').inner_text()) or 0)


def wait_for_more_done(page: Page, than: int, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('[data-figure=done]').textContent.replace(/\\D/g, '')) > n",
        arg=than,
        timeout=timeout,
    )


def announced(page: Page, text: str) -> int:
    return sum(text in said for said in page.evaluate("window.announcements"))


def focused_key(page: Page) -> str | None:
    return page.evaluate("() => document.activeElement.getAttribute('data-focus-key')")


def log_in_again_elsewhere(context: BrowserContext, base: str) -> None:
    """Log in again in another tab of the same browser: a new session and CSRF token, which makes
    the first tab's page out of date."""
    other = context.new_page()
    log_in(other, base, "alice")
    other.close()


@pytest.fixture
def scenario(live_server, worker_process, make_event, make_user):
    def make(tickets: int = 2000, delay_ms: str = "10"):
        worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS=delay_ms, DEMO_FAIL_EVERY="97")
        event = make_event(tickets=tickets, name="Gala")
        make_user("alice")
        worker.wait_ready()
        return {"base": live_server.url, "event": event, "event_path": f"/events/{event.pk}/"}

    return make


def test_signed_out_mid_run_the_panel_says_so_keeps_its_figures_and_links_to_log_in(browser: Browser, scenario):
    s = scenario()
    context = browser.new_context()
    page = context.new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["base"] + s["event_path"])
    page.evaluate(WATCH_ANNOUNCEMENTS)
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)
    wait_for_more_done(page, 0)
    page.wait_for_function("() => document.activeElement.getAttribute('data-focus-key') === 'cancel'")

    session_key = next(cookie["value"] for cookie in context.cookies() if cookie["name"] == "sessionid")
    Session.objects.filter(session_key=session_key).delete()  # this browser's session only

    panel = page.locator("#panel-reissue_tickets")
    problem = panel.locator('[data-problem="signed-out"]')
    expect(problem).to_have_text("You were signed out. The batch keeps running. Log in again", timeout=10_000)
    link = problem.get_by_role("link", name="Log in again")
    expect(link).to_have_attribute("href", f"/accounts/login/?next=%2Fevents%2F{s['event'].pk}%2F")
    shown = done(page)
    # Two more polls, refused the same way: nothing of the login page comes in, nothing changes.
    for _ in range(2):
        with page.expect_response(lambda r: "/progress/" in r.url and r.status == 401, timeout=15_000):
            pass
    assert page.locator("[name=username], [name=password]").count() == 0, "no login form in the page"
    assert panel.locator("h1, header, main").count() == 0
    expect(page).to_have_title(RUNNING_TITLE)
    assert done(page) == shown > 0, "the last figures stay"
    assert announced(page, "You were signed out.") == 1, page.evaluate("window.announcements")
    assert focused_key(page) == "cancel", "focus stays where it was"
    assert Batch.objects.get().is_active

    link.click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(s["base"] + s["event_path"])
    expect(page.locator(".batch-live")).to_be_visible()
    assert page.locator('[data-problem="signed-out"]').count() == 0


def test_a_stale_page_says_so_on_start_and_on_cancel_and_changes_nothing(browser: Browser, scenario):
    s = scenario(tickets=3000)
    context = browser.new_context()
    page = context.new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["base"] + s["event_path"])
    page.evaluate(WATCH_ANNOUNCEMENTS)

    log_in_again_elsewhere(context, s["base"])
    start_run(page)
    problem = page.locator('#panel-reissue_tickets [data-problem="out-of-date"]')
    expect(problem).to_have_text("This page is out of date: reload it")
    assert announced(page, "This page is out of date") == 1
    assert not Batch.objects.exists()
    expect(page.get_by_role("button", name="Reissue tickets")).to_be_focused()

    problem.get_by_role("link", name="reload it").click()
    page.wait_for_load_state()
    page.evaluate(WATCH_ANNOUNCEMENTS)
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)

    log_in_again_elsewhere(context, s["base"])
    page.get_by_role("button", name="Cancel run").click()
    confirm_in_dialog(page, "Stop the run")
    expect(problem).to_have_text("This page is out of date: reload it")
    wait_for_more_done(page, done(page))  # polls go on, and the message stays
    expect(problem).to_be_visible()
    assert announced(page, "This page is out of date") == 1
    assert Batch.objects.get().is_active
    expect(page.get_by_role("button", name="Cancel run")).to_be_focused()


def test_a_web_server_restart_mid_run_says_retrying_and_the_live_figures_come_back(
    browser: Browser, tmp_path, worker_process, make_event, make_user
):
    """A real web server process (the Dockerfile's command), stopped and started on the same port."""
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS="10", DEMO_FAIL_EVERY="97")
    event = make_event(tickets=4000, name="Gala")
    make_user("alice")
    worker.wait_ready()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command, env = web_server_setup(port, workers=1, threads=4)

    page = browser.new_context().new_page()
    with serving(command, env, port, tmp_path / "web-1.log"):
        log_in(page, base, "alice")
        page.goto(f"{base}/events/{event.pk}/")
        page.evaluate(WATCH_ANNOUNCEMENTS)
        start_run(page)
        expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)
        wait_for_more_done(page, 0)

    problem = page.locator('#panel-reissue_tickets [data-problem="unreachable"]')
    expect(problem).to_have_text(RETRYING, timeout=10_000)
    stopped_at = time.monotonic()
    shown = done(page)
    batch = Batch.objects.get()
    wait_until(lambda: Batch.objects.get().done_count > shown, what="the batch to go on without the web server")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
    assert done(page) == shown, "the last figures stay while the server is away"
    expect(page).to_have_title(RUNNING_TITLE)

    with serving(command, env, port, tmp_path / "web-2.log"):
        wait_for_more_done(page, shown)
        expect(problem).to_have_count(0)
        assert Batch.objects.get(pk=batch.pk).is_active, "the batch ran on: the figures came back live"
        expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible()
        assert announced(page, RETRYING) == 1, page.evaluate("window.announcements")


@pytest.mark.parametrize("javascript", [True, False], ids=["with-javascript", "without-javascript"])
def test_retry_goes_to_the_new_batchs_page(
    browser: Browser, live_server, worker_process, make_finished_batch, make_user, javascript
):
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS="10")
    alice = make_user("alice")
    first = make_finished_batch("Gala", tickets=5, failed=2, created_by=alice)
    worker.wait_ready()
    page = browser.new_context(java_script_enabled=javascript).new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/batches/{first.pk}/")
    if javascript:
        page.evaluate("() => { window.announcer = document.getElementById('batches-announcer'); }")
        page.evaluate(WATCH_ANNOUNCEMENTS)

    page.get_by_role("button", name="Retry 1 failed ticket").click()
    retry = wait_until(lambda: Batch.objects.filter(retry_of=first).first(), what="the retry batch")
    page.wait_for_url(re.compile(rf"/batches/{retry.pk}/(\?live=1)?$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(f"(batch #{retry.pk})")
    report = page.get_by_role("link", name=re.compile("Download the report"))
    expect(report).to_have_attribute("href", f"/api/batches/{retry.pk}/report.csv")
    expect(page.locator(".batch-meta")).to_contain_text(f"a retry of the failed tickets of #{first.pk}")
    expect(page.locator("main")).to_contain_text(f"Started a retry of the failed tickets of #{first.pk}.")
    if javascript:
        assert page.evaluate("window.announcer === document.getElementById('batches-announcer')"), "the page stayed"
        expect(page).to_have_title(re.compile(r"Reissue tickets · Gala$"))
        page.wait_for_function("() => window.announcements.some(text => text.includes('Started a retry'))")
        assert page.evaluate("() => document.activeElement.closest('main') !== null"), "focus is not dropped"
        page.go_back()
        page.wait_for_url(f"{live_server.url}/batches/{first.pk}/")
        expect(page.get_by_role("heading", level=1)).to_contain_text(f"(batch #{first.pk})")


def test_error_pages_have_no_axe_violations_and_a_way_back(browser: Browser, live_server, make_user):
    make_user("alice")
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    for url in ("/batches/999/", "/events/999/"):
        response = page.goto(live_server.url + url)
        assert response.status == 404
        found = [(v["id"], v["impact"]) for v in AXE.run(page).response["violations"]]
        assert found == [], f"axe on {url}: {found}"
        page.get_by_role("link", name="Back to the events").click()
        page.wait_for_url(f"{live_server.url}/")
