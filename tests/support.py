"""Helpers for tests that run real processes: waiting on a condition, a worker, a tiny HTTP client."""

from __future__ import annotations

import http.cookiejar
import os
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
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


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


class WorkerProcess:
    """`manage.py rundramatiq` on the Redis broker, exactly as production runs it."""

    def __init__(self, log_path: Path, **env: str) -> None:
        if not settings.REDIS_URL:
            raise RuntimeError("A worker process needs REDIS_URL (the Redis broker).")
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

    def request(self, path: str, data: dict | None = None) -> tuple[int, dict, str]:
        body = None
        if data is not None:
            token = next(cookie.value for cookie in self.jar if cookie.name == "csrftoken")
            body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, body, headers={"Referer": self.base + "/"})
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(log_path: Path, *, workers: int = 2, threads: int = 16, **env: str) -> Iterator[str]:
    """The web command of the Dockerfile, on the test database; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--config", "site_config/gunicorn_conf.py", "site_config.wsgi"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env=subprocess_env(
                GUNICORN_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=str(workers), GUNICORN_THREADS=str(threads), **env
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            assert server.poll() is None, log_path.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(answers, timeout=60, what="gunicorn to listen")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
