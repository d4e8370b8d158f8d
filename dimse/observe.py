"""Per-association log context and per-operation metrics, shared by the services."""

from __future__ import annotations

import logging
import time

from pynetdicom.events import Event

from dimse.status import operation_status_label
from noctis_pacs.core.logs import context_id, scrub_uids
from noctis_pacs.core.metrics import Metrics

log = logging.getLogger("noctis.dimse")


def log_failure(operation: str, code: int, reason: str) -> None:
    """The one line a refused or failed DIMSE operation gets: its status and reason
    (UIDs scrubbed), on the association's context id; no traceback, since bad input
    and refused peers are expected."""
    log.warning("%s failed: status 0x%04X: %s", operation, code, scrub_uids(reason) or "-")


def bind_context(event: Event) -> None:
    """Tag log lines of this (association) thread with the association id."""
    context_id.set(f"dimse:{event.assoc.name}")


class Operation:
    """Times one DIMSE operation and counts it with its final status."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.metrics = metrics
        self.name = name
        self.started = time.perf_counter()

    def done(self, status: int) -> None:
        self.metrics.dimse_operation_done(
            self.name, operation_status_label(status), time.perf_counter() - self.started
        )


#: Responses waiting in an association's send queue before a C-FIND handler pauses.
SEND_QUEUE_LIMIT = 16


def paced(event: Event, limit: int = SEND_QUEUE_LIMIT) -> None:
    """Back-pressure for C-FIND answers: wait while the association's send queue is full.

    pynetdicom queues each response for its network thread; without a pause a fast
    handler queues every match (memory grows with the answer) before that thread reads
    a C-CANCEL (PS3.7 9.3.2.3), so the cancel would only ever arrive after the end.
    """
    dul = getattr(event.assoc, "dul", None)
    pending = getattr(dul, "to_provider_queue", None)
    if pending is None:
        return
    deadline = time.monotonic() + 30.0
    while pending.qsize() > limit and event.assoc.is_established:
        if time.monotonic() > deadline:
            return
        time.sleep(0.0005)
