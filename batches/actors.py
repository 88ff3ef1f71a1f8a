"""Dramatiq actors: thin wrappers that hand over to the engine."""

import dramatiq

from . import engine

# A message works on a chunk for BATCHES_MESSAGE_SECONDS and then hands over to a fresh one, so
# no single message comes near Dramatiq's time limit, however long the batch.
_TIME_LIMIT_MS = 30 * 60 * 1000


@dramatiq.actor(max_retries=20, time_limit=_TIME_LIMIT_MS)
def plan_batch(batch_id: int) -> None:
    for chunk_id in engine.plan(batch_id):
        run_chunk.send(chunk_id)


@dramatiq.actor(max_retries=20, time_limit=_TIME_LIMIT_MS)
def run_chunk(chunk_id: int) -> None:
    if engine.run_chunk(chunk_id) is engine.ChunkState.MORE:
        run_chunk.send(chunk_id)
