"""Rows 4 and 7 of `make bench`: open progress pages polling a web server, driven by wrk.

Each wrk connection is one open page: it polls, waits 0.5 to 1.5 s (a page polls every second; the
jitter spreads the pages as independent ones are), and polls again. wrk opens all its connections
at once when it starts, so every run includes the burst of pages arriving together.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import free_port, gunicorn_setup, serving, web_server_setup

SECONDS = 20
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, eq=False)  # hashed by identity
class Contender:
    name: str
    label: str
    setup: Callable[..., tuple[list[str], dict[str, str]]]
    sizing: dict[str, int]


# Both at their best measured sizing within the same Postgres budget (under 100 connections with
# the worker's): granian as site_config/web_server.py ships it; gunicorn as gunicorn_conf.py does.
ADOPTED = Contender(
    "granian", "granian (WSGI), 2 processes x 8 threads", web_server_setup, {"workers": 2, "threads": 8}
)
RUNNER_UP = Contender(
    "gunicorn",
    "gunicorn (gthread), 2 processes x 32 threads, keep-alive 5 s",
    gunicorn_setup,
    {"workers": 2, "threads": 32},
)
CONTENDERS = (ADOPTED, RUNNER_UP)


@dataclass
class Load:
    p50: float
    p99: float
    requests: int
    errors: int
    seconds: float
    server_cores: float  # CPU seconds of the server's processes per second of the run
    postgres_cores: float
    wrk_cores: float

    @property
    def summary(self) -> str:
        return f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms, {self.requests} requests, {self.errors} errors"

    @property
    def cpu(self) -> str:
        return (
            f"web {self.server_cores:.2f} cores, Postgres {self.postgres_cores:.2f}, wrk {self.wrk_cores:.2f}"
            f" (of {os.cpu_count()})"
        )


def wrk_path() -> str | None:
    return shutil.which("wrk")


def poll_script(directory: Path, session: str) -> Path:
    script = directory / "poll.lua"
    script.write_text(
        f'wrk.headers["Cookie"] = "sessionid={session}"\n'
        'wrk.headers["HX-Request"] = "true"\n'
        "function delay() return math.random(500, 1500) end\n"
    )
    return script


@contextmanager
def serve(contender: Contender, log_dir: Path, **env: str) -> Iterator[tuple[str, int]]:
    """The contender on a free port, on the bench database; yields its base URL and its pid."""
    port = free_port()
    command, environment = contender.setup(port, **contender.sizing, **env)
    with serving(command, environment, port, log_dir / f"{contender.name}.log") as process:
        yield f"http://127.0.0.1:{port}", process.pid


def warm_up(script: Path, url: str, server_pid: int) -> None:
    """A few seconds of polls before measuring, the same for every server.

    No measured poll then pays a process's first request (imports, templates) or a thread's
    first Postgres connection, which a running site has long paid.
    """
    load(script, url, 64, server_pid, seconds=3)


def load(script: Path, url: str, pollers: int, server_pid: int, seconds: int = SECONDS) -> Load:
    """`pollers` open pages on `url` for `seconds`, and the CPU the server, Postgres and wrk used."""
    server, postgres = tree_cpu_seconds(server_pid), postgres_cpu_seconds()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    run = subprocess.run(
        # One wrk thread is plenty at ~1 request per page per second and leaves the cores to the
        # server; a 10 s timeout keeps slow answers in the percentiles instead of dropping them.
        [wrk_path(), "-t1", f"-c{pollers}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", run.stdout, re.MULTILINE))
    requests = re.search(r"(\d+) requests in", run.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", run.stdout)
    return Load(
        p50=_ms(latency["50"]),
        p99=_ms(latency["99"]),
        requests=int(requests.group(1)) if requests else 0,
        errors=(int(errors.group(1)) if errors else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
        seconds=elapsed,
        server_cores=(tree_cpu_seconds(server_pid) - server) / elapsed,
        postgres_cores=cpu_between(postgres, postgres_cpu_seconds()) / elapsed,
        wrk_cores=wrk_cpu / elapsed,
    )


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def _cpu_seconds(pid: int) -> float:
    """User + system time of one live process (all its threads), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.exists():
            for child in children.read_text().split():
                found += _descendants(int(child))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a server: its master and every process under it (the workers)."""
    return sum(_cpu_seconds(each) for each in _descendants(pid))


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU seconds of each postgres process on this machine (its backends serve the polls)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in ("postgres", "postmaster"):
                found[int(entry.name)] = _cpu_seconds(int(entry.name))
    return found


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots; a process gone since (a recycled connection's
    backend) counts for nothing rather than for minus what it had spent."""
    return sum(after.get(pid, spent) - spent for pid, spent in before.items()) + sum(
        spent for pid, spent in after.items() if pid not in before
    )
