"""Health for orchestrators: /healthz (the process answers) and /readyz (its dependencies answer).

Both are answered by `HealthEndpoints`, first in MIDDLEWARE: anonymous, no session, no CSRF, no
host check (an orchestrator probes by address), no HTTPS redirect and no throttle. /readyz runs
the engine's checks (batches/engine/readiness.py): Postgres, migrations, the broker.

Cheap for anyone to call: a process runs the checks at most once every READY_RESULT_SECONDS,
one caller at a time, and every probe meanwhile gets that answer. A failure answers 503. Only
the addresses (and token) that may read /metrics (batches/ops/metrics.py) learn which dependency
failed and how; anyone else gets `{"status": "ok"}` or `{"status": "unavailable"}`. Nothing
secret (URLs, passwords) is in either body.

`manage.py batches health` runs the same checks from a shell.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import dramatiq
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from batches.engine import readiness
from batches.engine.readiness import Check

from . import metrics
from .probes import PROBE_PATHS

READY_RESULT_SECONDS = 1.0

_ready_lock = threading.Lock()
_ready_result: tuple[float, tuple[object, ...], list[Check]] | None = None


def forget_migrations_check() -> None:
    """Check the migrations, and everything else, again at the next probe (for tests)."""
    global _ready_result
    readiness.forget_migrations_check()
    _ready_result = None


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def recent_readiness() -> list[Check]:
    """readiness(), run at most once every READY_RESULT_SECONDS by one caller at a time."""
    global _ready_result
    against = (dramatiq.get_broker(), connection.settings_dict["NAME"])
    with _ready_lock:
        if _ready_result is not None:
            at, key, checks = _ready_result
            if key == against and time.monotonic() - at < READY_RESULT_SECONDS:
                return checks
        checks = readiness.readiness()
        _ready_result = (time.monotonic(), against, checks)
        return checks


def readyz(request: HttpRequest) -> HttpResponse:
    checks = recent_readiness()
    failed = [check.name for check in checks if check.ok is False]
    body: dict[str, object] = {"status": "unavailable" if failed else "ok"}
    if metrics.may_scrape(request):
        body |= {"failed": failed, "checks": {check.name: check.detail for check in checks}}
    return JsonResponse(body, status=503 if failed else 200)


ENDPOINTS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics.metrics,
}
# The site's access log leaves these out (it may not import this module, which needs the apps): one list.
assert ENDPOINTS.keys() == PROBE_PATHS, "probes.PROBE_PATHS must name every probe endpoint"


class HealthEndpoints:
    """Answers the probes, and Prometheus' scrapes of /metrics (batches/ops/metrics.py: its own access
    rule), before any other middleware runs (see the module's docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        endpoint = ENDPOINTS.get(request.path_info)
        if endpoint is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"detail": "Use GET."}, status=405, headers={"Allow": "GET, HEAD"})
        response = endpoint(request)
        response["Cache-Control"] = "no-store"
        return response
