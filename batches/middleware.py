"""Dramatiq middleware for the batch engine's side of a worker's life."""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


class WorkerLifecycle(Middleware):
    """Sweeps for stale batches (and expired idempotency keys) as the worker boots and then
    periodically; on shutdown, asks running chunks to hand over at their next checkpoint."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from .engine import stopping

        stopping.clear()
        self._stop.clear()
        threading.Thread(target=self._sweep_periodically, name="batches-recovery-sweep", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from .engine import stopping

        stopping.set()
        self._stop.set()

    def _sweep_periodically(self) -> None:
        from django.conf import settings
        from django.db import connections

        from .api.idempotency import purge_expired
        from .recovery import recover_stale

        while True:
            try:
                for recovered in recover_stale():
                    logger.warning("Recovery sweep: batch %s %s. %s", *vars(recovered).values())
                purge_expired()
            except Exception:
                logger.exception("The recovery sweep failed; it will try again.")
            finally:
                connections.close_all()
            if self._stop.wait(settings.BATCHES_SWEEP_SECONDS):
                return
