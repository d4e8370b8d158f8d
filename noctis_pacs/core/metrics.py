"""The one metrics registry, built by the wiring and passed to each protocol."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Metric
from prometheus_client.registry import Collector

from noctis_pacs.core.audit_message import ExportStats

#: Another process's metric families (a DIMSE worker's), to add to this process's own.
MetricSource = Callable[[], list[list[Metric]]]

#: Families whose samples add up across processes; a gauge is the serving process's own.
_ADDITIVE = frozenset({"counter", "histogram", "summary"})

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
    #: Other processes whose counters this process's /metrics includes (DIMSE workers).
    sources: list[MetricSource] = field(default_factory=list)
    #: (operation, status label) -> its counter and duration histogram (``labels`` takes
    #: a lock and validates its arguments: a visible share of a C-ECHO round trip).
    _dimse_children: dict[tuple[str, str], tuple[Counter, Histogram]] = field(default_factory=dict)

    def add_source(self, source: MetricSource) -> None:
        self.sources.append(source)

    def dimse_operation_done(self, operation: str, status: str, seconds: float) -> None:
        """Count one DIMSE operation with its status label and observe its duration."""
        children = self._dimse_children.get((operation, status))
        if children is None:
            children = self._dimse_children[(operation, status)] = (
                self.dimse_operations.labels(operation=operation, status=status),
                self.dimse_duration.labels(operation=operation),
            )
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        if not self.sources:
            return generate_latest(self.registry)
        others = [families for source in self.sources for families in source()]
        return generate_latest(_Merged(self.registry, others))

    def families(self) -> list[Metric]:
        """This process's own metric families, as a worker reports them."""
        return list(self.registry.collect())


class _Merged(Collector):
    """This process's registry with other processes' counters and histograms added."""

    def __init__(self, registry: CollectorRegistry, others: list[list[Metric]]) -> None:
        self.registry = registry
        self.others = others

    def collect(self) -> Iterator[Metric]:
        return iter(merge_families(self.registry.collect(), self.others))


def merge_families(own: Iterable[Metric], others: list[list[Metric]]) -> list[Metric]:
    """``own`` with the samples of ``others`` added, per metric family and label set.

    Counters, histograms and summaries add up (their ``_created`` timestamp is the
    earliest); gauges and families this process does not have are left out: a
    gauge's meaning (a queue length, an age) is the serving process's.
    """
    merged = list(own)
    by_name = {family.name: family for family in merged if family.type in _ADDITIVE}
    for families in others:
        for family in families:
            mine = by_name.get(family.name)
            if mine is None or family.type != mine.type:
                continue
            where = {
                (s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(mine.samples)
            }
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                at = where.get(key)
                if at is None:
                    where[key] = len(mine.samples)
                    mine.samples.append(sample)
                    continue
                ours = mine.samples[at]
                value = (
                    min(ours.value, sample.value)
                    if sample.name.endswith("_created")
                    else ours.value + sample.value
                )
                mine.samples[at] = ours._replace(value=value)
    return merged


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
