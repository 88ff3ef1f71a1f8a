"""The zero-setup default of `make run`: SQLite + the StubBroker drained by an in-process worker."""

import os
import re
import subprocess
import sys

import dramatiq
import pytest

from batches.models import BatchStatus
from batches.services import start_batch
from tests.support import BASE_DIR, Browserless, free_port, wait_until

pytestmark = pytest.mark.zero_setup


@pytest.fixture
def in_process_worker():
    broker = dramatiq.get_broker()
    assert type(broker).__name__ == "StubBroker", "the zero-setup default uses the StubBroker"
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    yield worker
    worker.stop()


@pytest.mark.django_db(transaction=True)
def test_the_stub_broker_and_an_in_process_worker_finish_a_batch(settings, in_process_worker, make_event, make_user):
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    settings.DEMO_ITEM_DELAY_MS = 1
    event = make_event(tickets=250)
    batch = start_batch(operation="reissue_tickets", data={"event_id": event.pk}, user=make_user("alice")).batch

    def finished():
        batch.refresh_from_db()
        return not batch.is_active

    wait_until(finished, timeout=60, what="the batch to finish")
    assert (batch.status, batch.total, batch.failed_count, batch.done_count) == (BatchStatus.FINISHED, 250, 2, 248)


def test_make_run_serves_the_app_and_a_demo_batch_completes(tmp_path):
    """What `make run` runs, on a fresh SQLite file with no broker configured."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        "REDIS_URL": "",
        "DEMO_TICKETS_PER_EVENT": "30",
        "DEMO_ITEM_DELAY_MS": "5",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "rundev.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "rundev", f"127.0.0.1:{port}"],
        cwd=BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    browser = Browserless(f"http://127.0.0.1:{port}")
    try:

        def answers():
            try:
                return browser.request("/accounts/login/")[0] == 200
            except OSError:
                return server.poll() is not None and pytest.fail((tmp_path / "rundev.log").read_text())

        wait_until(answers, timeout=90, what="make run to serve the login page")
        status, headers, _ = browser.request("/accounts/login/", {"username": "demo", "password": "demo"})
        assert (status, headers["Location"]) == (302, "/")
        events = re.findall(r'href="/events/(\d+)/">([^<]+)<', browser.request("/")[2])
        event_id = next(pk for pk, name in events if name == "Team Offsite")

        status, headers, _ = browser.request("/batches/start/reissue_tickets/", {"event_id": event_id})
        assert status == 303
        batch_page = headers["Location"]

        def finished_page():
            page = browser.request(batch_page)[2]
            return page if 'data-status="finished"' in page else None

        page = wait_until(finished_page, timeout=60, what="the demo batch to finish")
        assert 'data-figure="done">40<' in page and 'data-figure="total">40<' in page
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "log in as demo / demo" in (tmp_path / "rundev.log").read_text()
