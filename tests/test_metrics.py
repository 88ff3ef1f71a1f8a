"""/metrics: the engine's figures in the Prometheus text format, counted in Postgres, for the
addresses and token configured only; and the worker's Dramatiq exporter."""

from __future__ import annotations

import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from batches.models import Batch
from batches.services import start_batch
from tests.support import BASE_DIR, free_port, wait_until

pytestmark = pytest.mark.django_db


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, **extra: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


OP = (("operation", "mark_records"),)


@pytest.mark.django_db(transaction=True)
def test_the_metrics_move_when_a_batch_runs(client, worker_process, make_ledger, make_clerk, tmp_path):
    before = scrape(client)
    assert before[("batches_workers_live", ())] == 0
    assert ("batches_items_done_total", OP) not in before

    ledger = make_ledger(records=300)
    batch = start_batch(operation="mark_records", data={"ledger_id": ledger.pk}, user=make_clerk("alice")).batch
    queued = scrape(client)
    assert queued[("batches", (*OP, ("status", "queued")))] == 1
    assert queued[("batches_oldest_queued_age_seconds", ())] > 0

    port = free_port()
    worker = worker_process(
        RECORDS_ITEM_DELAY_MS="1",
        DRAMATIQ_PROMETHEUS="1",
        dramatiq_prom_host="127.0.0.1",
        dramatiq_prom_port=str(port),
        dramatiq_prom_db=str(tmp_path / "prometheus"),
    )
    wait_until(lambda: not Batch.objects.get(pk=batch.pk).is_active, timeout=120, what="the batch to end")

    after = scrape(client)
    assert after[("batches", (*OP, ("status", "finished")))] == 1
    assert ("batches", (*OP, ("status", "queued"))) not in after
    assert after[("batches_items_done_total", OP)] == 297
    assert after[("batches_items_failed_total", OP)] == 3
    assert after[("batches_batch_duration_seconds_count", OP)] == 1
    assert after[("batches_batch_duration_seconds_bucket", (("le", "+Inf"), *OP))] == 1
    assert after[("batches_oldest_queued_age_seconds", ())] == 0
    assert after[("batches_workers_live", ())] == 1
    assert after[("batches_worker_threads_live", ())] == 2

    # The worker's own exporter (compose's worker sets DRAMATIQ_PROMETHEUS=1): the message that
    # planned and ran this one-chunk batch is counted once it is done.
    # Beside them, how long each checkpoint took (the 300 items fit in one).
    runners = ("dramatiq_messages_total", (("actor_name", "plan_batch"), ("queue_name", "default")))
    checkpoints = ("batches_checkpoint_duration_seconds_count", OP)
    slower_than_30s = ("batches_checkpoint_duration_seconds_bucket", (("le", "30.0"), *OP))

    def exported() -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                found = samples(response.read().decode())
        except OSError:
            return None
        return found if found.get(runners, 0) >= 1 else None

    found = wait_until(exported, timeout=30, what="the worker's exporter to count the runners")
    assert found[checkpoints] >= 1, worker.log()
    assert found[slower_than_30s] == found[checkpoints]
    assert 0 < found[("batches_checkpoint_duration_seconds_sum", OP)] < 30 * found[checkpoints]


def test_refused_from_an_address_not_allowed(client):
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 403
    assert "METRICS_ALLOWED_ADDRESSES" in response.content.decode()
    assert "batches_" not in response.content.decode()


def test_a_proxied_outsider_is_not_local(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert response.status_code == 403


def test_allowed_networks_and_the_bearer_token(client, settings):
    settings.BATCHES_METRICS_ALLOWED_ADDRESSES = ["127.0.0.1", "10.1.0.0/16"]
    settings.BATCHES_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    outsider = {"REMOTE_ADDR": "198.51.100.9"}
    assert client.get("/metrics", **outsider, HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert client.get("/metrics", **outsider, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


@pytest.mark.both_backends
def test_served_to_a_scraper_by_its_service_name_over_plain_http(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    scrape(client, HTTP_HOST="web:8000")


def test_the_monitoring_file_scrapes_the_web_and_the_workers_it_may():
    compose = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
    monitoring = yaml.safe_load((BASE_DIR / "docker-compose.monitoring.yml").read_text())
    prometheus = monitoring["services"]["prometheus"]
    scrape_configs = yaml.safe_load((BASE_DIR / "monitoring" / "prometheus.yml").read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape_configs}

    assert jobs["batches-web"]["static_configs"][0]["targets"] == ["web:8000"]
    assert jobs["batches-worker"]["dns_sd_configs"][0] == {"names": ["worker"], "type": "A", "port": 9191}
    assert compose["services"]["worker"]["environment"]["DRAMATIQ_PROMETHEUS"] == "1"
    # Prometheus reaches both on its network, which they join only with the monitoring file.
    assert list(prometheus["networks"]) == ["monitoring"]
    assert "monitoring" in monitoring["services"]["web"]["networks"]
    assert "monitoring" in monitoring["services"]["worker"]["networks"]
    # Without it the web lets loopback alone in; with it, Prometheus' fixed address and nothing else of
    # the network (not its gateway, through which a proxy on the host forwards outside requests).
    assert compose["services"]["web"]["environment"]["METRICS_ALLOWED_ADDRESSES"] == "127.0.0.1,::1"
    allowed = monitoring["services"]["web"]["environment"]["METRICS_ALLOWED_ADDRESSES"].split(",")
    address = prometheus["networks"]["monitoring"]["ipv4_address"]
    assert address in allowed and allowed == ["127.0.0.1", "::1", address]
    assert address == "${PROMETHEUS_ADDRESS:-172.28.0.250}"
    assert monitoring["networks"]["monitoring"]["ipam"]["config"][0]["subnet"] == "${MONITORING_SUBNET:-172.28.0.0/16}"
