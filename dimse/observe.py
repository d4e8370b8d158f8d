"""Per-association log context and per-operation metrics, shared by the services."""

from __future__ import annotations

import time
from typing import Any

from dimse.status import operation_status_label
from noctis_pacs.logs import context_id
from noctis_pacs.metrics import Metrics


def bind_context(event: Any) -> None:
    """Tag log lines of this (association) thread with the association id."""
    context_id.set(f"dimse:{event.assoc.name}")


class Operation:
    """Times one DIMSE operation and counts it with its final status."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.metrics = metrics
        self.name = name
        self.started = time.perf_counter()

    def done(self, status: int) -> None:
        self.metrics.dimse_operations.labels(
            operation=self.name, status=operation_status_label(status)
        ).inc()
        self.metrics.dimse_duration.labels(operation=self.name).observe(
            time.perf_counter() - self.started
        )
