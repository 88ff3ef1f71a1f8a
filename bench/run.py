"""`make bench`: every row measured side by side in one run, printed and written to bench/RESULTS.md.

Runs against the real Postgres and Redis (BENCH_DATABASE_URL, BENCH_REDIS_URL), in a database of
its own. Ratios, not absolute figures, are what the targets are about: the machines are shared.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/batches_bench")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["DJANGO_SETTINGS_MODULE"] = "site_config.settings"
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost,testserver"


def ensure_database() -> None:
    import dj_database_url
    import psycopg2

    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    admin = psycopg2.connect(
        dbname="postgres", user=config["USER"], password=config["PASSWORD"], host=config["HOST"], port=config["PORT"]
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]])
        if not cursor.fetchone():
            cursor.execute(f'CREATE DATABASE "{config["NAME"]}"')
    admin.close()


ensure_database()

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.base_user import AbstractBaseUser  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import F, QuerySet  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

import bench.operations  # noqa: E402, F401 - registers the benchmark operations
from batches import engine  # noqa: E402
from batches.api.tokens import create_token  # noqa: E402
from batches.demo.models import Event, Ticket  # noqa: E402
from batches.models import Batch, BatchStatus  # noqa: E402
from batches.services import end_batch, start_batch  # noqa: E402
from tests.support import WorkerProcess, gunicorn, wait_until  # noqa: E402


@dataclass
class Row:
    name: str
    measured: str
    target: str
    held: bool | None  # None: for orientation, no target


ROWS: list[Row] = []


def report(name: str, measured: str, target: str = "", held: bool | None = None) -> None:
    ROWS.append(Row(name, measured, target, held))
    mark = "" if held is None else ("  [held]" if held else "  [MISSED]")
    print(f"  {name}: {measured}{'  (target ' + target + ')' if target else ''}{mark}", flush=True)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


ROUNDS = 3


def side_by_side(*works: Callable[[], float]) -> list[float]:
    """Run the works in turn, ROUNDS times over; the fastest seconds of each.

    Interleaving puts every contender through the same moments of a shared machine, and the
    fastest round is the one least disturbed by its neighbours (as timeit does).
    """
    best = [math.inf] * len(works)
    for _ in range(ROUNDS):
        for index, work in enumerate(works):
            vacuum_tickets()  # each starts from the same table, not from the last one's dead rows
            best[index] = min(best[index], work())
    return best


def vacuum_tickets() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {Ticket._meta.db_table}")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- data -----------------------------------------------------------------------------------
@functools.cache
def bench_user() -> AbstractBaseUser:
    user, _ = get_user_model().objects.update_or_create(username="bench", defaults={"is_superuser": True})
    return user


def event_with(tickets: int) -> Event:
    """An event with `tickets` tickets, made with one INSERT … SELECT (a million in seconds)."""
    name = f"bench-{tickets}"
    event = Event.objects.filter(name=name).first()
    if event and event.tickets.count() == tickets:
        return event
    Event.objects.filter(name=name).delete()
    event = Event.objects.create(name=name, starts_at=datetime.now(UTC))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Ticket._meta.db_table} (event_id, number, holder, code, reissue_count)"
            " SELECT %s, g, 'Guest ' || g, md5(g::text), 0 FROM generate_series(1, %s) AS g",
            [event.pk, tickets],
        )
        cursor.execute(f"ANALYZE {Ticket._meta.db_table}")  # as autovacuum would, in its own time
    return event


def reset(event: Event) -> None:
    Ticket.objects.filter(event=event).update(reissue_count=0)
    Batch.objects.filter(scope_key__endswith=f":{event.pk}").delete()


def engine_run(operation: str, event: Event) -> float:
    """Plan and run a batch in this process (one worker, one thread); seconds from plan to end."""
    batch = start_batch(operation=operation, data={"event_id": event.pk}, user=bench_user()).batch

    def run() -> None:
        for chunk_id in engine.plan(batch.pk):
            while engine.run_chunk(chunk_id, budget_seconds=3600) is engine.ChunkState.MORE:
                pass

    seconds = timed(run)
    batch.refresh_from_db()
    assert batch.status == BatchStatus.FINISHED and batch.done_count == batch.total, batch
    return seconds


# --- 1. overhead ----------------------------------------------------------------------------
def overhead() -> None:
    print("1. Overhead", flush=True)
    items = 200_000
    event = event_with(items)
    tickets = Ticket.objects.filter(event=event).order_by("pk")

    def keyset_pages() -> None:
        after = 0
        while page := list(tickets.filter(pk__gt=after)[:2000]):
            after = page[-1].pk

    def server_side_cursor() -> None:
        with transaction.atomic():
            for _ in tickets.iterator(chunk_size=2000):
                pass

    keyset, cursor, noop = side_by_side(
        lambda: timed(keyset_pages), lambda: timed(server_side_cursor), lambda: engine_run("bench_noop", event)
    )
    loading = items / keyset
    report("loading the model instances, keyset pages of 2,000", f"{loading:,.0f} items/s")
    report("loading the model instances, server-side cursor", f"{items / cursor:,.0f} items/s")
    rate = items / noop
    measured = f"{rate:,.0f} items/s = {rate / loading:.2f} of loading them in keyset pages"
    report("engine, no-op items, one worker", measured, "≥ 50,000/s", rate >= 50_000)

    slow = event_with(1_000)

    def bare_loop() -> None:
        for _ in Ticket.objects.filter(event=slow).order_by("pk"):
            time.sleep(0.005)

    bare, ours = side_by_side(lambda: timed(bare_loop), lambda: engine_run("bench_sleep", slow))
    ratio = ours / bare
    measured = f"{ratio:.3f} ({ours:.2f} s vs {bare:.2f} s)"
    report("engine ÷ bare loop, 5 ms items (1,000)", measured, "≤ 1.03", ratio <= 1.03)


# --- 2. against the seeds' approach ---------------------------------------------------------
def against_the_seeds() -> None:
    print("2. Against the seeds' approach (the same 5,000 items, each one UPDATE)", flush=True)
    items = 5_000
    event = event_with(items)
    progress = redis.Redis.from_url(settings.REDIS_URL)

    def tickets() -> QuerySet[Ticket]:
        # Every loop loads its items as it goes, as the engine does.
        return Ticket.objects.filter(event=event).order_by("pk")

    def seed_style() -> None:
        # What the seed documents do: a commit per item and a progress write to Redis per item,
        # as Celery's update_state does (a GET, then a SETEX + PUBLISH pipeline).
        for done, ticket in enumerate(tickets(), 1):
            Ticket.objects.filter(pk=ticket.pk).update(reissue_count=F("reissue_count") + 1)
            progress.get("celery-task-meta-bench")
            pipe = progress.pipeline()
            pipe.set("celery-task-meta-bench", f'{{"status": "PROGRESS", "done": {done}}}', ex=86400)
            pipe.publish("celery-task-meta-bench", "progress")
            pipe.execute()

    def bare_commit_per_item() -> None:
        for ticket in tickets():
            Ticket.objects.filter(pk=ticket.pk).update(reissue_count=F("reissue_count") + 1)

    def bare_one_transaction() -> None:
        with transaction.atomic():
            bare_commit_per_item()

    def one_bulk_update() -> None:
        Ticket.objects.filter(event=event).update(reissue_count=F("reissue_count") + 1)

    seconds = side_by_side(
        lambda: timed(seed_style),
        lambda: timed(bare_commit_per_item),
        lambda: timed(bare_one_transaction),
        lambda: timed(one_bulk_update),
        lambda: engine_run("bench_update", event),
        lambda: engine_run("bench_bulk_update", event),
    )
    baseline, commit_per_item, one_transaction, one_update, per_item, bulk = (items / each for each in seconds)
    report("seeds' approach (commit + Redis progress per item)", f"{baseline:,.0f} items/s")
    report("bare loop, a commit per item", f"{commit_per_item:,.0f} items/s")
    report(
        "bare loop, one transaction (the limit for item-by-item work)",
        f"{one_transaction:,.0f} items/s = {one_transaction / baseline:.1f}x the seeds'",
    )
    report("one bulk UPDATE (the limit for a bulk handler)", f"{one_update:,.0f} items/s")
    report(
        "engine, per-item handler",
        f"{per_item:,.0f} items/s = {per_item / baseline:.1f}x the seeds' "
        f"= {per_item / one_transaction:.2f} of the bare loop in one transaction",
        "≥ 3x",
        per_item / baseline >= 3,
    )
    measured = f"{bulk:,.0f} items/s = {bulk / baseline:.0f}x the seeds' = {bulk / one_update:.2f} of one bulk UPDATE"
    report("engine, bulk handler", measured, "≥ 50x", bulk / baseline >= 50)


# --- 3. start latency -----------------------------------------------------------------------
def start_latency(big: Event) -> None:
    print("3. Start latency (POST /api/batches, through the whole Django stack)", flush=True)
    _, raw = create_token(bench_user(), "bench")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for label, event in [("10 items", event_with(10)), ("1,000,000 items", big)]:
        reset(event)
        samples = []
        for _ in range(60):
            started = time.perf_counter()
            response = client.post(
                "/api/batches",
                {"operation": "reissue_tickets", "params": {"event_id": event.pk}},
                content_type="application/json",
            )
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 202, response.content
            end_batch(response.json()["id"], BatchStatus.CANCELLED)
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        report(f"start, {label}", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", "p99 < 100 ms", p99 < 100)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


# --- 4. polling cost ------------------------------------------------------------------------
POLLERS = 200


def polling_cost() -> None:
    print(f"4. Polling cost ({POLLERS} pollers against gunicorn, as docker-compose runs it)", flush=True)
    event = event_with(10)
    reset(event)
    batch = Batch.objects.create(
        operation="reissue_tickets",
        scope_key=f"event:{event.pk}",
        scope_label=event.name,
        params={"event_id": event.pk},
        status=BatchStatus.RUNNING,
        total=10,
        done_count=4,
        created_by=bench_user(),
        started_at=datetime.now(UTC),
    )
    client = Client()
    client.force_login(bench_user())
    poll = f"/batches/{batch.pk}/progress/?shown=running"
    with CaptureQueriesContext(connection) as queries:
        assert client.get(poll, headers={"HX-Request": "true"}).status_code == 200
    report("queries per progress poll", str(len(queries)), "≤ 3", len(queries) <= 3)

    wrk = shutil.which("wrk")
    if wrk is None:
        report(f"{POLLERS} pollers", "not measured: wrk is not installed (apt-get install wrk)", "p99 < 50 ms", False)
        return
    session = client.cookies["sessionid"].value
    # The web command of docker-compose.yml (3 processes), with the bench's reference view.
    env = {"DJANGO_SETTINGS_MODULE": "bench.settings", "CONN_MAX_AGE": "60"}
    with tempfile.TemporaryDirectory() as tmp, gunicorn(Path(tmp) / "gunicorn.log", workers=3, **env) as base:
        script = Path(tmp) / "poll.lua"
        # Each connection is an open page polling about once a second; the jitter spreads them
        # as independent pages are, instead of 200 requests landing in the same millisecond.
        script.write_text(
            f'wrk.headers["Cookie"] = "sessionid={session}"\n'
            'wrk.headers["HX-Request"] = "true"\n'
            "function delay() return math.random(500, 1500) end\n"
        )
        floor = _wrk(wrk, script, base + "/bench/signed-in/")
        ours = _wrk(wrk, script, base + poll)
    report(
        f"{POLLERS} pollers, the cheapest signed-in page (session + user, no template)",
        f"p50 {floor.p50:.1f} ms, p99 {floor.p99:.1f} ms, {floor.requests} requests, {floor.errors} errors",
    )
    report(
        f"{POLLERS} pollers, the progress poll",
        f"p50 {ours.p50:.1f} ms, p99 {ours.p99:.1f} ms, {ours.requests} requests, {ours.errors} errors",
        "p99 < 50 ms",
        ours.p99 < 50 and not ours.errors,
    )


@dataclass
class Load:
    p50: float
    p99: float
    requests: int
    errors: int


def _wrk(wrk: str, script: Path, url: str) -> Load:
    run = subprocess.run(
        [wrk, "-t2", f"-c{POLLERS}", "-d20s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
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
    )


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


# --- 5 and 6. real worker processes ---------------------------------------------------------
def worker(**env: str) -> WorkerProcess:
    """A `rundramatiq` process on the bench database, logging at INFO ("Worker process is ready")."""
    return WorkerProcess(Path(tempfile.mkdtemp(prefix="bench-worker-")) / "worker.log", LOG_LEVEL="INFO", **env)


def finished(batch_id: int) -> bool:
    return not Batch.objects.filter(pk=batch_id).active().exists()


def largest_child_rss_mb(process: subprocess.Popen[bytes]) -> float:
    """The largest resident set of a worker's processes (the children of its master)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    largest = 0.0
    for pid in children.read_text().split() if children.exists() else []:
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
            largest = max(largest, int(match.group(1)) / 1024 if match else 0)
    return largest


