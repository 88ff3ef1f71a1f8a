"""Dramatiq middleware for the batch engine's side of a worker's life."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, ModuleType

import dramatiq
from django.db import connections
from dramatiq.middleware import Middleware

from batches.conf import batches_settings

from . import worker_metrics

logger = logging.getLogger(__name__)

# A second stop signal this soon after the first is the same request: a signal to the whole process
# group (systemd's KillMode=control-group, a supervisor's killpg) reaches a worker process twice, from
# the group and forwarded by Dramatiq's main process, and Dramatiq takes a second one as "kill now".
SAME_STOP_SECONDS = 5.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _engine_side() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    """runner, recovery, workers and idempotency (outbox: `_outbox`), imported on first use. Not at the top: this
    module is imported while Django loads its apps (django_dramatiq builds the broker and its
    middleware then), before any model can be imported."""
    from batches import idempotency

    from . import recovery, runner, workers

    return runner, recovery, workers, idempotency


class WorkerLifecycle(Middleware):
    """The worker process in the registry (its heartbeat, from a thread of its own that does nothing
    else); the sweeps for dead workers, runners that are not running, stale batches and expired
    idempotency keys, from another; the emails of ended batches, from a third; on shutdown, running
    chunks hand over at their next checkpoint and the worker leaves the registry."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        _, _, workers, _ = _engine_side()
        graceful_stop_signals()
        # Take only the messages this process can run now (Dramatiq prefetches twice its threads):
        # a runner waiting in a busy process's cache would starve while another process sits idle.
        worker.queue_prefetch = worker.worker_threads
        # And look for new ones at least every 0.1 s when idle (1 s by default): a runner sent to
        # the back of the queue, or a new batch, gets a free thread at once.
        worker.worker_timeout = min(worker.worker_timeout, 100)
        # In the registry before the first message runs, so that every claim names this process.
        queues = worker.consumer_whitelist or broker.get_declared_queues()
        workers.register(threads=worker.worker_threads, queues=sorted(queues))
        worker_metrics.enable()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        runner, _, _, _ = _engine_side()
        runner.stopping.clear()
        self._stop.clear()
        threading.Thread(target=self._heartbeat, name="batches-heartbeat", daemon=True).start()
        threading.Thread(target=self._sweep_periodically, name="batches-recovery-sweep", daemon=True).start()
        threading.Thread(target=self._send_emails, name="batches-outbox", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        runner, _, _, _ = _engine_side()
        runner.stopping.set()
        self._stop.set()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        _, _, workers, _ = _engine_side()
        try:
            workers.leave()
        finally:
            connections.close_all()

    def _heartbeat(self) -> None:
        _, _, workers, _ = _engine_side()
        every = batches_settings.WORKER_HEARTBEAT_SECONDS
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                workers.heartbeat()  # only this: a sweep that waited on a lost worker would silence this one
            except Exception:
                logger.exception("The worker heartbeat failed; it will try again.")
                connections.close_all()
            if self._stop.wait(max(0.0, every - (time.monotonic() - started))):
                break
        connections.close_all()

    def _send_emails(self) -> None:
        """Every heartbeat interval, the emails ended batches owe (batches/engine/outbox.py). A thread
        of its own: a mail server that does not answer delays no sweep and no heartbeat."""
        from . import outbox

        while True:
            try:
                outbox.send_due()
            except Exception:
                logger.exception("Sending the batches' emails failed; it will try again.")
                connections.close_all()
            if self._stop.wait(batches_settings.WORKER_HEARTBEAT_SECONDS):
                connections.close_all()
                return

    def _sweep_periodically(self) -> None:
        """Every heartbeat interval, dead workers (workers.sweep_dead) and runners that are not running
        (workers.sweep_runners); every BATCHES_SWEEP_SECONDS, stale batches, expired idempotency keys
        and long-gone workers. A thread apart from the heartbeat's: a row a lost worker holds, or a send
        to a broker that does not answer, never delays a heartbeat."""
        _, recovery, workers, idempotency = _engine_side()
        from . import exports

        next_sweep = 0.0
        while True:
            for sweep, what in ((workers.sweep_dead, "dead workers"), (workers.sweep_runners, "runners")):
                try:
                    sweep()
                except Exception:
                    logger.exception("The sweep for %s failed; it will try again.", what)
                    connections.close_all()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + batches_settings.SWEEP_SECONDS
                try:
                    for recovered in recovery.recover_stale():
                        logger.warning("Recovery sweep: batch %s %s. %s", *vars(recovered).values())
                    idempotency.purge_expired()
                    exports.sweep()
                    workers.prune()
                except Exception:
                    logger.exception("The recovery sweep failed; it will try again.")
                finally:
                    connections.close_all()
            every = min(batches_settings.WORKER_HEARTBEAT_SECONDS, batches_settings.SWEEP_SECONDS)
            if self._stop.wait(every):
                return


def graceful_stop_signals() -> None:
    """However the stop comes (SIGTERM, SIGHUP, SIGQUIT; once or twice), this worker process stops the
    way Dramatiq stops on one SIGTERM: its chunks hand over at their next checkpoint, it leaves the
    registry and exits 0. A repeat more than SAME_STOP_SECONDS later still forces the exit (Dramatiq's
    "Killing worker process...", for an operator who will not wait). Only where Dramatiq's CLI has
    put its own handler, in the process's main thread (not under a test's in-process worker)."""
    if threading.current_thread() is not threading.main_thread():
        return
    dramatiq_stop = signal.getsignal(signal.SIGTERM)
    if not callable(dramatiq_stop):
        return
    handler = _StopOnce(dramatiq_stop)
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)


class _StopOnce:
    def __init__(
        self, dramatiq_stop: Callable[[int, FrameType | None], object], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._dramatiq_stop = dramatiq_stop
        self._clock = clock
        self._first: float | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = self._clock()
        if self._first is None:
            self._first = now
        elif now - self._first < SAME_STOP_SECONDS:
            logger.info("%s again: the stop under way goes on.", signal.Signals(signum).name)
            return
        self._dramatiq_stop(signum, frame)
