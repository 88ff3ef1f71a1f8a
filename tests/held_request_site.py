"""Settings for tests/test_production_shape.py: the app, plus a page that answers only when told to."""

from tests.settings import *  # noqa: F403

ROOT_URLCONF = "tests.held_request_urls"
