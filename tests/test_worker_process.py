"""A real `rundramatiq` process on the tests' broker (Redis, or RabbitMQ with BROKER_URL) runs a batch
to the end, each item exactly once."""

import pytest

from batches.models import Batch, BatchStatus, ItemFailure
from batches.services import start_batch
from tests.support import wait_until
from tests.testapp.models import Record


def finished(batch: Batch) -> Batch | None:
    batch.refresh_from_db()
    return batch if not batch.is_active else None


@pytest.mark.both_brokers
def test_a_worker_process_runs_a_batch_to_the_end_exactly_once(worker_process, make_ledger, make_clerk):
    ledger = make_ledger(records=600)
    worker = worker_process(threads=2, RECORDS_ITEM_DELAY_MS="0", RECORDS_FAIL_EVERY="97")
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch

    try:
        wait_until(lambda: finished(batch), timeout=120, what="the batch to finish")
    except AssertionError:
        raise AssertionError(worker.log()) from None

    records = Record.objects.filter(ledger=ledger)
    assert batch.status == BatchStatus.FINISHED
    assert (batch.total, batch.failed_count, batch.done_count) == (600, 6, 594)
    assert batch.done_count == records.filter(marks=1).count()
    assert not records.filter(marks__gt=1).exists()
    failed_numbers = set(records.filter(marks=0).values_list("number", flat=True))
    assert failed_numbers == {97, 194, 291, 388, 485, 582}
    assert ItemFailure.objects.filter(batch=batch).count() == 6
