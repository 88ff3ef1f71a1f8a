"""Helpers for tests that run real processes: waiting on a condition, a worker, a tiny HTTP client."""

from __future__ import annotations

import http.cookiejar
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
START_URL = "/batches/start/reissue_tickets/"  # the demo operation's start, as the web UI posts it
HTMX = {"HTTP_HX_REQUEST": "true"}  # what htmx adds to its requests, for Django's test client


def wait_until(condition: Callable[[], object], *, timeout: float = 60, what: str = "condition") -> object:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}.")
        time.sleep(0.05)


def subprocess_database_url() -> str:
    """The test database, as a URL another process can use."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or "postgres"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{params['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": subprocess_database_url(), "PYTHONUNBUFFERED": "1"}
    env.update(overrides)
    return env


def flush_broker() -> None:
    """Drop every message queued on the broker the tests run on (Redis or RabbitMQ)."""
    if settings.BROKER_KIND == "redis":
        import redis

        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    else:
        import dramatiq

        dramatiq.get_broker().flush_all()


def restart_broker() -> str:
    """Stop the tests' broker and start it again, as an operator's restart would; what was done.

    Redis: SHUTDOWN and the same server started again with the settings it ran with (without
    persistence, which is how it runs here, every message is gone). RabbitMQ: its application
    stopped and started (durable queues and persistent messages survive; unacked ones are
    delivered again). Raises pytest's Skipped, with the reason, when this machine cannot do it."""
    import pytest

    if settings.BROKER_KIND == "redis":
        import redis

        url = urllib.parse.urlparse(settings.REDIS_URL)
        if url.hostname not in {"127.0.0.1", "localhost"} or not shutil.which("redis-server"):
            pytest.skip(f"Redis at {url.hostname} is not a local server this test may restart")
        client = redis.Redis(host=url.hostname, port=url.port or 6379)
        config = {key: client.config_get(key)[key] for key in ("bind", "port", "save", "appendonly", "dir")}
        client.shutdown()
        wait_until(lambda: not _port_open(url.hostname, url.port or 6379), timeout=30, what="Redis to stop")
        args = [f"--{key}" if i % 2 == 0 else value for key, value in config.items() for i in range(2)]
        subprocess.run(["redis-server", "--daemonize", "yes", *args], check=True, capture_output=True)
        wait_until(lambda: _port_open(url.hostname, url.port or 6379), timeout=30, what="Redis to start")
        return f"Redis shut down and started again with {config}"
    if not shutil.which("rabbitmqctl"):
        pytest.skip("rabbitmqctl is not on this machine: cannot restart RabbitMQ")
    stopped = subprocess.run(["rabbitmqctl", "stop_app"], capture_output=True, text=True, timeout=120)
    if stopped.returncode != 0:
        pytest.skip(f"rabbitmqctl stop_app was refused: {stopped.stderr.strip()}")
    subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    import dramatiq

    # This thread's connection died with the stop. Sending retries on a new one by itself, but
    # flush_broker() (the next test's setup) would not.
    del dramatiq.get_broker().connection
    return "RabbitMQ's application stopped and started again"


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, port)) == 0


class WorkerProcess:
    """`manage.py rundramatiq` on the tests' broker (Redis, or RabbitMQ with BROKER_URL), exactly as
    production runs it."""

    def __init__(self, log_path: Path, **env: str) -> None:
        if settings.BROKER_KIND == "stub":
            raise RuntimeError("A worker process needs a real broker: REDIS_URL (Redis) or BROKER_URL (RabbitMQ).")
        self.log_path = log_path
        self.env = subprocess_env(**env)
        self.process: subprocess.Popen[bytes] | None = None
        self.processes = 1

    def start(self, threads: int = 2, processes: int = 1) -> None:
        self.processes = processes
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "--processes", str(processes), "--threads", str(threads)],
            cwd=BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.process and self.process.poll() is not None:
                raise AssertionError(f"The worker exited early:\n{self.log()}")
            return self.log().count("Worker process is ready for action.") >= self.processes

        wait_until(ready, timeout=timeout, what="the worker to be ready")

    def kill(self) -> None:
        """SIGKILL the whole worker (master and forked processes): no cleanup, no acks."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Browserless:
    """Just enough of a browser for a smoke test: cookies, CSRF, no redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), NoRedirect)

    def request(self, path: str, data: dict | None = None) -> tuple[int, Message, str]:
        """Status, headers (looked up case-insensitively, as HTTP names are) and body."""
        body = None
        if data is not None:
            token = next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")
            body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, body, headers={"Referer": self.base + "/"})
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The web command of the Dockerfile and docker-compose.yml (granian, site_config/web_server.py).
WEB_COMMAND = [sys.executable, "-m", "site_config.web_server"]
# The runner-up of `make bench` row 4, kept there for comparison.
GUNICORN_COMMAND = [sys.executable, "-m", "gunicorn", "--config", "site_config/gunicorn_conf.py", "site_config.wsgi"]


def web_server_setup(port: int, *, workers: int = 2, threads: int = 8, **env: str) -> tuple[list[str], dict[str, str]]:
    """The web command and its environment, listening on 127.0.0.1:`port`, on the test database."""
    sizing = {"WEB_CONCURRENCY": str(workers), "WEB_THREADS": str(threads)}
    return WEB_COMMAND, subprocess_env(WEB_HOST="127.0.0.1", WEB_PORT=str(port), **sizing, **env)


def gunicorn_setup(port: int, *, workers: int = 2, threads: int = 32, **env: str) -> tuple[list[str], dict[str, str]]:
    sizing = {"WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads)}
    return GUNICORN_COMMAND, subprocess_env(GUNICORN_BIND=f"127.0.0.1:{port}", **sizing, **env)


@contextmanager
def serving(command: list[str], env: dict[str, str], port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until it listens on `port`; on exit, SIGTERM it and wait for it to stop."""
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def listens() -> bool:
            assert server.poll() is None, log_path.read_text()
            return _port_open("127.0.0.1", port)

        wait_until(listens, timeout=60, what=f"{' '.join(command[1:])} to listen")
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)


@contextmanager
def web_server(log_path: Path, *, workers: int = 2, threads: int = 8, **env: str) -> Iterator[str]:
    """The web command of the Dockerfile, on the test database; yields its base URL."""
    port = free_port()
    with serving(*web_server_setup(port, workers=workers, threads=threads, **env), port, log_path):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def gunicorn(log_path: Path, *, workers: int = 2, threads: int = 32, **env: str) -> Iterator[str]:
    """gunicorn as `make bench` runs it (the runner-up), on the test database; yields its base URL."""
    port = free_port()
    with serving(*gunicorn_setup(port, workers=workers, threads=threads, **env), port, log_path):
        yield f"http://127.0.0.1:{port}"
