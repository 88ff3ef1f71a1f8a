"""Whether this process's dependencies answer: Postgres (one round trip), every migration applied
(once it is, the answer is kept for the life of the process: code that brings new migrations comes
with a new process), and the broker (a ping on Redis over one kept connection, a connection opened
and closed on RabbitMQ); and whether a worker process of this host heartbeats in the registry.

Served over HTTP by /readyz (batches/ops/health.py) and from a shell by `manage.py batches health`.
Nothing secret (URLs, passwords) is in a check's detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from batches.models import Worker

from .workers import HOST, silence

BROKER_TIMEOUT_SECONDS = 2.0

_migrations_applied = False
_redis_clients: dict[str, Any] = {}  # REDIS_URL -> a client whose pool keeps its connection


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
    """Check the migrations again at the next call (for tests)."""
    global _migrations_applied
    _migrations_applied = False


def _redis_client(url: str) -> Any:
    import redis

    client = _redis_clients.get(url)
    if client is None:
        client = _redis_clients.setdefault(
            url,
            redis.Redis.from_url(
                url, socket_connect_timeout=BROKER_TIMEOUT_SECONDS, socket_timeout=BROKER_TIMEOUT_SECONDS
            ),
        )
    return client


def check_broker() -> Check:
    kind = settings.BROKER_KIND
    try:
        if kind == "redis":
            _redis_client(settings.REDIS_URL).ping()  # a broken connection is dropped from the pool
        elif kind == "rabbitmq":
            import pika

            parameters = pika.URLParameters(settings.BROKER_URL)
            parameters.connection_attempts = 1
            parameters.socket_timeout = BROKER_TIMEOUT_SECONDS
            parameters.blocked_connection_timeout = BROKER_TIMEOUT_SECONDS
            pika.BlockingConnection(parameters).close()
    except Exception as exc:  # any failure to reach the broker means not ready
        return Check("broker", False, f"{kind} unreachable ({type(exc).__name__})")
    return Check("broker", True, f"{kind} ok")


def readiness() -> list[Check]:
    database = check_database()
    migrations = check_migrations() if database.ok else Check("migrations", None, "not checked (no database)")
    return [database, migrations, check_broker()]


def worker_heartbeat() -> Check:
    """Whether a worker process of this host is alive in the registry (heartbeat within the silence)."""

    try:
        alive = Worker.objects.alive(timezone.now(), silence()).filter(host=HOST).count()
    except DatabaseError as exc:
        return Check("worker", False, f"registry unreachable ({type(exc).__name__})")
    if not alive:
        return Check("worker", False, f"no live worker on {HOST} (no heartbeat for {silence().total_seconds():.0f} s)")
    return Check("worker", True, f"{alive} live worker process(es) on {HOST}")
