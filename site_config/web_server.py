"""The web server of the Dockerfile, docker-compose.yml, the tests and `make bench`: granian (WSGI).

    python -m site_config.web_server

Why granian: every open progress page keeps a connection and polls it every second. granian's
Rust event loop holds any number of idle keep-alive connections and hands only complete requests
to the Python threads, so the arrival of hundreds of pages at once costs no thread. gunicorn's
gthread worker gives each new connection a thread until its first request arrives, and those
threads are what the pages queue behind (README, Benchmarks; bench/RESULTS.md, row 4).

Sizing (2 cores, Postgres' default max_connections = 100). With persistent connections
(CONN_MAX_AGE) every Python thread that has served a request keeps one Postgres connection:

    web       WEB_CONCURRENCY x WEB_THREADS = 2 x 8                            16
    worker    rundramatiq, 2 processes x (4 threads + sweep and heartbeat)   <= 12
    admin sessions, `manage.py` commands, psql                              ~  5
                                                                            ----
                                                                            ~ 33 of 100

so a second web container still fits. One process per core; 8 threads each, because a poll
spends close to half its time waiting on Postgres (3 queries) and more threads only contend for
the GIL. Connections are not bounded by threads: WEB_BACKPRESSURE is how many connections each
process accepts (idle keep-alive ones included); more wait in the listen backlog (WEB_BACKLOG).

What replaces gunicorn's settings:
- `timeout = 60`: for gthread workers it never cut a request short (a request runs to its end;
  only a worker process whose main loop stopped answering gunicorn's master for 60 s was killed
  and replaced). granian has no request timeout either (by design: emmett-framework/granian#177)
  and no such heartbeat: a worker process that dies is replaced (respawn_failed_workers), one
  that hangs without dying is not. Long work belongs in the Dramatiq worker, not in a request.
- graceful shutdown: on SIGTERM (or SIGINT) granian stops accepting, lets the requests in flight
  finish and exits; WEB_KILL_TIMEOUT (30 s, gunicorn's graceful_timeout) bounds the wait.
- access log: one line per request on stdout, as `accesslog = "-"` did.
- no control socket at a fixed path (gunicorn 27's ~/.gunicorn/gunicorn.ctl): granian's
  processes talk over pipes of their own.
"""

from __future__ import annotations

import os
import sys

from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.server import Server

WSGI_APPLICATION = "site_config.wsgi:application"


def server() -> Server:
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
    return Server(
        WSGI_APPLICATION,
        address=os.environ.get("WEB_HOST", "0.0.0.0"),
        port=int(os.environ.get("WEB_PORT", "8000")),
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=int(os.environ.get("WEB_THREADS", "8")),
        # Connections each process takes: every open page is one, polling or not.
        backpressure=int(os.environ.get("WEB_BACKPRESSURE", "2048")),
        backlog=int(os.environ.get("WEB_BACKLOG", "4096")),
        # A page polls every second; keep its connection between polls.
        http1_settings=HTTP1Settings(keep_alive=True),
        websockets=False,
        log_access=True,
        respawn_failed_workers=True,
        workers_kill_timeout=int(os.environ.get("WEB_KILL_TIMEOUT", "30")),
    )


def preflight() -> None:
    """The settings loaded once here, so that what is missing is said in a sentence rather than as a
    traceback from each worker process (which granian would start again and again); the zero-setup
    SQLite file migrated, so that `docker run` of the image alone serves."""
    import django
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_config.settings")
    try:
        django.setup()
    except ImproperlyConfigured as error:
        sys.exit(f"Not configured: {error}")

    from django.core.management import call_command
    from django.db import connections

    if not os.environ.get("DATABASE_URL"):
        print(f"No DATABASE_URL: the database is SQLite in {settings.DATA_DIR}, migrated now.", file=sys.stderr)
        call_command("migrate", interactive=False, verbosity=0)
    if settings.BROKER_KIND == "stub":
        print(
            "No REDIS_URL or BROKER_URL: batches are accepted but no worker runs them. Give this server and a "
            "`python manage.py rundramatiq` worker a broker (docker-compose.yml does), or use `make run`.",
            file=sys.stderr,
        )
    connections.close_all()


if __name__ == "__main__":
    preflight()
    server().serve()
