"""In the admin, in a real browser: filter the tickets to one event, select all across pages, run
"Reissue selected tickets": one batch over exactly those tickets, followed live in the admin to its
end; a double submit and a second admin's same selection join it."""

import re

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import Browser, Page, expect

from batches.models import Batch
from site_config.demo.models import Ticket

from .conftest import screenshot

TICKETS = 2000


@pytest.fixture
def scenario(live_server, worker_process, make_event, make_user):
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS="2", DEMO_FAIL_EVERY="97")
    gala, other = make_event(tickets=TICKETS, name="Gala"), make_event(tickets=150, name="Other")
    for name in ("clerk", "second"):
        user = make_user(name, is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_ticket"))
    worker.wait_ready()
    return {"base": live_server.url, "gala": gala, "other": other}


def admin_log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(f"pw-{username}")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/admin/")


def select_all_of_event(page: Page, base: str, event) -> None:
    page.goto(f"{base}/admin/demo/ticket/")
    page.locator("#changelist-filter").get_by_role("link", name=event.name, exact=True).click()
    expect(page.locator(".paginator")).to_contain_text(f"{TICKETS} tickets")  # 20 pages of 100
    page.locator("#action-toggle").check()  # this page's 100
    page.locator(".actions .question a").click()  # "Select all 2000 tickets", across the pages
    expect(page.locator(".actions .all")).to_contain_text(f"All {TICKETS} selected")
    page.locator("select[name=action]").select_option("reissue_selected")


@pytest.mark.screenshots
def test_select_all_across_pages_runs_one_batch_followed_live_in_the_admin(browser: Browser, scenario):
    base, gala = scenario["base"], scenario["gala"]
    page = browser.new_context().new_page()
    admin_log_in(page, base, "clerk")
    select_all_of_event(page, base, gala)
    go = page.locator("#changelist-form button[name=index]")
    go.dblclick()  # a double submit

    page.wait_for_url(re.compile(r"/admin/batches/batch/\d+/progress/$"))
    expect(page.locator("#site-name")).to_be_visible()  # the admin's own look
    live = page.locator("#batch-progress")
    expect(live).to_have_attribute("hx-trigger", "every 1s")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-figure=done]').textContent.replace(/,/g, '')) > 0"
    )
    screenshot(page, "admin-action-progress.png", full_page=True)

    second = browser.new_context().new_page()  # a second admin, the same selection
    admin_log_in(second, base, "second")
    select_all_of_event(second, base, gala)
    second.locator("#changelist-form button[name=index]").click()
    second.wait_for_url(page.url)
    expect(second.locator(".messagelist")).to_contain_text("Already running since")
    assert Batch.objects.count() == 1

    expect(page.locator('#batch-progress[data-status="finished"]')).to_be_visible(timeout=90_000)
    expect(page.locator('[data-figure="total"]')).to_have_text("2,000")
    expect(page.locator('[data-figure="done"]')).to_have_text("1,980")
    expect(page.locator('[data-figure="failed"]')).to_have_text("20")
    expect(page.locator(".batch-progress-failures")).to_contain_text("Seat 97 (Guest 97)")
    expect(page.get_by_role("button", name="Retry 20 failed tickets")).to_be_visible()
    assert page.locator("#batch-progress").get_attribute("hx-trigger") is None, "polling stops at the end"

    batch = Batch.objects.get()
    assert (batch.total, batch.operation) == (TICKETS, "reissue_selected_tickets")
    assert Ticket.objects.filter(event=gala, reissue_count=1).count() == 1980
    assert not Ticket.objects.filter(event=scenario["other"], reissue_count__gt=0).exists()