def scale(big: Event) -> None:
    print("5. Scale: a 1,000,000-item batch on a real worker (the demo's bulk handler)", flush=True)
    reset(big)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    workers = worker(DEMO_ITEM_DELAY_MS="0", DEMO_FAIL_EVERY="0")
    rss: list[tuple[int, float]] = []
    seen: list[float] = []
    try:
        workers.start(threads=2)
        workers.wait_ready()
        batch = start_batch(operation="reissue_tickets", data={"event_id": big.pk}, user=bench_user()).batch
        started = time.monotonic()
        last = -1
        while True:
            current = Batch.objects.filter(pk=batch.pk).values_list("done_count", "status").get()
            now = time.monotonic()
            if current[0] != last:
                seen.append(now)
                last = current[0]
            rss.append((current[0], largest_child_rss_mb(workers.process)))
            if current[1] not in (BatchStatus.QUEUED, BatchStatus.RUNNING):
                break
            assert now - started < 600, "the million-item batch took over 10 minutes"
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        workers.stop()
    batch.refresh_from_db()
    exact = batch.done_count == 1_000_000 == Ticket.objects.filter(event=big, reissue_count=1).count()
    gaps = [later - earlier for earlier, later in pairwise(seen[1:])]
    peak = max(mb for _, mb in rss)
    early = next((mb for done, mb in rss if done >= 250_000), peak)
    report(
        "1,000,000 items: time, to the first progress (planning)",
        f"{elapsed:.1f} s ({1_000_000 / elapsed:,.0f} items/s); first progress after {seen[1] - started:.1f} s"
        if len(seen) > 1
        else f"{elapsed:.1f} s",
        "every item exactly once",
        exact,
    )
    report(
        "worker peak RSS",
        f"{peak:.0f} MB (at 25%: {early:.0f} MB)",
        "< 200 MB, flat",
        peak < 200 and peak - early < 20,
    )
    report(
        "largest gap between progress updates seen by a poller",
        f"{max(gaps):.2f} s" if gaps else "n/a",
        "≤ 1 s",
        bool(gaps) and max(gaps) <= 1.0,
    )


