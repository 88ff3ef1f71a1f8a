"""One structured log line per batch event, each naming the batch, operation, scope and user; JSON
with LOG_FORMAT=json, from a real worker process as from the web."""

from __future__ import annotations

import json
import logging

import pytest

from batches.engine import state
from batches.models import Batch
from batches.services import cancel_batch, start_batch
from site_config.log_format import JsonLines
from tests.support import wait_until

pytestmark = pytest.mark.django_db


def events_of(caplog) -> list[dict]:
    return [record.event_fields for record in caplog.records if record.name == "batches.events"]


@pytest.mark.both_backends
def test_created_planned_and_cancelled_each_log_one_line_with_who_and_what(
    caplog, make_ledger, make_clerk, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.INFO, logger="batches.events")
    ledger = make_ledger(records=250)
    alice = make_clerk("alice")
    with django_capture_on_commit_callbacks(execute=True):
        batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=alice).batch
    with django_capture_on_commit_callbacks(execute=True):
        state.plan(batch.pk)
    with django_capture_on_commit_callbacks(execute=True):
        cancel_batch(batch.pk, user=alice)

    logged = events_of(caplog)
    assert [line["event"] for line in logged] == ["batch.created", "batch.planned", "batch.cancelled"]
    for line in logged:
        assert (line["batch_id"], line["operation"], line["scope"], line["user"]) == (
            batch.pk,
            "mark_records",
            f"ledger:{ledger.pk}",
            "alice",
        )
    assert logged[1]["total"] == 250 and logged[1]["chunks"] >= 1
    assert logged[2]["skipped"] == 250 and "duration_seconds" in logged[2]


def test_a_rolled_back_change_logs_nothing(caplog, make_ledger, make_clerk):
    caplog.set_level(logging.INFO, logger="batches.events")
    start_batch(operation="mark_records", data={"ledger_id": make_ledger(records=3).pk}, user=make_clerk("alice"))
    assert events_of(caplog) == []  # the test's transaction never commits


def test_json_lines_put_the_events_fields_at_the_top():
    record = logging.LogRecord("batches.events", logging.INFO, __file__, 1, "batch.created batch_id=7", None, None)
    record.event_fields = {"event": "batch.created", "batch_id": 7, "operation": "mark_records"}
    line = json.loads(JsonLines().format(record))
    assert line["event"] == "batch.created" and line["batch_id"] == 7 and line["level"] == "INFO"
    plain = logging.LogRecord("django", logging.WARNING, __file__, 1, "Not Found: %s", ("/x",), None)
    assert json.loads(JsonLines().format(plain))["message"] == "Not Found: /x"


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_logs_json_lines_from_planned_through_progress_to_finished(
    worker_process, make_ledger, make_clerk
):
    ledger = make_ledger(records=600)
    worker = worker_process(LOG_FORMAT="json", RECORDS_ITEM_DELAY_MS="5", BATCHES_PROGRESS_LOG_SECONDS="0.2")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    wait_until(lambda: not Batch.objects.get(pk=batch.pk).is_active, timeout=120, what="the batch to end")

    def events() -> list[dict]:
        found = []
        for text in worker.log().splitlines():
            if text.startswith("{") and '"batch.' in text:
                found.append(json.loads(text))
        return found

    wait_until(lambda: any(line["event"] == "batch.finished" for line in events()), what="the finished line")
    kinds = [line["event"] for line in events() if line["batch_id"] == batch.pk]
    assert kinds[0] == "batch.planned" and kinds[-1] == "batch.finished"
    assert "batch.progress" in kinds
    finished = events()[-1]
    assert (finished["done"], finished["failed"], finished["user"]) == (594, 6, "alice")
