"""The tests' settings plus the slow export, for the worker processes tests/test_exports.py starts."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.export_operation"]  # noqa: F405
