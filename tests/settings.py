"""The app's settings under test: a fast password hasher, and a Redis db per pytest-xdist process.

Hashing is not what the tests are about, and PBKDF2's ~0.7 s a hash was half the time of the in-process
tests. Processes the tests start (workers, web servers) inherit DJANGO_SETTINGS_MODULE, so a password
set here is checked the same way there. PBKDF2 stays listed: a stored PBKDF2 hash still verifies (and is
upgraded on login, which tests/test_tokens.py relies on).

Under pytest-xdist (`make test`'s pass 1 runs `-n 2`) each process has a test database of its own
(pytest-django adds the suffix _gw0, _gw1) and needs a Redis db of its own as well: the tests flush
theirs, and a worker started by one process must not take the other's messages. Process gwN uses the
db REDIS_URL names minus N: with make's TEST_REDIS_URL=redis://127.0.0.1:6379/15, gw0 uses 15 and gw1
14 (13 is `make bench`'s BENCH_REDIS_URL, so no more than two processes on the default). The choice is
written back to the environment before the app's settings read it, so the workers and web servers a
test starts inherit it; PER_PROCESS_REDIS_URL marks it made, so that they do not shift it again (nor a
REDIS_URL a test gives one of them, such as a Redis of the test's own).
"""

import os
import urllib.parse

from django.core.exceptions import ImproperlyConfigured


def per_process_redis_url(url: str, xdist_worker: str) -> str:
    """`url` with its db lowered by the xdist process's number (gw1: one less)."""
    parts = urllib.parse.urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    db = base - int(xdist_worker.removeprefix("gw"))
    if db < 0:
        raise ImproperlyConfigured(
            f"REDIS_URL names db {base}: too low for pytest-xdist process {xdist_worker}, which takes db "
            f"{base} minus its number. Name a higher db (make test's default is 15)."
        )
    return urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))


_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker and os.environ.get("REDIS_URL") and not os.environ.get("PER_PROCESS_REDIS_URL"):
    os.environ["REDIS_URL"] = os.environ["PER_PROCESS_REDIS_URL"] = per_process_redis_url(
        os.environ["REDIS_URL"], _xdist_worker
    )

from site_config.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

# The engine's own test project (tests/testapp): a model and a test-only operation of its own.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
from tests.testapp.settings import *  # noqa: E402, F403 - its operation's knobs

# Export files (batches/results.py): a folder of this run's own, one per pytest-xdist process (their batch
# ids overlap), written back to the environment so that the workers a test starts write to the same one.
if not os.environ.get("TEST_MEDIA_ROOT"):
    import tempfile

    os.environ["TEST_MEDIA_ROOT"] = tempfile.mkdtemp(prefix=f"batches-media-{_xdist_worker or 'main'}-")
MEDIA_ROOT = os.environ["TEST_MEDIA_ROOT"]
