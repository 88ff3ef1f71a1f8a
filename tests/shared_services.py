"""Run a command (`make test`'s passes) and fail if it disturbed the machine's shared services.

    python -m tests.shared_services DATABASE_URL REDIS_URL BROKER_URL -- COMMAND...

Before the command: each server's identity (Postgres's pg_postmaster_start_time(), Redis's run_id,
RabbitMQ's server properties) is recorded and a connection to each is opened and kept, as another
client of the machine would. After it: the identities must be the same and every kept connection
still answer on the same socket (a Redis SHUTDOWN, a RabbitMQ stop_app or a Postgres restart each
break it). Prints the command's wall time; exits with the command's status, or 1 if anything changed.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Watched:
    name: str
    identity: Callable[[], str]  # asked on the kept connection: fails if that connection was dropped
    before: str = ""


def postgres(url: str) -> Watched:
    import psycopg2

    parts = urllib.parse.urlsplit(url)
    connection = psycopg2.connect(
        dbname="postgres",  # not a test database: tests drop theirs and terminate their connections
        user=parts.username or "postgres",
        password=parts.password or None,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        application_name="make test: shared-service watch",
    )
    connection.autocommit = True

    def identity() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_postmaster_start_time(), pg_backend_pid()")
            started, pid = cursor.fetchone()
        return f"started {started.isoformat()}, this connection's backend {pid}"

    return Watched(f"PostgreSQL at {parts.hostname}:{parts.port or 5432}", identity)


def redis_server(url: str) -> Watched:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    parts = urllib.parse.urlsplit(url)
    # One connection, never re-opened: a reconnect would hide a restart.
    client = redis.Redis(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        single_connection_client=True,
        retry=Retry(NoBackoff(), 0),
    )
    client.client_setname("make-test-shared-service-watch")

    def identity() -> str:
        return f"run_id {client.info('server')['run_id']}, this connection's id {client.client_id()}"

    return Watched(f"Redis at {parts.hostname}:{parts.port or 6379}", identity)


def rabbitmq(url: str) -> Watched:
    import pika

    parameters = pika.URLParameters(url)
    parameters.heartbeat = 0  # idle for the whole run; only a server-side close may end it
    parameters.client_properties = {"connection_name": "make test: shared-service watch"}
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()

    def identity() -> str:
        connection.process_data_events(0)
        channel.queue_declare("", exclusive=True, auto_delete=True)  # a round trip on the kept channel
        product = connection._impl.server_properties
        return f"{product.get('product', b'?')!r} {product.get('version', b'?')!r}, kept connection open"

    return Watched(f"RabbitMQ at {parameters.host}:{parameters.port}", identity)


def watch(database_url: str, redis_url: str, broker_url: str) -> list[Watched]:
    watched = []
    for url, make in ((database_url, postgres), (redis_url, redis_server), (broker_url, rabbitmq)):
        if url:
            watched.append(make(url))
    return watched


def main(argv: list[str]) -> int:
    split = argv.index("--")
    database_url, redis_url, broker_url = argv[:split]
    command = argv[split + 1 :]
    watched = watch(database_url, redis_url, broker_url)
    for each in watched:
        each.before = each.identity()
    started = time.monotonic()
    status = subprocess.call(command)
    seconds = time.monotonic() - started

    changed = []
    for each in watched:
        try:
            after = each.identity()
        except Exception as error:  # the kept connection is gone: the server restarted or dropped it
            after = f"the kept connection failed: {type(error).__name__}: {error}"
        if after != each.before:
            changed.append(f"{each.name}: before {each.before}; after {after}")
    print(f"\n== Wall time: {seconds / 60:.1f} min ({seconds:.0f} s)")
    if changed:
        print("== The shared services were disturbed:\n  " + "\n  ".join(changed))
        return status or 1
    print(f"== The shared services were left alone: {', '.join(each.name for each in watched) or 'none watched'}.")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
