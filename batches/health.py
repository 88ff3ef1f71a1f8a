"""Health for orchestrators: /healthz (the process answers) and /readyz (its dependencies answer).

Both are answered by `HealthEndpoints`, first in MIDDLEWARE: anonymous, no session, no CSRF, no
host check (an orchestrator probes by address), no HTTPS redirect and no throttle. /readyz checks
Postgres (one round trip), that every migration is applied (once it is, the answer is kept for
the life of the process: code that brings new migrations comes with a new process), and the
broker (a ping on Redis over one kept connection, a connection opened and closed on RabbitMQ).

Cheap for anyone to call: a process runs the checks at most once every READY_RESULT_SECONDS,
one caller at a time, and every probe meanwhile gets that answer. A failure answers 503. Only
the addresses (and token) that may read /metrics (batches/metrics.py) learn which dependency
failed and how; anyone else gets `{"status": "ok"}` or `{"status": "unavailable"}`. Nothing
secret (URLs, passwords) is in either body.

`manage.py batches health` runs the same checks from a shell; `--worker` checks this host's
worker heartbeat in the registry (docker-compose.yml's worker healthcheck).
"""

from __future__ import annotations

import copy
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from . import metrics
from .log_format import PROBE_PATHS
from .models import Worker
from .workers import HOST, silence

BROKER_TIMEOUT_SECONDS = 2.0
READY_RESULT_SECONDS = 1.0

_migrations_applied = False
# A Redis broker -> a client whose pool keeps its connection
_redis_clients: weakref.WeakKeyDictionary[dramatiq.Broker, Any] = weakref.WeakKeyDictionary()
_ready_lock = threading.Lock()
_ready_result: tuple[float, tuple[object, ...], list[Check]] | None = None


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not checked (what it depends on failed)
    detail: str


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return Check("database", False, f"unreachable ({type(exc).__name__})")
    return Check("database", True, "ok")


def check_migrations() -> Check:
    global _migrations_applied
    if not _migrations_applied:
        try:
            executor = MigrationExecutor(connection)
            unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            return Check("migrations", False, f"not checked ({type(exc).__name__})")
        if unapplied:
            names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in unapplied[:5])
            return Check("migrations", False, f"{len(unapplied)} not applied: {names}")
        _migrations_applied = True
    return Check("migrations", True, "ok")


def forget_migrations_check() -> None:
    """Check the migrations, and everything else, again at the next probe (for tests)."""
    global _migrations_applied, _ready_result
    _migrations_applied = False
    _ready_result = None


def _broker_is(broker: dramatiq.Broker, module: str, name: str) -> bool:
    """Whether the broker is (a subclass of) Dramatiq's `module.name`, without importing a client
    library the host may not have."""
    return any(cls.__module__ == module and cls.__name__ == name for cls in type(broker).__mro__)


def _redis_client(broker: dramatiq.Broker) -> Any:
    """A client to the broker's Redis with short timeouts (the broker's own waits as long as Redis
    takes), kept for the broker's life so that its pool keeps the connection."""
    import redis

    client = _redis_clients.get(broker)
    if client is None:
        pool = broker.client.connection_pool
        timeouts = {"socket_connect_timeout": BROKER_TIMEOUT_SECONDS, "socket_timeout": BROKER_TIMEOUT_SECONDS}
        client = _redis_clients.setdefault(
            broker,
            redis.Redis(
                connection_pool=redis.ConnectionPool(
                    connection_class=pool.connection_class, **{**pool.connection_kwargs, **timeouts}
                )
            ),
        )
    return client


def _rabbitmq_reachable(broker: dramatiq.Broker) -> None:
    import pika

    given = broker.parameters if isinstance(broker.parameters, list) else [broker.parameters]
    attempts = []
    for parameters in map(copy.deepcopy, given):
        parameters.connection_attempts = 1
        parameters.socket_timeout = BROKER_TIMEOUT_SECONDS
        parameters.blocked_connection_timeout = BROKER_TIMEOUT_SECONDS
        attempts.append(parameters)
    pika.BlockingConnection(attempts).close()


def check_broker() -> Check:
    """The broker Dramatiq sends to (django_dramatiq builds it from DRAMATIQ_BROKER)."""
    broker = dramatiq.get_broker()
    kind = type(broker).__name__
    try:
        if _broker_is(broker, "dramatiq.brokers.redis", "RedisBroker"):
            kind = "redis"
            _redis_client(broker).ping()  # a broken connection is dropped from the pool
        elif _broker_is(broker, "dramatiq.brokers.rabbitmq", "RabbitmqBroker"):
            kind = "rabbitmq"
            _rabbitmq_reachable(broker)
        elif _broker_is(broker, "dramatiq.brokers.stub", "StubBroker"):
            kind = "stub"  # in this process: nothing to reach
        else:
            return Check("broker", True, f"{type(broker).__name__} not checked")
    except Exception as exc:  # any failure to reach the broker means not ready
        return Check("broker", False, f"{kind} unreachable ({type(exc).__name__})")
    return Check("broker", True, f"{kind} ok")


def readiness() -> list[Check]:
    database = check_database()
    migrations = check_migrations() if database.ok else Check("migrations", None, "not checked (no database)")
    return [database, migrations, check_broker()]


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
        checks = readiness()
        _ready_result = (time.monotonic(), against, checks)
        return checks


def readyz(request: HttpRequest) -> HttpResponse:
    checks = recent_readiness()
    failed = [check.name for check in checks if check.ok is False]
    body: dict[str, object] = {"status": "unavailable" if failed else "ok"}
    if metrics.may_scrape(request):
        body |= {"failed": failed, "checks": {check.name: check.detail for check in checks}}
    return JsonResponse(body, status=503 if failed else 200)


def worker_heartbeat() -> Check:
    """Whether a worker process of this host is alive in the registry (heartbeat within the silence)."""

    try:
        alive = Worker.objects.alive(timezone.now(), silence()).filter(host=HOST).count()
    except DatabaseError as exc:
        return Check("worker", False, f"registry unreachable ({type(exc).__name__})")
    if not alive:
        return Check("worker", False, f"no live worker on {HOST} (no heartbeat for {silence().total_seconds():.0f} s)")
    return Check("worker", True, f"{alive} live worker process(es) on {HOST}")


ENDPOINTS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics.metrics,
}
# The access log leaves these out (log_format, which may not import this module): one list.
assert ENDPOINTS.keys() == PROBE_PATHS, "log_format.PROBE_PATHS must name every probe endpoint"


class HealthEndpoints:
    """Answers the probes, and Prometheus' scrapes of /metrics (batches/metrics.py: its own access
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
