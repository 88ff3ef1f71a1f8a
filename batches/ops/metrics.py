"""/metrics in the Prometheus text format, read from Postgres at each scrape.

Everything here is counted from the tables, not from a process's memory: the counters survive
restarts and deploys, and any web process answers the same. A scrape costs four aggregate
queries over the batches and the worker registry. The worker's own figures (messages, their
durations, errors) are Dramatiq's Prometheus middleware on the worker (DRAMATIQ_PROMETHEUS=1).

Who may read it: 127.0.0.1 and ::1 by default; otherwise the addresses and networks in
BATCHES_METRICS_ALLOWED_ADDRESSES, or a request bearing BATCHES_METRICS_TOKEN (Authorization: Bearer ...).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from batches.clients import client_address
from batches.conf import batches_settings
from batches.engine.workers import silence
from batches.models import ACTIVE_STATUSES, Batch, BatchStatus, Worker

# Seconds: a batch takes from seconds (a small event) to hours (a million items).
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


class BatchCollector:
    """The engine's figures, from Postgres, at each scrape."""

    def collect(self) -> Iterator[Metric]:
        yield from self._batches_and_items()
        yield self._durations()
        yield self._oldest_queued()
        yield from self._workers()

    def _batches_and_items(self) -> Iterator[Metric]:
        """Batches by status and operation, and items done and failed by operation: one query."""
        batches = GaugeMetricFamily("batches", "Batches by status and operation.", labels=["operation", "status"])
        items: dict[str, list[int]] = {}
        rows = (
            Batch.objects.values_list("operation", "status")
            .annotate(n=Count("id"), d=Sum("done_count"), f=Sum("failed_count"))
            .order_by()
        )
        for operation, status, count, items_done, items_failed in rows:
            batches.add_metric([operation, status], count)
            totals = items.setdefault(operation, [0, 0])
            totals[0] += items_done or 0
            totals[1] += items_failed or 0
        done = CounterMetricFamily("batches_items_done", "Items done, by operation.", labels=["operation"])
        failed = CounterMetricFamily("batches_items_failed", "Items failed, by operation.", labels=["operation"])
        for operation, (items_done, items_failed) in items.items():
            done.add_metric([operation], items_done)
            failed.add_metric([operation], items_failed)
        yield batches
        yield done
        yield failed

    def _durations(self) -> Metric:
        family = HistogramMetricFamily(
            "batches_batch_duration_seconds",
            "From planned to ended, for ended batches, by operation.",
            labels=["operation"],
        )
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        buckets = {
            f"le_{i}": Count("id", filter=Q(d__lte=timedelta(seconds=le))) for i, le in enumerate(DURATION_BUCKETS)
        }
        rows = (
            Batch.objects.exclude(status__in=ACTIVE_STATUSES)
            .filter(started_at__isnull=False, finished_at__isnull=False)
            .annotate(d=duration)
            .values("operation")
            .annotate(n=Count("id"), total=Sum("d"), **buckets)
            .order_by()
        )
        for row in rows:
            counts = [(str(float(le)), row[f"le_{i}"]) for i, le in enumerate(DURATION_BUCKETS)]
            total = row["total"].total_seconds() if row["total"] else 0.0
            family.add_metric([row["operation"]], [*counts, ("+Inf", row["n"])], sum_value=total)
        return family

    def _oldest_queued(self) -> Metric:
        oldest = Batch.objects.filter(status=BatchStatus.QUEUED).aggregate(at=Min("created_at"))["at"]
        age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        return GaugeMetricFamily(
            "batches_oldest_queued_age_seconds", "How long the oldest queued batch has waited (0: none).", value=age
        )

    def _workers(self) -> Iterator[Metric]:
        live = Worker.objects.alive(timezone.now(), silence()).aggregate(n=Count("id"), threads=Sum("threads"))
        yield GaugeMetricFamily("batches_workers_live", "Worker processes heartbeating.", value=live["n"])
        yield GaugeMetricFamily(
            "batches_worker_threads_live", "Worker threads of the live processes.", value=live["threads"] or 0
        )


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BatchCollector())
    return registry


def _networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in batches_settings.METRICS_ALLOWED_ADDRESSES]


def may_scrape(request: HttpRequest) -> bool:
    token = batches_settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(address in network for network in _networks())


def metrics(request: HttpRequest) -> HttpResponse:
    if not may_scrape(request):
        return HttpResponse(
            "Metrics are served to the addresses in BATCHES_METRICS_ALLOWED_ADDRESSES (127.0.0.1 by default) "
            "and to requests bearing BATCHES_METRICS_TOKEN.\n",
            status=403,
            content_type="text/plain",
        )
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)
