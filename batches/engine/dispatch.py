"""Sending the engine's messages, by actor name.

The state changes of a batch decide what must run next; the actors (batches/engine/actors.py) run it
and sit above everything else. Sending by name keeps that one-way: nothing below the actors
imports them. The actors declare themselves on the broker when Django starts (django_dramatiq
imports every app's `actors` module), so the names are known wherever a message is sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import dramatiq

PLAN = "plan_batch"
RUN = "run_batch"
ASSEMBLE = "assemble_export"
QUEUE = "default"


@dataclass(frozen=True)
class Sent:
    """A message kept in-process (batches/testing.py) instead of going to the broker."""

    actor_name: str
    args: tuple[int, ...]
    delay_ms: int | None


_kept: ContextVar[deque[Sent] | None] = ContextVar("batches_kept_messages", default=None)


@contextmanager
def kept_in_process() -> Iterator[deque[Sent]]:
    """Within the block, the messages this thread sends go to the returned queue, not the broker."""
    kept: deque[Sent] = deque()
    token = _kept.set(kept)
    try:
        yield kept
    finally:
        _kept.reset(token)


def _send(actor_name: str, *args: int, delay_ms: int | None = None) -> None:
    kept = _kept.get()
    if kept is not None:
        kept.append(Sent(actor_name, args, delay_ms))
        return
    broker = dramatiq.get_broker()
    message = dramatiq.Message(queue_name=QUEUE, actor_name=actor_name, args=args, kwargs={}, options={})
    broker.enqueue(message, delay=delay_ms)


def plan(batch_id: int) -> None:
    _send(PLAN, batch_id)


def run(batch_id: int, *, count: int = 1, delay_ms: int | None = None) -> None:
    """Send `count` runners for the batch to the back of the queue."""
    for _ in range(count):
        _send(RUN, batch_id, delay_ms=delay_ms)


def assemble(batch_id: int) -> None:
    """Assemble a finished export's file from its parts."""
    _send(ASSEMBLE, batch_id)
