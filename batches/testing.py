"""Run a batch to the end in-process, for a host project's own tests:

    from batches.testing import run_batch

    def test_reissue_gives_every_ticket_a_new_code(event, staff_user):
        batch = run_batch("reissue_tickets", {"event_id": event.pk}, user=staff_user)
        assert (batch.status, batch.done_count, batch.failed_count) == ("finished", 20, 0)

`run_batch` starts the operation as a person would (the params' checks, `may_act`, the guard and
the limits: the same exceptions as `start_batch`) and runs the batch's messages one after another
in the calling thread, through the engine's own code (planning, chunks, checkpoints, the close),
with no broker and no worker process, as django-tasks' immediate backend runs a task. It returns
the batch as it ended (finished, failed or cancelled), its failures in `batch.failures`.
`run_to_end(batch)` does the same for a batch started otherwise (through a view, the API,
`retry_failed`).

Inside a transaction that never commits (Django's TestCase, pytest-django's `db`), the work the
engine does after each commit (its next messages, the batches.signals) runs as each step ends, as a
commit would run it. An exception the engine does not record as an item's failure (the database
gone) is raised to the test, where a worker would retry the message.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import dramatiq
from django.db import DEFAULT_DB_ALIAS, connections

from .engine import dispatch
from .models import Batch
from .services import User, start_batch

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Messages in a row that leave the batch as it was before one is taken for stuck. Only a batch
# something else holds (chunks claimed by a worker process alive in the same database) gets there.
_MOST_IDLE_MESSAGES = 200


class BatchDidNotEnd(RuntimeError):
    """The batch is still active with nothing left to run in-process, or made no progress."""


def run_batch(operation: str, params: Mapping[str, Any], *, user: User) -> Batch:
    """Start `operation` on `params` as `user` and run the batch in-process to its end; the batch.

    Should the scope already have an active batch, the start joins it (as a person's would) and
    that batch is run to its end.
    """
    with dispatch.kept_in_process() as messages:
        batch = _committed(start_batch, operation=operation, data=params, user=user).batch
        if not messages:
            dispatch.plan(batch.pk)  # joined a batch whose messages are elsewhere: planning again is safe
        _run(messages, batch.pk)
    return _ended(Batch.objects.get(pk=batch.pk))


def run_to_end(batch: Batch | int) -> Batch:
    """Run an active batch in-process to its end (a queued one is planned first); the batch."""
    batch_id = batch if isinstance(batch, int) else batch.pk
    with dispatch.kept_in_process() as messages:
        dispatch.plan(batch_id)  # plans a queued batch; a running one just gets its runners
        _run(messages, batch_id)
    return _ended(Batch.objects.get(pk=batch_id))


def _run(messages: deque[dispatch.Sent], batch_id: int) -> None:
    """Run the kept messages, and those they send, in order until none is left."""
    broker = dramatiq.get_broker()
    idle, seen = 0, _where(batch_id)
    while messages:
        message = messages.popleft()
        if message.delay_ms:
            time.sleep(message.delay_ms / 1000)  # the pool of a worker process in this database is busy
        _committed(broker.get_actor(message.actor_name), *message.args)
        now = _where(batch_id)
        idle = idle + 1 if now == seen else 0
        seen = now
        if idle >= _MOST_IDLE_MESSAGES:
            raise BatchDidNotEnd(f"Batch {batch_id} made no progress in {idle} messages in a row: {now}.")


def _where(batch_id: int) -> tuple[Any, ...] | None:
    """What changes when a message gets the batch anywhere: its status, its last checkpoint."""
    return Batch.objects.filter(pk=batch_id).values_list("status", "heartbeat_at").first()


def _ended(batch: Batch) -> Batch:
    if batch.is_active:
        raise BatchDidNotEnd(
            f"Batch {batch.pk} is still {batch.status} with nothing left to run in-process: "
            "are its chunks held by a worker process using the same database?"
        )
    return batch


def _committed(step: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `step`; inside a transaction that will not commit, then run the on-commit work it added
    (and the work that adds), as its commit would, and take it off the transaction's list."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        return step(*args, **kwargs)  # each of the engine's transactions commits, and runs its own on-commit work
    start = len(connection.run_on_commit)
    result = step(*args, **kwargs)
    while len(connection.run_on_commit) > start:
        hooks = connection.run_on_commit[start:]
        del connection.run_on_commit[start:]
        for _savepoints, hook, robust in hooks:
            if not robust:
                hook()
                continue
            try:
                hook()
            except Exception:
                logger.exception("An on-commit hook of the batch engine raised; going on, as a commit would.")
    return result
