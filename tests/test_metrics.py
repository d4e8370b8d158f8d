"""How /metrics adds other processes' metric families (DIMSE workers) to its own."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from noctis_pacs.core.metrics import Metrics, build_metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for sample in family.samples
    }


def test_counters_and_histograms_add_up_and_gauges_stay_the_serving_processes() -> None:
    serving, worker = build_metrics(), build_metrics()
    serving.dimse_operations.labels(operation="C-ECHO", status="0x0000").inc(2)
    worker.dimse_operations.labels(operation="C-ECHO", status="0x0000").inc(3)
    # A label set only the worker has is added as it is.
    worker.dimse_operations.labels(operation="C-STORE", status="0xA700").inc()
    worker.dimse_duration.labels(operation="C-ECHO").observe(0.002)
    serving.dimse_duration.labels(operation="C-ECHO").observe(0.2)
    serving.route_queue.labels(state="queued").set(4)
    worker.route_queue.labels(state="queued").set(9)
    serving.add_source(lambda: [worker.families()])

    found = _samples(serving)
    echo = (("operation", "C-ECHO"), ("status", "0x0000"))
    assert found[("noctis_dimse_operations_total", echo)] == 5
    assert (
        found[("noctis_dimse_operations_total", (("operation", "C-STORE"), ("status", "0xA700")))]
        == 1
    )
    assert found[("noctis_dimse_duration_seconds_count", (("operation", "C-ECHO"),))] == 2
    bucket = (("le", "0.0025"), ("operation", "C-ECHO"))
    assert found[("noctis_dimse_duration_seconds_bucket", bucket)] == 1
    assert found[("noctis_route_queue", (("state", "queued"),))] == 4
    # The series began when the first process counted it.
    created = [
        s.value
        for m in (serving, worker)
        for f in m.registry.collect()
        for s in f.samples
        if s.name == "noctis_dimse_operations_created" and s.labels["operation"] == "C-ECHO"
    ]
    assert found[("noctis_dimse_operations_created", echo)] == min(created)


def test_without_other_processes_the_exposition_is_the_registrys() -> None:
    metrics = build_metrics()
    metrics.stored_instances.labels(protocol="dimse", outcome="stored").inc()
    assert metrics.exposition() == generate_latest(metrics.registry)
