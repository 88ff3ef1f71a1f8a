"""The tests' settings plus the test-only operation whose effect takes items out of its own filter,
for the worker processes the report tests start (tests/test_report.py)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.report_operation"]  # noqa: F405
