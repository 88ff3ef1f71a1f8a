"""The emails batches owe when they end, sent exactly once per batch through Django's email backend.

`owe` writes the batch's Notification row in the transaction that ends the batch (state.end and the
close of its last chunk), so the end and the debt commit together or not at all, whichever process
ends it and whenever it dies. Each worker's outbox thread runs `send_due`: it takes an unsent row
with SELECT … FOR UPDATE SKIP LOCKED, sends, and marks it sent in the same transaction, so two
workers never send one row, and a worker that dies mid-send leaves the row unsent (its transaction
rolls back) for the next one. One window remains: a worker killed after the mail server accepted the
message and before its COMMIT reached Postgres (a few milliseconds) — the next worker sends it again,
with the same Message-ID (batches.emails.message_id), which receiving servers and mail clients use to
keep one copy. A signal receiver (batches.signals) cannot promise this: it runs after the commit,
in memory, and is lost with its process.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from batches import emails
from batches.conf import batches_settings
from batches.models import Batch, Notification

logger = logging.getLogger(__name__)

# A failed send waits this long, doubled each time, up to an hour.
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
# An email that is not ready (an export's file still being assembled: emails.ready) is looked at
# again this often, and sent without waiting any longer after WAIT_FOR_FILE.
READY_AGAIN = timedelta(seconds=2)
WAIT_FOR_FILE = timedelta(minutes=10)


def owe(batch_id: int, now: datetime) -> None:
    """Owe the batch's starter an email, if they asked for one and have an address; call in the
    transaction that ends the batch. At most one row per batch, whatever calls it twice."""
    recipient = Batch.objects.filter(pk=batch_id, notify=True).values_list("created_by__email", flat=True).first()
    if not recipient:
        return  # not asked for, or nobody to send it to (no starter, no address)
    Notification.objects.bulk_create(
        [Notification(batch_id=batch_id, recipient=recipient, created_at=now, next_attempt_at=now)],
        ignore_conflicts=True,
    )


def send_due(now: datetime | None = None, most: int = 50) -> int:
    """Send the emails that are due, one transaction each; how many were sent. Safe to run from
    every worker at once: a row being sent is skipped by the others."""
    sent = 0
    for _ in range(most):
        with transaction.atomic():
            moment = now or timezone.now()
            row = (
                Notification.objects.filter(
                    sent_at__isnull=True,
                    next_attempt_at__lte=moment,
                    attempts__lt=batches_settings.NOTIFY_ATTEMPTS,
                )
                .select_for_update(skip_locked=True)
                .order_by("next_attempt_at", "pk")
                .first()
            )
            if row is None:
                break
            batch = Batch.objects.select_related("created_by", "cancelled_by").get(pk=row.batch_id)
            if not emails.ready(batch) and moment < row.created_at + WAIT_FOR_FILE:
                row.next_attempt_at = moment + READY_AGAIN
                row.save(update_fields=["next_attempt_at"])
                continue
            row.attempts += 1
            try:
                emails.batch_ended(batch, row.recipient).send()
            except Exception as exc:  # the mail server refused or is away: try later
                row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                row.next_attempt_at = moment + min(FIRST_RETRY * 2 ** (row.attempts - 1), LONGEST_RETRY)
                row.save(update_fields=["attempts", "last_error", "next_attempt_at"])
                logger.warning("Email for batch %s not sent (attempt %s): %s", batch.pk, row.attempts, row.last_error)
                continue
            row.sent_at = timezone.now()
            row.save(update_fields=["attempts", "sent_at"])
            logger.info("Email for batch %s sent to %s.", batch.pk, row.recipient)
            sent += 1
    return sent
