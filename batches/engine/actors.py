"""Dramatiq actors: thin wrappers that hand over to the engine and the state changes.

A batch runs as up to `max_parallel` runner messages. Each claims a chunk, works it while the
batch keeps its fair share of the pool, and when it yields sends itself to the back of the
queue: a FIFO queue of short turns is round robin between batches (batches/engine/scheduler.py).
"""

import dramatiq

from batches.models import BatchStatus

from . import dispatch, exports, runner, state, workers

# A runner works for at most BATCHES_MESSAGE_SECONDS and then hands over to a fresh message, so
# no single message comes near this limit, however long the batch.
_RETRYING = {
    "time_limit": 30 * 60 * 1000,
    "max_retries": 10,
    "min_backoff": 500,
    "max_backoff": 60_000,
    "on_retry_exhausted": "batch_message_gave_up",
}
# A runner over its batch's share before it began waits this long before it asks again.
_WAIT_MS = 500


@dramatiq.actor(actor_name=dispatch.PLAN, queue_name=dispatch.QUEUE, **_RETRYING)
def plan_batch(batch_id: int) -> None:
    runners = state.plan(batch_id, planner=workers.me.worker_id)
    if runners > 1:
        dispatch.run(batch_id, count=runners - 1)
    if runners:
        run_batch(batch_id)  # this message is the first runner: the batch's first items start at once


@dramatiq.actor(actor_name=dispatch.RUN, queue_name=dispatch.QUEUE, **_RETRYING)
def run_batch(batch_id: int) -> None:
    outcome = runner.run_runner(batch_id)
    if outcome is runner.RunnerOutcome.AGAIN:
        dispatch.run(batch_id)
    elif outcome is runner.RunnerOutcome.WAIT:
        dispatch.run(batch_id, delay_ms=_WAIT_MS)


@dramatiq.actor(actor_name=dispatch.ASSEMBLE, queue_name=dispatch.QUEUE, max_retries=10, min_backoff=1000)
def assemble_export(batch_id: int) -> None:
    exports.assemble(batch_id)


@dramatiq.actor(max_retries=3)
def batch_message_gave_up(message: dict, retries: dict) -> None:
    """A plan or runner message failed every retry: fail its batch, visibly, with the last error."""
    (batch_id,) = message["args"]
    last_error = (message.get("options", {}).get("traceback") or "").strip().splitlines()[-1:] or ["unknown error"]
    state.end(
        batch_id,
        BatchStatus.FAILED,
        error=f"Gave up after {retries.get('retries', '?')} retries of {message['actor_name']}: {last_error[0]}",
    )
