"""A test-only app that writes one JSON line per batches.signals signal to the file BATCHES_SIGNAL_LOG
names, from whichever process sends it (a worker's, the test's own): installed by
tests/signal_log_site.py, the settings a worker started with DJANGO_SETTINGS_MODULE=tests.signal_log_site
runs on."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.dispatch import Signal

from batches import signals

SIGNALS: dict[str, Signal] = {
    "created": signals.batch_created,
    "started": signals.batch_started,
    "finished": signals.batch_finished,
    "failed": signals.batch_failed,
    "cancelled": signals.batch_cancelled,
}


class _FileRecorder:
    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path

    def __call__(self, sender: type | None, batch: Any, **kwargs: Any) -> None:
        line = {
            "signal": self.name,
            "pid": os.getpid(),
            "sender": getattr(sender, "__name__", None),
            "batch": batch.pk,
            "status": batch.status,
            "total": batch.total,
            "processed": batch.processed,
        }
        # One short write to a file opened for appending: lines from several processes never interleave.
        with self.path.open("a") as log:
            log.write(json.dumps(line) + "\n")


def log_signals_to(path: Path) -> list[_FileRecorder]:
    """From now on, append a line to `path` for every signal this process sends; the receivers."""
    recorders = [_FileRecorder(name, path) for name in SIGNALS]
    for recorder in recorders:
        SIGNALS[recorder.name].connect(recorder, weak=False)
    return recorders


@contextmanager
def signal_log(path: Path) -> Iterator[None]:
    """Append a line to `path` for every signal this process sends while the block runs."""
    recorders = log_signals_to(path)
    try:
        yield
    finally:
        for recorder in recorders:
            SIGNALS[recorder.name].disconnect(recorder)


def read_signal_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class SignalLog(AppConfig):
    name = "tests.signal_log"
    label = "signal_log"

    def ready(self) -> None:
        path = os.environ.get("BATCHES_SIGNAL_LOG")
        if path:
            log_signals_to(Path(path))  # for the life of the process