def fan_out() -> None:
    print("6. Fan-out: two worker processes vs one, I/O-bound items (2,000 x 5 ms)", flush=True)
    event = event_with(2_000)
    times = {}
    for processes in (1, 2):
        reset(event)
        redis.Redis.from_url(settings.REDIS_URL).flushdb()
        workers = worker(DEMO_ITEM_DELAY_MS="5", DEMO_FAIL_EVERY="0")
        try:
            workers.start(threads=1, processes=processes)
            workers.wait_ready()
            started = time.monotonic()
            batch = start_batch(operation="reissue_tickets", data={"event_id": event.pk}, user=bench_user()).batch
            wait_until(functools.partial(finished, batch.pk), timeout=300, what="the batch to finish")
            times[processes] = time.monotonic() - started
        finally:
            workers.stop()
        batch.refresh_from_db()
        assert batch.done_count == 2_000 == Ticket.objects.filter(event=event, reissue_count=1).count(), batch
    speedup = times[1] / times[2]
    report(
        "two processes ÷ one",
        f"{speedup:.2f}x ({times[1]:.1f} s vs {times[2]:.1f} s), totals exact",
        "≥ 1.8x",
        speedup >= 1.8,
    )


# --- the run --------------------------------------------------------------------------------
def machine() -> str:
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    memory = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    redis_version = redis.Redis.from_url(settings.REDIS_URL).info()["redis_version"]
    return (
        f"{os.cpu_count()} cores ({cpu.group(1) if cpu else platform.processor()}), "
        f"{int(memory.group(1)) / 1024 / 1024:.0f} GiB; Python {platform.python_version()}, "
        f"PostgreSQL {postgres}, Redis {redis_version}, Django {django.get_version()}"
    )


def write_results(started: datetime, seconds: float) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {started:%Y-%m-%d %H:%M} UTC, {seconds / 60:.1f} minutes. Machine: {machine()}.",
        "",
        f"Rows 1 and 2: the fastest of {ROUNDS} interleaved rounds of each contender.",
        "",
        "Where a row misses its target, README.md (Benchmarks) says what limits it.",
        "",
        "| row | measured | target | held |",
        "| --- | --- | --- | --- |",
    ]
    for row in ROWS:
        held = "—" if row.held is None else ("yes" if row.held else "**no**")
        lines.append(f"| {row.name} | {row.measured} | {row.target or '—'} | {held} |")
    (BASE_DIR / "bench" / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    started = datetime.now(UTC)
    clock = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    # The benchmark's own database and Redis db: start from no batches and no messages.
    Batch.objects.all().delete()
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    print(f"Machine: {machine()}\n", flush=True)
    overhead()
    against_the_seeds()
    big = event_with(1_000_000)
    start_latency(big)
    polling_cost()
    scale(big)
    fan_out()
    write_results(started, time.monotonic() - clock)
    missed = [row.name for row in ROWS if row.held is False]
    print(f"\nWrote bench/RESULTS.md. Targets missed: {', '.join(missed) if missed else 'none'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
