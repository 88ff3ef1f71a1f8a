"""The app's settings under test: a fast password hasher.

Hashing is not what the tests are about, and PBKDF2's ~0.7 s a hash was half the time of the in-process
tests. Processes the tests start (workers, web servers) inherit DJANGO_SETTINGS_MODULE, so a password
set here is checked the same way there. PBKDF2 stays listed: a stored PBKDF2 hash still verifies (and is
upgraded on login, which tests/test_tokens.py relies on).
"""

from site_config.settings import *  # noqa: F403

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]

# The engine's own test project (tests/testapp): a model and a test-only operation of its own.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]  # noqa: F405
from tests.testapp.settings import *  # noqa: E402, F403 - its operation's knobs
