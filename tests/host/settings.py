"""The test host: our test settings with a host's own middleware (no HtmxMiddleware, none of the
site's), its own templates first (its base.html, not ours) and its own URLs. The e2e test applies
the same values at run time (its live server is started after them)."""

from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import TEMPLATES as SITE_TEMPLATES

HOST_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

ROOT_URLCONF = "tests.host.urls"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "tests.host.csp.StrictContentSecurityPolicy",
]
TEMPLATES = [{**SITE_TEMPLATES[0], "DIRS": [HOST_TEMPLATES_DIR]}]
