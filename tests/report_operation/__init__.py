"""A test-only app whose operation takes each item out of its own `items()` (see operations.py).

Installed only in the processes the report tests start (tests/settings_report.py): in-process tests
register the operation for themselves, so that other tests see the demo's operation alone.
"""
