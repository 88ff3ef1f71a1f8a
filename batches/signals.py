"""Signals a host project connects to, to hook into a batch's life without touching the engine
(a notification when an export is ready, a webhook, an audit line):

    from django.dispatch import receiver
    from batches.signals import batch_finished

    @receiver(batch_finished, sender=ExportInvoices)
    def tell_the_owner(sender, batch, **kwargs):
        notify(batch.created_by, f"{batch} is done: {batch.done_count} exported.")

Every one is sent with `sender`, the operation's class (as `post_save` sends the model's class, so
that `sender=` narrows a receiver to one operation; None for an operation no longer installed),
and `batch`, the Batch as committed, its `created_by` loaded.

- batch_created: a start made a new batch (not when it joined the scope's active one); it is queued.
- batch_started: it was planned: its items are counted (`total`), the first ones start.
- batch_finished: every item was handled; some may have failed (`failed_count`, `batch.failures`).
- batch_failed: the engine stopped it (`error` says why): too many failed items, messages that
  failed every retry, no progress after many recoveries, its operation gone.
- batch_cancelled: a person cancelled it (`cancelled_by`).

A batch ends with exactly one of the last three. A batch ended while still queued was never
started; one with nothing to do is started and finished at once.

Each is sent once, after the transaction that made the change commits (a rolled-back change sends
nothing), in the process that made the change: the web process for a start or a cancel, a worker
for most of the rest. A worker killed between that commit and the send loses the signal: it is a hook, not
a delivery guarantee; the batches table stays the truth. That is why the email a batch's starter asks
for is not sent from batch_finished and its kin but from an outbox row the end writes in its own
transaction (batches/engine/outbox.py): exactly once. A receiver runs in the engine's thread, so
keep it short (hand slow work to a task of its own). One that raises is logged by Django (the
`django.dispatch` logger, with its traceback), the other receivers still run and the batch goes on.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

batch_created = Signal()
batch_started = Signal()
batch_finished = Signal()
batch_failed = Signal()
batch_cancelled = Signal()


def send_on_commit(signal: Signal, batch_id: int) -> None:
    """Send `signal` for the batch once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _send(signal, batch_id), robust=True)


def _send(signal: Signal, batch_id: int) -> None:
    if not signal.receivers:
        return  # nobody listens: no query
    # Here, not at the top: a host may import this module before the apps (and models) are loaded.
    from .models import Batch
    from .operations import UnknownOperation, get_operation

    batch = Batch.objects.select_related("created_by").filter(pk=batch_id).first()
    if batch is None:
        return
    try:
        sender: type | None = type(get_operation(batch.operation))
    except UnknownOperation:
        sender = None
    signal.send_robust(sender=sender, batch=batch)
