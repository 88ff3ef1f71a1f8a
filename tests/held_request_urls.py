"""The app's URLs, plus GET /held/: a request the test keeps in flight while it stops the server.

/held/ writes `entered` in HELD_REQUEST_DIR, then waits (up to 30 s) for `release` there before
it answers.
"""

import os
import time
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def held(request: HttpRequest) -> HttpResponse:
    directory = Path(os.environ["HELD_REQUEST_DIR"])
    (directory / "entered").touch()
    deadline = time.monotonic() + 30
    while not (directory / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return HttpResponse("finished after release")


urlpatterns = [path("held/", held), path("", include("site_config.urls"))]
