"""Issue 11 in a real browser: keyboard only, screen-reader announcements, true figures after a
cancel, the page without JavaScript paused and resumed, the page around the panel, times in the
viewer's zone, 390 px, the history page, and axe-core on every page of ours in each state."""

import os
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from batches.models import Batch, BatchStatus
from tests.support import wait_until

from .conftest import log_in, screenshot, start_run

# `make test` fetches the axe-core release the reviews use (AXE_CORE_JS); without it, the one
# axe-playwright-python ships (the e2e run's header says which).
AXE = Axe.from_file(os.environ["AXE_CORE_JS"]) if os.environ.get("AXE_CORE_JS") else Axe()


def violations(page: Page) -> list[str]:
    """What axe finds, of any impact (best practices included), one line per rule."""
    results = AXE.run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[node['target'] for node in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


def assert_accessible(page: Page, where: str) -> None:
    found = violations(page)
    assert found == [], f"axe on {where} at {page.viewport_size['width']} px: {found}"


def assert_accessible_without_javascript(page: Page, where: str) -> None:
    """axe needs scripts to run: check the page as a browser without JavaScript shows it (its
    <noscript> parts shown) in a scripting page of its own, its stylesheet loaded, its scripts not."""
    base = re.match(r"https?://[^/]+", page.url).group(0)
    markup = re.sub(r"</?noscript>", "", page.content())
    markup = re.sub(r"<script[^>]*>.*?</script>", "", markup, flags=re.S)
    markup = markup.replace("<head>", f'<head><base href="{base}/">', 1)
    checker = page.context.browser.new_page(viewport=page.viewport_size)
    try:
        checker.set_content(markup)
        assert_accessible(checker, where)
    finally:
        checker.close()


def assert_fits(page: Page, where: str, width: int = 390) -> None:
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{where} scrolls sideways: {scroll_width}px wide at {width}px"


def figure(page: Page, name: str) -> int:
    return int(page.locator(f'[data-figure="{name}"]').first.inner_text().rstrip("%").replace(",", ""))  # "1,980"


def focused(page: Page) -> dict:
    return page.evaluate(
        """() => { const e = document.activeElement; return {
            tag: e.tagName, key: e.getAttribute('data-focus-key'), text: e.textContent.trim(),
            inPanel: !!e.closest('#panel-reissue_tickets') }; }"""
    )


def tab_to(page: Page, name: str, limit: int = 30) -> int:
    """Press Tab until the focused element's text is `name`; the number of presses."""
    for presses in range(1, limit + 1):
        page.keyboard.press("Tab")
        if focused(page)["text"] == name:
            return presses
    raise AssertionError(f"{name!r} not reached in {limit} Tabs")


@pytest.fixture
def scenario(live_server, worker_process, make_event, make_user):
    def make(tickets: int = 300, delay_ms: str = "20"):
        worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS=delay_ms, DEMO_FAIL_EVERY="97")
        event = make_event(tickets=tickets, name="Gala")
        make_user("alice")
        worker.wait_ready()
        return {"base": live_server.url, "event": event, "event_url": f"{live_server.url}/events/{event.pk}/"}

    return make


COUNT_ANNOUNCEMENTS = """() => {
    window.announcer = document.getElementById('batches-announcer');
    window.announcements = [];
    new MutationObserver(() => window.announcements.push(window.announcer.textContent))
        .observe(window.announcer, {childList: true, characterData: true, subtree: true});
}"""


