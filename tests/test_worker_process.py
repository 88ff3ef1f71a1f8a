"""A real `rundramatiq` process on the tests' broker (Redis, or RabbitMQ with BROKER_URL) runs a batch
to the end, each item exactly once."""

import pytest

from batches.models import Batch, BatchStatus, ItemFailure
from batches.services import start_batch
from site_config.demo.models import Ticket
from tests.support import wait_until


def finished(batch: Batch) -> Batch | None:
    batch.refresh_from_db()
    return batch if not batch.is_active else None


@pytest.mark.both_brokers
def test_a_worker_process_runs_a_batch_to_the_end_exactly_once(worker_process, make_event, make_user):
    event = make_event(tickets=600)
    worker = worker_process(threads=2, DEMO_ITEM_DELAY_MS="0", DEMO_FAIL_EVERY="97")
    batch = start_batch(operation="reissue_tickets", data={"event_id": event.pk}, user=make_user("alice")).batch

    try:
        wait_until(lambda: finished(batch), timeout=120, what="the batch to finish")
    except AssertionError:
        raise AssertionError(worker.log()) from None

    tickets = Ticket.objects.filter(event=event)
    assert batch.status == BatchStatus.FINISHED
    assert (batch.total, batch.failed_count, batch.done_count) == (600, 6, 594)
    assert batch.done_count == tickets.filter(reissue_count=1).count()
    assert not tickets.filter(reissue_count__gt=1).exists()
    failed_numbers = set(tickets.filter(reissue_count=0).values_list("number", flat=True))
    assert failed_numbers == {97, 194, 291, 388, 485, 582}
    assert ItemFailure.objects.filter(batch=batch).count() == 6
