"""The worker's own figure beside Dramatiq's: how long each checkpoint takes, by operation.

Served by Dramatiq's Prometheus exporter on the worker (DRAMATIQ_PROMETHEUS=1), which gathers
every worker process's figures from files in its multiprocess directory. A histogram of durations
is a per-process figure by nature (Prometheus' rate() copes with a restart), so unlike the web's
/metrics it is not read from Postgres: one row per checkpoint would cost more than the checkpoint.
"""

from __future__ import annotations

import os
from typing import Any

# Seconds: a checkpoint commits every BATCHES_CHECKPOINT_SECONDS (1 s) of items, so most land
# around 1 s; a short one ends a chunk, a long one is an item past its budget or a slow commit.
CHECKPOINT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 5, 10, 30)

_checkpoint_seconds: Any = None


def enable() -> None:
    """Start recording, if this worker runs Dramatiq's Prometheus middleware: it sets up its
    multiprocess directory at process boot, and prometheus_client must be imported after that."""
    global _checkpoint_seconds
    if _checkpoint_seconds is not None or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    import prometheus_client

    _checkpoint_seconds = prometheus_client.Histogram(
        "batches_checkpoint_duration_seconds",
        "One checkpoint: its items and the transaction that commits them, by operation.",
        ["operation"],
        buckets=CHECKPOINT_BUCKETS,
        registry=prometheus_client.CollectorRegistry(),  # the exporter reads the files, not a registry
    )


def observe_checkpoint(operation: str, seconds: float) -> None:
    if _checkpoint_seconds is not None:
        _checkpoint_seconds.labels(operation).observe(seconds)
