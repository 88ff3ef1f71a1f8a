"""Bounded waits: no transaction of the engine's waits on a lost worker for longer than it must.

Two kinds. The bookkeeping a worker does for others (the heartbeat, the hand-over of a dead worker's
chunks, the sweeps) waits at most BOOKKEEPING_LOCK_WAIT for any row lock and is cut off by the server
after BOOKKEEPING_STATEMENT: a row held by a frozen or cut-off worker is left for the next sweep,
never waited on. A checkpoint's transaction is one the server itself ends once the worker has gone
quiet in it (idle, or in one statement) for longer than an item may take (the operation's item time
limit) plus a checkpoint plus BATCHES_TRANSACTION_GRACE_SECONDS: a frozen worker, or one cut off by a
partition, has its transaction rolled back and its row locks freed by Postgres, not by TCP keepalive.

All of it is Postgres's (`lock_timeout`, `statement_timeout`, `idle_in_transaction_session_timeout`),
set for the one transaction only (`set_config(…, true)`): a site's own actors in the same worker
process, and its other transactions, keep the server's settings. SQLite has no row locks and one
writer at a time: there it is a plain transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from django.db import DEFAULT_DB_ALIAS, OperationalError, connections, transaction

from batches.conf import batches_settings

BOOKKEEPING_LOCK_WAIT = 1.0
BOOKKEEPING_STATEMENT = 10.0

_LOCK_NOT_AVAILABLE = "55P03"


def _milliseconds(seconds: float) -> str:
    return f"{max(0, round(seconds * 1000))}ms"


@contextmanager
def _limited(settings: dict[str, float], using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    connection = connections[using]
    nested = connection.in_atomic_block
    with transaction.atomic(using=using):
        if connection.vendor != "postgresql":
            yield
            return
        names = list(settings)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in names),
                [arg for name in names for arg in (name, name, _milliseconds(settings[name]))],
            )
            row = cursor.fetchone()
        yield
        if nested:  # inside someone else's transaction (a test's): theirs again for the rest of it
            previous = [row[2 * index] for index in range(len(names))]
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in names),
                    [arg for name, value in zip(names, previous, strict=True) for arg in (name, value)],
                )


def bookkeeping(using: str = DEFAULT_DB_ALIAS) -> AbstractContextManager[None]:
    """A transaction for work done on others' behalf: it never waits long on a lock anyone holds."""
    return _limited({"lock_timeout": BOOKKEEPING_LOCK_WAIT, "statement_timeout": BOOKKEEPING_STATEMENT}, using)


def checkpoint(item_time_limit: float | None, using: str = DEFAULT_DB_ALIAS) -> AbstractContextManager[None]:
    """A checkpoint's transaction: the server ends it once its worker has gone quiet in it for longer
    than an item may take; an operation without an item time limit gets no such limit either."""
    seconds = (item_time_limit or 0) and (
        item_time_limit + batches_settings.CHECKPOINT_SECONDS + batches_settings.TRANSACTION_GRACE_SECONDS
    )
    return _limited({"statement_timeout": seconds, "idle_in_transaction_session_timeout": seconds}, using)


def is_lock_wait(exc: BaseException) -> bool:
    """Whether a database error is a bounded wait given up (left for the next sweep)."""
    return isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) == _LOCK_NOT_AVAILABLE
