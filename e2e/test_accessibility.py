"""Issue 16, the small things: axe-core finds nothing of any impact on our pages in every state at
1280 px and 390 px; a skip link is the first stop for the keyboard; tap targets of at least 44 px
on a phone; the admin and the API docs checked with only their own markup excepted."""

from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect

from batches.models import Batch, BatchStatus

from .conftest import confirm_in_dialog, log_in
from .test_web_ui import assert_accessible, assert_accessible_without_javascript, figure, scenario, violations

__all__ = ["scenario"]  # the fixture, shared with test_web_ui

WIDTHS = pytest.mark.parametrize("width", [1280, 390], ids=["1280px", "390px"])
TAP_TARGET_PX = 44


def viewport(width: int) -> dict[str, int]:
    return {"width": width, "height": 900}


@WIDTHS
def test_axe_finds_no_violation_on_our_pages_in_any_state(browser: Browser, scenario, make_finished_batch, width):
    s = scenario(tickets=2000, delay_ms="20")
    base = s["base"]
    ended = make_finished_batch("Spring Fair", tickets=3, failed=2, created_by=get_user_model().objects.get())
    ended_event_url = f"{base}/events/{ended.params['event_id']}/"
    page = browser.new_context(viewport=viewport(width)).new_page()

    page.goto(f"{base}/accounts/login/")
    assert_accessible(page, "the login page")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not her password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")
    assert_accessible(page, "the login page after a failed login")
    log_in(page, base, "alice")
    assert_accessible(page, "the event list")

    page.goto(s["event_url"])
    assert_accessible(page, "the event page, idle")
    page.get_by_role("button", name="Reissue tickets").click()
    expect(page.locator("#batches-confirm")).to_be_visible()
    assert_accessible(page, "the event page, the start dialog open")
    confirm_in_dialog(page, "Reissue tickets")
    expect(page.locator('#panel-reissue_tickets[data-status="running"]')).to_be_visible(timeout=10_000)
    page.wait_for_function("() => Number(document.querySelector('[data-figure=done]').textContent) > 0")
    assert_accessible(page, "the event page, running")
    running = Batch.objects.get(scope_key=f"event:{s['event'].pk}")
    page.goto(f"{base}/batches/{running.pk}/")
    assert_accessible(page, "the batch page, running")

    page.goto(f"{base}/batches/")
    expect(page.locator("tbody tr")).to_have_count(2)
    assert_accessible(page, "the history page")
    page.get_by_label("Status").select_option("running")
    page.get_by_label("Started by me").check()
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    assert_accessible(page, "the history page, filtered")
    page.goto(f"{base}/batches/?status=cancelled")
    expect(page.locator("tbody")).to_contain_text("No batches match these filters.")
    assert_accessible(page, "the history page, nothing matching")

    page.goto(ended_event_url)
    expect(page.locator(".failures")).to_contain_text("Seat 2 is blocked by the venue.")
    assert_accessible(page, "the event page, finished with failures")
    page.goto(f"{base}/batches/{ended.pk}/")
    expect(page.locator(".failures")).to_be_visible()
    assert_accessible(page, "the batch page, finished with failures")

    plain = browser.new_context(viewport=viewport(width), java_script_enabled=False).new_page()
    log_in(plain, base, "alice")
    plain.goto(ended_event_url)
    assert_accessible_without_javascript(plain, "the event page without JavaScript, finished with failures")
    plain.get_by_role("button", name="Reissue tickets").click()
    expect(plain.get_by_role("heading", level=1)).to_have_text("Reissue tickets?")
    assert_accessible_without_javascript(plain, "the start confirmation page")
    plain.goto(f"{base}/batches/{running.pk}/?live=1")
    assert_accessible_without_javascript(plain, "the batch page without JavaScript, live")
    plain.get_by_role("link", name="Stop reloading").click()
    assert_accessible_without_javascript(plain, "the batch page without JavaScript, paused")
    plain.get_by_role("button", name="Cancel run").click()
    expect(plain.get_by_role("button", name="Stop the run")).to_be_visible()
    assert_accessible_without_javascript(plain, "the cancel confirmation page")

    page.goto(s["event_url"])
    page.get_by_role("button", name="Cancel run").click()
    confirm_in_dialog(page, "Stop the run")
    expect(page.locator('#panel-reissue_tickets[data-status="cancelled"]')).to_be_visible()
    assert figure(page, "skipped") > 0
    assert_accessible(page, "the event page, cancelled")


@WIDTHS
def test_axe_finds_no_violation_while_a_batch_waits_for_a_worker_or_a_start_is_refused(
    browser: Browser, live_server, make_event, make_user, settings, width
):
    """No worker at all: the panel's notice on the event page and the batch page; then a start
    refused by the per-user limit of active batches: the panel with its error."""
    settings.BATCHES_MAX_ACTIVE_PER_USER = 1
    alice = make_user("alice")
    event, other = make_event(tickets=30, name="Gala"), make_event(tickets=30, name="Spring Fair")
    waiting = Batch.objects.create(
        operation="reissue_tickets",
        scope_key=f"event:{event.pk}",
        scope_label="Gala",
        params={"event_id": event.pk},
        status=BatchStatus.QUEUED,
        created_by=alice,
    )
    page = browser.new_context(viewport=viewport(width)).new_page()
    log_in(page, live_server.url, "alice")
    for url in (f"/events/{event.pk}/", f"/batches/{waiting.pk}/"):
        page.goto(live_server.url + url)
        expect(page.locator('.batch-live[data-state="no_worker"]')).to_be_visible()
        assert_accessible(page, f"{url}, waiting for a worker")

    page.goto(f"{live_server.url}/events/{other.pk}/")
    page.get_by_role("button", name="Reissue tickets").click()
    confirm_in_dialog(page, "Reissue tickets")
    expect(page.locator("#panel-reissue_tickets .error")).to_be_visible()
    assert Batch.objects.count() == 1
    assert_accessible(page, "the event page, a start refused")


