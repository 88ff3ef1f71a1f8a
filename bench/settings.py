"""The app's settings, plus the benchmark's reference view (bench/urls.py)."""

from site_config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
