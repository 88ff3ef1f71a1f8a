"""Dramatiq actors: thin wrappers that hand over to the engine."""

import dramatiq

from . import engine
from .models import BatchStatus, Chunk

# A message works on a chunk for BATCHES_MESSAGE_SECONDS and then hands over to a fresh one, so
# no single message comes near this limit, however long the batch.
_RETRYING = {
    "time_limit": 30 * 60 * 1000,
    "max_retries": 10,
    "min_backoff": 500,
    "max_backoff": 60_000,
    "on_retry_exhausted": "batch_message_gave_up",
}


@dramatiq.actor(**_RETRYING)
def plan_batch(batch_id: int) -> None:
    for chunk_id in engine.plan(batch_id):
        run_chunk.send(chunk_id)


@dramatiq.actor(**_RETRYING)
def run_chunk(chunk_id: int) -> None:
    if engine.run_chunk(chunk_id) is engine.ChunkState.MORE:
        run_chunk.send(chunk_id)


@dramatiq.actor(max_retries=3)
def batch_message_gave_up(message: dict, retries: dict) -> None:
    """A plan or chunk message failed every retry: fail its batch, visibly, with the last error."""
    from .services import end_batch

    (target,) = message["args"]
    batch_id = target if message["actor_name"] == "plan_batch" else None
    if batch_id is None:
        batch_id = Chunk.objects.filter(pk=target).values_list("batch_id", flat=True).first()
    if batch_id is None:
        return
    last_error = (message.get("options", {}).get("traceback") or "").strip().splitlines()[-1:] or ["unknown error"]
    end_batch(
        batch_id,
        BatchStatus.FAILED,
        error=f"Gave up after {retries.get('retries', '?')} retries of {message['actor_name']}: {last_error[0]}",
    )
