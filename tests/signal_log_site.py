"""Settings for a worker whose batches.signals are logged to BATCHES_SIGNAL_LOG (tests/test_signals.py)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.signal_log.SignalLog"]  # noqa: F405
