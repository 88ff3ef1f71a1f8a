"""What a person sees when the pool fails them: no worker at all, and a worker lost mid-run."""

import re

from playwright.sync_api import Browser, expect

from .conftest import log_in, start_run


def test_no_worker_running_is_said_with_what_to_do_and_the_batch_starts_when_one_does(
    browser: Browser, live_server, worker_process, make_event, make_user
):
    event = make_event(tickets=40, name="Gala")
    make_user("alice")
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/events/{event.pk}/")
    start_run(page)

    said = page.locator('[data-condition="no_worker"]')
    expect(said).to_contain_text("No worker is running")
    expect(said.locator("code")).to_have_text("python manage.py rundramatiq")

    worker_process(threads=2, DEMO_ITEM_DELAY_MS="5")
    expect(page.locator('.batch-panel[data-status="finished"]')).to_be_visible(timeout=30_000)


def test_a_lost_worker_is_shown_with_where_the_run_resumes_then_running_again(
    browser: Browser, live_server, worker_process, make_event, make_user
):
    event = make_event(tickets=3_000, name="Gala")
    make_user("alice")
    doomed = worker_process(threads=2, DEMO_ITEM_DELAY_MS="20")
    worker_process(threads=2, DEMO_ITEM_DELAY_MS="20")
    doomed.wait_ready()
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/events/{event.pk}/")
    start_run(page)
    expect(page.locator('[data-figure="done"]')).to_have_text(re.compile(r"^\d{3,}$"), timeout=30_000)  # 100+

    doomed.kill()
    lost = page.locator('[data-condition="worker_lost"]')
    # Found by the survivor's next sweep (every 2 s), shown at the next poll:
    expect(lost).to_contain_text(
        re.compile(r"A worker was lost at \d\d:\d\d:\d\d [A-Z]+; resuming from item [\d,]+\."), timeout=10_000
    )
    expect(page.locator(".batch-live .status")).to_contain_text("Running since", timeout=30_000)
