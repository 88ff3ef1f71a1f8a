"""Exactly one email per batch through `kill -9` around its end, sent by real worker processes to a
real SMTP server (aiosmtpd, on a free port; the workers get EMAIL_HOST/EMAIL_PORT)."""

import asyncio
import email
import email.policy
import random
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage as Message

import pytest
from aiosmtpd.controller import Controller

from batches.models import Batch, BatchStatus, Notification
from batches.services import start_batch
from tests.support import free_port, refreshed, wait_until

pytestmark = pytest.mark.slow

SITE = "http://batches.test/"
FAULT_ENV = {
    "RECORDS_FAIL_EVERY": "97",
    "RECORDS_ITEM_DELAY_MS": "5",
    "RECORDS_ITEM_TIME_LIMIT": "1",
    "BATCHES_LEASE_SECONDS": "1",
    "BATCHES_SWEEP_SECONDS": "0.5",
}


class Mailbox:
    """What the SMTP server accepted. `hold_next()`: the next message is held until `release()`,
    then refused (451), as when the sender dies before the server said yes: not delivered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.held = threading.Event()
        self._gate: threading.Event | None = None
        self._lock = threading.Lock()

    def hold_next(self) -> None:
        self.held.clear()
        self._gate = threading.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()

    async def handle_DATA(self, server, session, envelope) -> str:
        gate, self._gate = self._gate, None
        if gate is not None:
            self.held.set()
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 60)
            return "451 4.3.0 Not delivered: the sender went away"
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def for_batch(self, batch: Batch) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m["Message-ID"].startswith(f"<batch-{batch.pk}-")]


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    mailbox.release()
    controller.stop()


def test_kill_9_around_the_end_sends_exactly_one_email_per_batch_that_asked(
    worker_process, make_ledger, make_clerk, smtp
):
    mailbox, port = smtp
    env = {**FAULT_ENV, "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port)}
    clerk = make_clerk("alice", email="alice@example.com")
    rng = random.Random()
    worker = worker_process(**env)

    def start(notify: bool) -> Batch:
        ledger = make_ledger(records=300)
        return start_batch(
            operation="mark_records", data={"ledger_id": ledger.pk}, user=clerk, notify=notify, site_url=SITE
        ).batch

    def ended(batch: Batch) -> bool:
        return not refreshed(batch).is_active

    def kill_and_replace() -> None:
        nonlocal worker
        worker.kill()
        worker = worker_process(**env)

    batches: list[Batch] = []

    # Just before the end: the last checkpoints, the close and the email are the next worker's.
    batch = start(notify=True)
    wait_until(lambda: refreshed(batch).processed >= 250 or ended(batch), what="the end to near")
    kill_and_replace()
    batches.append(batch)

    # As it ends, asked for and not: the row (or none) committed with the end; the send is the next worker's.
    for notify in (True, False):
        batch = start(notify=notify)
        wait_until(lambda b=batch: ended(b), timeout=120, what="the batch to end")
        kill_and_replace()
        batches.append(batch)

    # Mid-send: the mail server has the message but has not said yes when the worker dies.
    mailbox.hold_next()
    batch = start(notify=True)
    wait_until(mailbox.held.is_set, timeout=120, what="the send to begin")
    kill_and_replace()
    mailbox.release()
    batches.append(batch)

    # At random moments after the end: before the send, mid-send or after it.
    for _ in range(2):
        batch = start(notify=True)
        wait_until(lambda b=batch: ended(b), timeout=120, what="the batch to end")
        time.sleep(rng.uniform(0, 2.5))  # a random moment: the outbox thread looks every 2 s
        kill_and_replace()
        batches.append(batch)

    asked = [b for b in batches if b.notify]
    wait_until(
        lambda: Notification.objects.filter(sent_at__isnull=False).count() == len(asked),
        timeout=120,
        what="every email to be marked sent",
    )
    for batch in batches:
        batch.refresh_from_db()
        assert batch.status == BatchStatus.FINISHED, batch.error
        assert batch.done_count + batch.failed_count == batch.total == 300
        received = mailbox.for_batch(batch)
        if not batch.notify:
            assert received == [], "a batch that did not ask got an email"
            continue
        assert len(received) == 1, f"batch {batch.pk}: {len(received)} emails"
        (message,) = received
        body = message.get_content()
        assert message["To"] == "alice@example.com"
        assert message["Subject"].startswith("Finished: Mark records")
        assert f"300 records: {batch.done_count} done, {batch.failed_count} failed, 0 skipped." in body
        assert "- Record 97: Record 97 is refused." in body
        assert f"The batch's page: {SITE}batches/{batch.pk}/" in body
    assert not Notification.objects.filter(batch__notify=False).exists()
