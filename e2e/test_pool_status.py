"""What a person sees when the pool fails them: no worker at all, and a worker lost mid-run."""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import log_in, start_run

# A killed worker's silence is told after 3 s rather than the default 10 s (as in tests/test_pool.py), by
# the workers' registry and the live server's pages alike; their heartbeat is quicker to match.
QUICKER_SILENCE = {"BATCHES_WORKER_HEARTBEAT_SECONDS": "0.5", "BATCHES_WORKER_SILENCE_SECONDS": "3"}


@pytest.fixture
def quicker_silence(settings) -> dict[str, str]:
    """The environment for the workers; the live server (this process) gets the same settings."""
    for name, value in QUICKER_SILENCE.items():
        setattr(settings, name, float(value))
    return QUICKER_SILENCE


def polled_twice_more(page: Page) -> None:
    """Wait for the page's next two polls: the first is swapped in by the time the second answers."""
    for _ in range(2):
        with page.expect_response(lambda response: "/progress/" in response.url, timeout=10_000):
            pass


def test_no_worker_running_is_said_with_what_to_do_and_the_batch_starts_when_one_does(
    browser: Browser, live_server, worker_process, make_event, make_user
):
    event = make_event(tickets=40, name="Gala")
    make_user("alice", is_staff=True)  # staff are told how to start one
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/events/{event.pk}/")
    start_run(page)

    said = page.locator('[data-condition="no_worker"]')
    expect(said).to_contain_text("No worker is running")
    expect(page.locator(".batch-live .status code")).to_have_text("python manage.py rundramatiq")

    worker_process(threads=2, DEMO_ITEM_DELAY_MS="5")
    expect(page.locator('#panel-reissue_tickets[data-status="finished"]')).to_be_visible(timeout=30_000)


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


def test_the_only_worker_killed_pauses_the_run_truthfully_and_one_time_tells_the_loss(
    browser: Browser, live_server, worker_process, make_event, make_user, quicker_silence
):
    event = make_event(tickets=3_000, name="Gala")
    make_user("alice")  # not staff: no command line for her
    only = worker_process(threads=2, DEMO_ITEM_DELAY_MS="20", **quicker_silence)
    only.wait_ready()
    page = browser.new_context().new_page()
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/events/{event.pk}/")
    start_run(page)
    done = page.locator('[data-figure="done"]')
    expect(done).to_have_text(re.compile(r"^[\d,]{3,}$"), timeout=30_000)  # 100+

    only.kill()
    paused = page.locator('[data-condition="paused"]')
    told = re.compile(
        r"Paused: no worker is running since (\d\d:\d\d:\d\d [A-Z]+)\. It resumes from item ([\d,]+) when one starts\."
    )
    expect(paused).to_contain_text(told, timeout=15_000)
    since, resumes_from = told.search(paused.inner_text()).groups()
    worked = sum(
        int(page.locator(f'[data-figure="{name}"]').inner_text().replace(",", "")) for name in ("done", "failed")
    )
    assert int(resumes_from.replace(",", "")) == worked + 1
    expect(page.locator("#batches-announcer")).to_contain_text(f"Paused: no worker is running since {since}.")
    assert "rundramatiq" not in page.locator("#panel-reissue_tickets").inner_text()

    # Nothing moves, and nothing pretends to: no countdown, no rate sinking over the pause.
    figures = {name: page.locator(f'[data-figure="{name}"]').inner_text() for name in ("done", "rate", "eta")}
    assert figures["eta"] == "—"
    polled_twice_more(page)
    assert {name: page.locator(f'[data-figure="{name}"]').inner_text() for name in figures} == figures

    worker_process(threads=2, DEMO_ITEM_DELAY_MS="20", **quicker_silence)
    lost = page.locator('[data-condition="worker_lost"]')
    expect(lost).to_have_text(f"A worker was lost at {since}; resuming from item {resumes_from}.", timeout=30_000)
    expect(page.locator(".batch-live .status")).to_contain_text("Running since", timeout=30_000)
    expect(page.locator('[data-figure="eta"]')).not_to_have_text("—")
