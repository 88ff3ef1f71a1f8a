"""/healthz and /readyz for orchestrators, and the compose healthchecks that use them.

Each dependency is taken away in turn without touching the shared services: the broker and the
database by pointing at a closed port, a migration by forgetting that it was applied."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dramatiq
import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

from batches.ops import health
from tests.support import BASE_DIR, free_port, subprocess_env, wait_until, web_server

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_migrations_check() -> Iterator[None]:
    health.forget_migrations_check()
    yield
    health.forget_migrations_check()


@pytest.fixture
def broker_of_dramatiq(monkeypatch) -> Callable[[dramatiq.Broker], None]:
    """Make `broker` the one Dramatiq sends to, which is the broker /readyz checks."""
    return lambda broker: monkeypatch.setattr(dramatiq, "get_broker", lambda: broker)


def closed_redis(password: str = "") -> RedisBroker:
    auth = f":{password}@" if password else ""
    return RedisBroker(url=f"redis://{auth}127.0.0.1:{free_port()}/0", middleware=[])


def compose_healthcheck(service: str) -> list[str]:
    test = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())["services"][service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return [sys.executable if part == "python" else part for part in test[1:]]


@pytest.mark.both_backends
def test_healthz_answers_anyone_at_once_without_the_database(client, settings, django_assert_num_queries):
    settings.SECURE_SSL_REDIRECT = True  # a probe over plain HTTP is not redirected
    with django_assert_num_queries(0):
        response = client.get("/healthz", HTTP_HOST="10.0.0.7:8000")  # a pod address, not in ALLOWED_HOSTS
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.both_backends
def test_readyz_is_ok_when_the_database_the_migrations_and_the_broker_are(client):
    response = client.get("/readyz", HTTP_HOST="10.0.0.7:8000")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "migrations", "broker"}


def test_readyz_names_an_unreachable_redis_broker(client, broker_of_dramatiq):
    broker_of_dramatiq(closed_redis(password="secret"))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"].startswith("redis unreachable")
    assert "secret" not in response.content.decode()


def test_readyz_names_an_unreachable_rabbitmq_broker(client, broker_of_dramatiq):
    broker_of_dramatiq(RabbitmqBroker(url=f"amqp://guest:secret@127.0.0.1:{free_port()}/%2F", middleware=[]))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
    assert "secret" not in response.content.decode()


def test_readyz_names_a_migration_not_applied(client):
    (latest,) = (name for app, name in MigrationLoader(connection).graph.leaf_nodes() if app == "batches")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = 'batches' AND name = %s", [latest])
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["migrations"]
    assert f"batches.{latest}" in body["checks"]["migrations"]


def test_readyz_tells_only_the_metrics_allow_list_what_failed(client, settings, broker_of_dramatiq):
    stranger = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/readyz", **stranger).json() == {"status": "ok"}

    health.forget_migrations_check()
    broker_of_dramatiq(closed_redis())
    settings.BATCHES_METRICS_TOKEN = "scraper-token"
    refused = client.get("/readyz", **stranger)
    assert refused.status_code == 503 and refused.json() == {"status": "unavailable"}
    for allowed in ({}, {**stranger, "HTTP_AUTHORIZATION": "Bearer scraper-token"}):
        assert client.get("/readyz", **allowed).json()["failed"] == ["broker"]


def test_readyz_answers_from_its_kept_result_however_many_ask(client, django_assert_num_queries, monkeypatch):
    monkeypatch.setattr(health, "READY_RESULT_SECONDS", 3600)  # a slow machine must not make it expire
    assert client.get("/readyz").status_code == 200
    with django_assert_num_queries(0):
        answers = [client.get("/readyz") for _ in range(20)]
    assert {answer.status_code for answer in answers} == {200}


def test_readyz_keeps_one_redis_connection_instead_of_opening_one_a_call(client, settings, monkeypatch):
    if settings.BROKER_KIND != "redis":
        pytest.skip("the tests' broker is not Redis")
    import redis.connection

    opened = []
    connect = redis.connection.Connection._connect  # opens the socket

    def counted(self):
        opened.append(self)
        return connect(self)

    monkeypatch.setattr(redis.connection.Connection, "_connect", counted)
    for _ in range(50):
        health.forget_migrations_check()  # no result kept: every call checks the broker
        assert client.get("/readyz").status_code == 200
    assert len(opened) <= 1


def test_probes_take_get_only(client):
    assert client.post("/readyz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_the_web_healthcheck_of_compose_fails_while_postgres_is_down_and_passes_when_it_is_up(tmp_path: Path):
    """Through the web command itself (granian), whose access log leaves out the answered probes."""
    check = compose_healthcheck("web")
    closed = f"postgres://postgres@127.0.0.1:{free_port()}/batches"
    with web_server(tmp_path / "down.log", workers=1, threads=2, DATABASE_URL=closed) as base:
        assert urllib.request.urlopen(base + "/healthz", timeout=10).status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/readyz", timeout=10)
        assert refused.value.code == 503
        assert json.loads(refused.value.read())["failed"] == ["database"]
        probe = [part.replace("http://127.0.0.1:8000", base) for part in check]
        assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0

    with web_server(tmp_path / "up.log", workers=1, threads=2) as base:
        probe = [part.replace("http://127.0.0.1:8000", base) for part in check]
        ran = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        assert ran.returncode == 0, ran.stderr
        assert urllib.request.urlopen(base + "/healthz", timeout=10).status == 200
        assert urllib.request.urlopen(base + "/accounts/login/", timeout=10).status == 200
        log = tmp_path / "up.log"
        wait_until(lambda: '"GET /accounts/login/ HTTP/1.1" 200' in log.read_text(), what="the access log line")
        assert "/readyz" not in log.read_text() and "/healthz" not in log.read_text(), "answered probes are no news"
    assert '"GET /readyz HTTP/1.1" 503' in (tmp_path / "down.log").read_text(), "a failing probe is"


def test_the_worker_healthcheck_of_compose_is_the_registry_heartbeat(worker_process):
    check = compose_healthcheck("worker")
    # The check counts a worker silent for 3 s as dead; the worker beats every 0.5 s.
    check_env = subprocess_env(BATCHES_WORKER_SILENCE_SECONDS="3")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(check, cwd=BASE_DIR, env=check_env, capture_output=True, text=True, timeout=60)

    before = run()
    assert before.returncode == 1
    assert "no live worker" in before.stdout

    worker = worker_process(BATCHES_WORKER_HEARTBEAT_SECONDS="0.5")
    worker.wait_ready()
    wait_until(lambda: run().returncode == 0, timeout=30, what="the worker healthcheck to pass")

    worker.kill()  # no goodbye: only the heartbeat's silence tells
    wait_until(lambda: run().returncode == 1, timeout=30, what="the worker healthcheck to fail")


def test_the_health_command_runs_the_readiness_checks(broker_of_dramatiq, capsys):
    call_command("batches", "health")
    assert capsys.readouterr().out.splitlines()[0] == "database: ok"
    broker_of_dramatiq(closed_redis())
    with pytest.raises(SystemExit) as failed:
        call_command("batches", "health")
    assert failed.value.code == 1
    assert "broker: redis unreachable" in capsys.readouterr().out