@pytest.mark.screenshots
def test_keyboard_only_start_and_cancel_with_dialogs_focus_announcements_and_true_figures(browser: Browser, scenario):
    s = scenario(tickets=2000, delay_ms="10")
    page = browser.new_context().new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["event_url"])
    assert_accessible(page, "the event page, idle")
    page.evaluate(COUNT_ANNOUNCEMENTS)

    tab_to(page, "Reissue tickets")
    page.keyboard.press("Enter")
    dialog = page.locator("#batches-confirm")
    expect(dialog).to_contain_text("Reissue all 2,000 tickets of Gala? Each gets a new code.")
    assert focused(page)["text"] == "Not now", "the safe answer has the focus"
    assert_accessible(page, "the start confirmation dialog")
    page.keyboard.press("Shift+Tab")
    assert focused(page)["text"] == "Reissue tickets"
    page.keyboard.press("Enter")

    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)
    page.wait_for_function("() => document.activeElement.getAttribute('data-focus-key') === 'cancel'")
    page.wait_for_function("n => Number(document.querySelector('[data-figure=done]').textContent) > n", arg=100)
    bar = page.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuetext", re.compile(r"^[\d,]+ of 2,000 tickets, \d+%$"))
    assert_accessible(page, "the event page, running")
    screenshot(page, "running-panel.png")

    page.keyboard.press("Enter")  # focus is on "Cancel run"
    expect(dialog).to_contain_text("Stop this run?")
    assert focused(page)["text"] == "Keep it running"
    page.keyboard.press("Enter")
    expect(dialog).not_to_be_visible()
    assert Batch.objects.get().is_active
    assert focused(page)["key"] == "cancel", "focus goes back to the button that opened the dialog"

    # The second question, in the same page. The browser queues a dialog's "close" event; one
    # from the first question arriving late (as under load) must not be taken for this answer.
    page.keyboard.press("Enter")
    expect(dialog).to_contain_text("Stop this run?")
    page.evaluate("document.getElementById('batches-confirm').dispatchEvent(new Event('close'))")
    page.keyboard.press("Shift+Tab")
    assert focused(page)["text"] == "Stop the run"
    page.keyboard.press("Enter")
    expect(page.locator('#panel-reissue_tickets[data-status="cancelled"]')).to_be_visible()
    page.wait_for_function(
        "() => document.activeElement.closest('#panel-reissue_tickets[data-status=cancelled]') !== null"
    )
    assert focused(page)["key"] in {"retry", None}, "on the next action, or on the notice that says what happened"

    batch = Batch.objects.get()
    assert batch.status == BatchStatus.CANCELLED and batch.skipped_count > 0
    worked = batch.done_count + batch.failed_count
    assert figure(page, "percent") == worked * 100 // 2000 < 100
    assert figure(page, "skipped") == batch.skipped_count
    widths = {
        name: float(page.locator(f'[data-segment="{name}"]').get_attribute("width"))
        for name in ("done", "failed", "skipped")
    }
    assert widths["skipped"] == pytest.approx(batch.skipped_count * 100 / 2000, abs=0.01)
    assert widths["done"] == pytest.approx(batch.done_count * 100 / 2000, abs=0.01)
    assert_accessible(page, "the event page, cancelled")

    # The tickets table refreshed itself when the batch ended: seat 1 was reissued.
    expect(page.locator("#tickets tbody tr").first.locator("[data-reissued]")).to_have_text("1\u00d7")

    said = page.evaluate("window.announcements")
    assert page.evaluate("window.announcer === document.getElementById('batches-announcer')"), "never replaced"
    assert page.locator('[role="status"], [aria-live]').count() == 1
    assert any("Started." in text for text in said) and any("cancelled" in text for text in said), said
    assert len(said) <= 8, f"announced too often: {said}"


def test_a_finished_run_refreshes_the_tickets_table_and_marks_the_title(browser: Browser, scenario):
    s = scenario()
    page = browser.new_context().new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["event_url"])
    expect(page.locator("#tickets code").first).to_have_text("orig")
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=60_000)
    expect(page.locator("#tickets [data-reissued]").first).to_have_text("1\u00d7")
    expect(page.locator("#tickets code").first).not_to_have_text("orig")
    expect(page).to_have_title("Finished · Reissue tickets · Gala")
    assert_accessible(page, "the event page, finished")
    expect(page.locator(".failures")).to_contain_text("Seat 97 (Guest 97)")
    expect(page.locator(".failures")).to_contain_text("Seat 97 is blocked by the venue.")
    assert "SeatCannotBeReissued" not in page.locator(".failures").inner_text()

    batch = Batch.objects.get()
    page.goto(f"{s['base']}/batches/{batch.pk}/")
    expect(page).to_have_title("Finished · Reissue tickets · Gala")
    page.get_by_role("link", name="← Gala").click()
    page.wait_for_url(s["event_url"])
    favicon = page.request.get(f"{s['base']}/favicon.ico")
    assert favicon.status == 200


def test_without_javascript_the_page_refreshes_only_while_live_and_can_be_paused_and_resumed(
    browser: Browser, scenario
):
    s = scenario(tickets=1000, delay_ms="10")
    page = browser.new_context(java_script_enabled=False).new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["event_url"])
    assert_accessible_without_javascript(page, "the event page without JavaScript")
    page.get_by_role("button", name="Reissue tickets").click()
    assert_accessible_without_javascript(page, "the start confirmation page")
    page.get_by_role("button", name="Reissue tickets").click()
    batch = Batch.objects.get()
    page.wait_for_url(f"{s['base']}/batches/{batch.pk}/?live=1")
    assert page.locator('meta[http-equiv="refresh"]').count() == 0
    assert_accessible_without_javascript(page, "the batch page without JavaScript, live")

    # The pause comes first in the content: the first Tab after the skip link past the header.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Stop reloading")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"{s['base']}/batches/{batch.pk}/")
    shown = figure(page, "done")
    assert_accessible_without_javascript(page, "the batch page without JavaScript, paused")

    def moved_on() -> bool:
        batch.refresh_from_db()
        return batch.done_count > shown + 50 or not batch.is_active

    wait_until(moved_on, timeout=30, what="the batch to move on")
    assert figure(page, "done") == shown, "a paused page does not reload"
    expect(page.get_by_role("button", name="Cancel run")).to_be_enabled()

    page.get_by_role("link", name="Reload every 5 seconds").click()
    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=60_000)
    assert page.url.endswith("?live=1")
    assert_accessible_without_javascript(page, "the batch page without JavaScript, finished")


