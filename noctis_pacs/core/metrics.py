"""The one metrics registry, built by the wiring and passed to each protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from noctis_pacs.core.audit_message import ExportStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Metrics:
    registry: CollectorRegistry
    dimse_operations: Counter
    dimse_duration: Histogram
    dimse_suboperations: Counter
    http_requests: Counter
    http_duration: Histogram
    stored_instances: Counter
    dimse_fast_path: Counter
    route_queue: Gauge
    route_oldest_seconds: Gauge
    route_deliveries: Counter

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def build_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=registry,
        dimse_operations=Counter(
            "noctis_dimse_operations",
            "DIMSE operations by service and status",
            ["operation", "status"],
            registry=registry,
        ),
        dimse_suboperations=Counter(
            "noctis_dimse_suboperations",
            "C-STORE sub-operations of C-MOVE and C-GET by outcome (completed, warning, failed)",
            ["operation", "outcome"],
            registry=registry,
        ),
        dimse_duration=Histogram(
            "noctis_dimse_duration_seconds",
            "DIMSE operation duration",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        http_requests=Counter(
            "noctis_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        ),
        http_duration=Histogram(
            "noctis_http_request_duration_seconds",
            "HTTP request duration by route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        stored_instances=Counter(
            "noctis_stored_instances",
            "Store outcomes by origin protocol and outcome",
            ["protocol", "outcome"],
            registry=registry,
        ),
        dimse_fast_path=Counter(
            "noctis_dimse_fast_path",
            "Cases a DIMSE fast path served (hit) or handed back to pynetdicom (fallback)",
            ["path", "outcome"],
            registry=registry,
        ),
        route_queue=Gauge(
            "noctis_route_queue",
            "Routing queue items by state (inbox: not yet routed; queued; dead letters)",
            ["state"],
            registry=registry,
        ),
        route_oldest_seconds=Gauge(
            "noctis_route_queue_oldest_seconds",
            "Age of the oldest routing item not yet delivered",
            registry=registry,
        ),
        route_deliveries=Counter(
            "noctis_route_deliveries",
            "Routing delivery outcomes (delivered, failed, dead)",
            ["outcome"],
            registry=registry,
        ),
    )


class _AuditExportCollector(Collector):
    def __init__(self, read: Callable[[], ExportStats | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.read()
        if stats is None:
            return
        records = CounterMetricFamily(
            "noctis_audit_syslog_records",
            "Audit records sent to the syslog collector, or dropped while it was unreachable",
            labels=["outcome"],
        )
        records.add_metric(["sent"], stats.sent)
        records.add_metric(["dropped"], stats.dropped)
        yield records
        yield CounterMetricFamily(
            "noctis_audit_syslog_connect_failures",
            "Failed attempts to connect or write to the syslog collector",
            value=stats.connect_failures,
        )
        yield GaugeMetricFamily(
            "noctis_audit_syslog_queued",
            "Audit records waiting for the syslog collector",
            value=stats.queued,
        )


def watch_audit_export(metrics: Metrics, read: Callable[[], ExportStats | None]) -> None:
    """Expose the syslog export's counters (``read`` answers ``None`` when it is off)."""
    metrics.registry.register(_AuditExportCollector(read))
