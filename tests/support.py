"""Helpers for tests that run real processes: waiting on a condition, a worker, a tiny HTTP client."""

from __future__ import annotations

import http.cookiejar
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from email.message import Message
from pathlib import Path

from django.conf import settings
from django.db import connection

from batches.models import Batch, Worker

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


def refreshed(batch: Batch) -> Batch:
    """The batch as the database has it now."""
    batch.refresh_from_db()
    return batch


def registered_workers(count: int) -> list[int]:
    """Wait until at least `count` workers are registered and alive; their ids."""

    def live() -> list[int]:
        ids = list(Worker.objects.filter(gone_at__isnull=True).values_list("pk", flat=True))
        return sorted(ids) if len(ids) >= count else []

    return wait_until(live, timeout=60, what=f"{count} registered worker(s)")


def flush_broker() -> None:
    """Drop every message queued on the broker the tests run on (Redis or RabbitMQ)."""
    if settings.BROKER_KIND == "redis":
        import redis

        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    else:
        import dramatiq

        dramatiq.get_broker().flush_all()


class RedisServer:
    """A `redis-server` of the test's own on a free loopback port, without persistence (as the
    machine's runs): the one a fault test may stop and restart. The machine's shared Redis is never
    touched."""

    def __init__(self, directory: Path) -> None:
        if not shutil.which("redis-server"):
            import pytest

            pytest.skip("redis-server is not on this machine: cannot run a Redis of the test's own")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(lambda: self._serving(), timeout=30, what="the test's Redis to start")

    def _serving(self) -> bool:
        assert self.process is not None and self.process.poll() is None, (self.directory / "redis.log").read_text()
        return _port_open("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def restart(self) -> str:
        """Stop the server and start it again on the same port, as an operator's restart would:
        without persistence, every message is gone. What was done."""
        self.stop()
        self.start()
        return f"the test's own Redis on port {self.port} stopped and started again (no persistence)"


@contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TcpProxy:
    """A TCP proxy of the test's own on a free loopback port in front of a shared server (RabbitMQ,
    Postgres): point a process at `port` and `cut()` its connections as a server crash or a network
    failure would, without touching the server or anyone else's connections to it.

    `cut()` resets every proxied connection and refuses new ones until `restore()`; `outage(s)` does
    both around a pause."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.cuts = 0

    def __enter__(self) -> TcpProxy:
        self.restore()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cut()

    def restore(self) -> None:
        """Listen again (on the same port) and proxy new connections."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"proxy:{self.port}").start()

    def cut(self) -> None:
        """Reset every connection through the proxy and refuse new ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            self.cuts += 1
            _close(listener)
        for sock in sockets:
            # Linger 0: a reset, as when the far end dies, rather than an orderly goodbye.
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close(sock)

    def outage(self, seconds: float) -> str:
        """Cut, refuse connections for `seconds`, then accept again. What was done."""
        self.cut()
        time.sleep(seconds)  # the length of the outage, not a wait for an event
        self.restore()
        return f"every connection through the proxy on port {self.port} reset; refused for {seconds:g}s"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut: the listener is closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while connecting
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
            pumps = [threading.Thread(target=self._pump, args=pair, daemon=True) for pair in
                     ((client, upstream), (upstream, client))]  # fmt: skip
            for pump in pumps:
                pump.start()
            threading.Thread(target=self._close_after, args=(pumps, client, upstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _close_after(self, pumps: list[threading.Thread], *sockets: socket.socket) -> None:
        """A connection both ends have closed: let its sockets go."""
        for pump in pumps:
            pump.join()
        with self._lock:
            self._sockets.difference_update(sockets)
        for sock in sockets:
            _close(sock)


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


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

    def discard(self) -> None:
        """The test is over: SIGKILL what is left of the worker rather than wait seconds for a graceful
        stop nobody checks (the next test flushes the broker; the fault tests check the graceful stop)."""
        if self.process and self.process.poll() is None:
            with suppress(ProcessLookupError):
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
        # granian listens once its first worker is up; a SIGTERM while another still boots waits out
        # the whole kill timeout (30 s) for that one. So: every worker started.
        workers = int(env.get("WEB_CONCURRENCY", "1")) if command == WEB_COMMAND else 0

        def listens() -> bool:
            assert server.poll() is None, log_path.read_text()
            text = log_path.read_text(errors="replace")
            started = text.count("Started worker-") >= workers or "Starting granian" not in text  # logged at INFO
            return started and _port_open("127.0.0.1", port)

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
