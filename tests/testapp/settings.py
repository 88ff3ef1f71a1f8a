"""The test operation's knobs (tests/testapp/operations.py), from the environment so that a worker
process a test starts takes them too (`worker_process(RECORDS_ITEM_DELAY_MS="10")`); a test in-process
sets them with pytest-django's `settings`. Their defaults are the demo's, which the engine's tests
were first written against."""

import os

# Milliseconds each record takes, standing in for slow work elsewhere.
RECORDS_ITEM_DELAY_MS = int(os.environ.get("RECORDS_ITEM_DELAY_MS", "50"))
# Records whose number is a multiple of this fail (0: none).
RECORDS_FAIL_EVERY = int(os.environ.get("RECORDS_FAIL_EVERY", "97"))
# The operation's item_time_limit, in seconds.
RECORDS_ITEM_TIME_LIMIT = float(os.environ.get("RECORDS_ITEM_TIME_LIMIT", "30"))