@WIDTHS
def test_axe_finds_no_violation_on_the_locked_out_page(browser: Browser, live_server, make_user, settings, width):
    make_user("mallory")
    page = browser.new_context(viewport=viewport(width)).new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        page.get_by_label("Username").fill("mallory")
        page.get_by_label("Password").fill("a guess")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
    expect(page.get_by_role("heading", level=1)).to_have_text("Too many failed logins")
    assert_accessible(page, "the locked-out page")


def tap_targets_below(page: Page, least: int) -> list[str]:
    """Visible fields, menus and buttons (a checkbox: its label, what a finger taps) under `least` px tall."""
    return page.evaluate(
        """least => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
            .map(e => (e.type === 'checkbox' || e.type === 'radio') ? e.closest('label') || e : e)
            .filter(e => e.getClientRects().length > 0)
            .map(e => [e, e.getBoundingClientRect().height])
            .filter(([e, height]) => height < least)
            .map(([e, height]) => `${e.tagName.toLowerCase()} "${(e.textContent || e.name).trim()}": ${height}px`)""",
        least,
    )


def test_on_a_phone_every_field_menu_and_button_is_a_44_px_tap_target(browser: Browser, scenario):
    s = scenario(tickets=300)
    base = s["base"]
    page = browser.new_context(viewport=viewport(390)).new_page()
    page.goto(f"{base}/accounts/login/")
    assert page.locator("input:visible, button:visible").count() == 3
    assert tap_targets_below(page, TAP_TARGET_PX) == [], "the login page"
    log_in(page, base, "alice")
    page.goto(s["event_url"])
    assert tap_targets_below(page, TAP_TARGET_PX) == [], "the event page"
    page.get_by_role("button", name="Reissue tickets").click()
    expect(page.locator("#batches-confirm")).to_be_visible()
    assert tap_targets_below(page, TAP_TARGET_PX) == [], "the start dialog"
    page.goto(f"{base}/batches/")
    assert page.locator("select:visible").count() == 2
    assert tap_targets_below(page, TAP_TARGET_PX) == [], "the history page's filters"

    # On a wide screen the same controls keep their ordinary size: the rule is for phones.
    page.set_viewport_size(viewport(1280))
    assert tap_targets_below(page, TAP_TARGET_PX), "the wide history page has controls under 44 px"


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_the_skip_link_is_the_first_stop_and_leads_past_the_header(browser: Browser, scenario, javascript):
    s = scenario(tickets=300)
    page = browser.new_context(java_script_enabled=javascript).new_page()
    log_in(page, s["base"], "alice")
    page.goto(s["event_url"])
    skip = page.get_by_role("link", name="Skip to the content")
    expect(skip).not_to_be_in_viewport()
    page.keyboard.press("Tab")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="← Events")).to_be_focused()


# Markup that is not ours, and why it stays, by the start of the pages' paths: what axe finds on
# them is checked against this list, so a violation in our templates (the cancel confirmation), or in
# what we put into theirs (labels, the failed items), fails the test.
NOT_OURS = {
    "/admin/": {
        "link-in-text-block": "Django admin's breadcrumbs tell their links apart by colour only (on a change page, "
        "where the batch's name makes the text around them long enough for axe to judge)",
    },
    "/api/docs": {
        "color-contrast": "Swagger UI's grey version badges and server URL",
        "heading-order": "Swagger UI's operation groups are <h3> under its <h2> title",
        "nested-interactive": "Swagger UI's operation summaries are buttons holding buttons",
    },
}


def unexcepted(page: Page) -> list[str]:
    path = urlsplit(page.url).path
    excepted = next((rules for start, rules in NOT_OURS.items() if path.startswith(start)), {})
    return [line for line in violations(page) if line.split(" ", 1)[0] not in excepted]


def test_axe_on_the_admin_and_the_api_docs_finds_nothing_but_their_listed_markup(
    browser: Browser, live_server, make_user, make_finished_batch
):
    """The API docs' own description of tokens is ours: it reads as code, not eaten as HTML."""
    root = make_user("root", may_reissue=False, is_staff=True, is_superuser=True)
    ended = make_finished_batch("Spring Fair", tickets=3, failed=2, created_by=root)
    running = Batch.objects.create(
        operation="reissue_tickets", scope_key="event:0", scope_label="Summer Gig", status=BatchStatus.RUNNING
    )
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "root")
    found = {}
    for path in (
        "/admin/",
        "/admin/batches/batch/",
        f"/admin/batches/batch/{ended.pk}/change/",
        "/admin/batches/worker/",
        "/api/docs",
    ):
        page.goto(live_server.url + path)
        if path == "/api/docs":
            expect(page.locator(".swagger-ui .info")).to_contain_text("Authorization: Bearer <token>")
        found[path] = unexcepted(page)

    page.goto(f"{live_server.url}/admin/batches/batch/")
    page.locator(f'input[name="_selected_action"][value="{running.pk}"]').check()
    page.locator('select[name="action"]').select_option("cancel")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_role("button", name="Yes, stop it")).to_be_visible()
    found["the admin's cancel confirmation"] = unexcepted(page)
    assert {where: lines for where, lines in found.items() if lines} == {}