def test_a_live_address_opened_with_javascript_polls_instead_of_reloading(browser: Browser, scenario):
    s = scenario(tickets=1000, delay_ms="10")
    page = browser.new_context().new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["event_url"])
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)
    batch_page = f"{s['base']}/batches/{Batch.objects.get().pk}/"

    with page.expect_response(batch_page) as loaded:
        page.goto(f"{batch_page}?live=1")
    assert "refresh" not in loaded.value.headers, "the page it settles on does not reload itself"
    assert page.url == batch_page
    shown = figure(page, "done")
    page.wait_for_function("n => Number(document.querySelector('[data-figure=done]').textContent) > n", arg=shown)


def test_cancel_without_javascript_asks_with_clear_verbs(browser: Browser, scenario):
    s = scenario(tickets=3000, delay_ms="10")
    page = browser.new_context(java_script_enabled=False).new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["event_url"])
    page.get_by_role("button", name="Reissue tickets").click()
    page.get_by_role("button", name="Reissue tickets").click()
    page.get_by_role("link", name="Stop reloading").click()
    page.get_by_role("button", name="Cancel run").click()
    assert_accessible_without_javascript(page, "the cancel confirmation page")
    page.get_by_role("link", name="Keep it running").click()
    assert Batch.objects.get().is_active
    page.get_by_role("button", name="Cancel run").click()
    page.get_by_role("button", name="Stop the run").click()
    expect(page.locator('#panel-reissue_tickets[data-status="cancelled"]')).to_be_visible()
    assert_accessible_without_javascript(page, "the batch page without JavaScript, cancelled")


def test_times_are_in_the_viewers_zone_and_read_the_same_after_a_swap(browser: Browser, scenario):
    s = scenario(tickets=2000, delay_ms="10")
    page = browser.new_context(timezone_id="Europe/Berlin").new_page()
    log_in(page, s["base"], "alice")
    berlin = ZoneInfo("Europe/Berlin")
    expect(page.locator("main table time").first).to_have_text("1 Jan 2030, 11:00 CET")  # 10:00 UTC
    page.goto(s["event_url"])
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)
    batch = Batch.objects.get()
    started = batch.started_at.astimezone(berlin).strftime("%H:%M %Z")
    created = batch.created_at.astimezone(berlin).strftime("%H:%M %Z")
    expect(page.locator(".batch-live .status")).to_have_text(f"Running since {started}.")  # swapped in
    page.reload()  # a first render of the running batch
    expect(page.locator(".batch-live .status")).to_have_text(f"Running since {started}.")
    page.context.clear_cookies(name="tz")  # a session older than the zone cookie: written in UTC, then
    page.reload()  # the page loads itself once more, in the browser's zone
    expect(page.locator(".batch-meta time")).to_have_text(created)
    expect(page.locator(".batch-live .status")).to_have_text(f"Running since {started}.")
    done = page.locator('[data-figure="done"]')
    before = done.text_content()
    expect(done).not_to_have_text(before or "", timeout=10_000)  # a poll has swapped the live figures
    expect(page.locator(".batch-live .status")).to_have_text(f"Running since {started}.")
    assert datetime.now(berlin).utcoffset().total_seconds() > 0  # Berlin is ahead of UTC: the check means something


def test_at_390_px_no_page_scrolls_sideways(browser: Browser, scenario):
    s = scenario(tickets=300)
    page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.goto(f"{s['base']}/accounts/login/")
    assert_fits(page, "the login page")
    assert_accessible(page, "the login page")
    log_in(page, s["base"], "alice")
    assert_fits(page, "the event list")
    assert_accessible(page, "the event list")
    page.goto(s["event_url"])
    assert_fits(page, "the event page")
    start_run(page)
    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=60_000)
    assert_fits(page, "the finished event page")
    batch = Batch.objects.get()
    for url in (f"/batches/{batch.pk}/", "/batches/", f"/batches/start/reissue_tickets/?event_id={s['event'].pk}"):
        page.goto(s["base"] + url)
        assert_fits(page, url)


@pytest.mark.screenshots
def test_the_history_page_filters_and_pages(browser: Browser, live_server, make_finished_batch, make_user):
    alice = make_user("alice")
    for n in range(27):
        batch = make_finished_batch(f"Concert {n}", tickets=3, failed=2, created_by=alice)
        if n % 4 == 0:
            Batch.objects.filter(pk=batch.pk).update(status=BatchStatus.CANCELLED, skipped_count=1, done_count=1)
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    log_in(page, live_server.url, "alice")
    page.get_by_role("link", name="Batches", exact=True).click()
    page.wait_for_url(f"{live_server.url}/batches/")
    expect(page.locator("tbody tr")).to_have_count(25)
    expect(page.locator("tbody tr").first).to_contain_text("Concert 26")
    assert_accessible(page, "the history page")
    screenshot(page, "history.png", full_page=True)

    page.get_by_role("link", name="Older").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("main")).to_contain_text("Page 2 of 2")

    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tbody tr")).to_have_count(7)
    expect(page.locator("tbody tr").first.locator('[data-figure="skipped"]')).to_have_text("1")
    assert_accessible(page, "the history page, filtered")
    page.locator("tbody tr").first.get_by_role("link").click()
    expect(page.locator('#panel-reissue_tickets[data-status="cancelled"]')).to_be_visible()
    assert_accessible(page, "the batch page with JavaScript")
