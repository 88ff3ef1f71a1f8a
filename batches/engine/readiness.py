"""Whether this process's dependencies answer: Postgres (one round trip), every migration applied
(once it is, the answer is kept for the life of the process: code that brings new migrations comes
with a new process), and the broker (a ping on Redis over one kept connection, a connection opened
and closed on RabbitMQ); and whether a worker process of this host heartbeats in the registry.

Served over HTTP by /readyz (batches/ops/health.py) and from a shell by `manage.py batches health`.
Nothing secret (URLs, passwords) is in a check's detail.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any

import dramatiq
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from batches.models import Worker

from .workers import HOST, silence

BROKER_TIMEOUT_SECONDS = 2.0

_migrations_applied = False
# A Redis broker -> a client whose pool keeps its connection
_redis_clients: weakref.WeakKeyDictionary[dramatiq.Broker, Any] = weakref.WeakKeyDictionary()


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


def worker_heartbeat() -> Check:
    """Whether a worker process of this host is alive in the registry (heartbeat within the silence)."""

    try:
        alive = Worker.objects.alive(timezone.now(), silence()).filter(host=HOST).count()
    except DatabaseError as exc:
        return Check("worker", False, f"registry unreachable ({type(exc).__name__})")
    if not alive:
        return Check("worker", False, f"no live worker on {HOST} (no heartbeat for {silence().total_seconds():.0f} s)")
    return Check("worker", True, f"{alive} live worker process(es) on {HOST}")
