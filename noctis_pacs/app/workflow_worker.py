"""The workflow worker: study tracking, stability and webhook delivery.

Started by the wiring next to HTTP and DIMSE, with the storage objects it
drives (``storage.tracking.workflow_backends``).  Each poll it (1) records
studies whose ``updated_at`` changed since it last looked, linking them to
their worklist item, (2) marks studies stable after
``workflow.stable_after_seconds`` without a new instance, (3) POSTs due
webhook deliveries.  All state is in the index; every step is safe with
several processes polling the same index (see ``storage.tracking`` and
``storage.workflow_events``).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any, Protocol

from noctis_pacs.core.settings import Settings, WorkflowSettings
from noctis_pacs.core.workflow.events import DELIVERY_HEADER, EVENT_HEADER

log = logging.getLogger("noctis.workflow")


class Delivery(Protocol):
    """One pending webhook delivery (``storage.workflow_events.Delivery``)."""

    @property
    def delivery_id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def event(self) -> Any: ...


class Tracker(Protocol):
    """Study tracking over the index (``storage.tracking.StudyTracker``)."""

    #: The index (``is_unavailable`` tells an outage from a bug).
    db: Any

    def scan(self) -> int: ...
    def mark_stable(self, stable_after_seconds: float) -> int: ...


class DeliveryLog(Protocol):
    """Webhook deliveries kept in the index (``storage.workflow_events.EventLog``)."""

    def due(self, limit: int = ...) -> Any: ...
    def claim(self, delivery: Any, lease_seconds: float) -> bool: ...
    def delivered(self, delivery: Any) -> None: ...
    def failed(self, delivery: Any, error: str, *, retry_in: float | None) -> None: ...


def retry_delay(workflow: WorkflowSettings, attempts: int) -> float | None:
    """Exponential backoff after ``attempts`` failed attempts; ``None``: give up."""
    if workflow.webhook_max_attempts and attempts >= workflow.webhook_max_attempts:
        return None
    delay = workflow.webhook_retry_initial_seconds * 2 ** max(attempts - 1, 0)
    return float(min(delay, workflow.webhook_retry_max_seconds))


def post(delivery: Delivery, timeout: float) -> str | None:
    """POST one delivery; ``None`` on a 2xx answer, else what went wrong."""
    body = json.dumps(
        {"delivery_id": delivery.delivery_id, "event": delivery.event.as_json()}
    ).encode("utf-8")
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            DELIVERY_HEADER: delivery.delivery_id,
            EVENT_HEADER: delivery.event.kind,
            "User-Agent": "noctis-pacs-webhook",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return None if 200 <= status < 300 else f"HTTP {status}"


class WorkflowWorker:
    """One background thread per process; ``start`` / ``stop`` by the wiring."""

    def __init__(self, settings: Settings, *, tracker: Tracker, deliveries: DeliveryLog) -> None:
        self.settings = settings
        self.workflow = settings.workflow
        self.tracker = tracker
        self.events = deliveries
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="workflow-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.workflow.webhook_timeout_seconds + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception as exc:
                if not self.tracker.db.is_unavailable(exc):
                    log.exception("workflow poll failed; retrying")
                else:  # an index outage (issue 14): one line, no traceback
                    log.warning("workflow poll skipped: the index is unavailable; retrying")
            self._stop.wait(self.workflow.poll_interval_seconds)

    def poll(self) -> None:
        """One round: tracking, stability, deliveries."""
        self.tracker.scan()
        stable = self.tracker.mark_stable(self.workflow.stable_after_seconds)
        if stable:
            log.info("%d study(ies) became stable", stable)
        self.deliver()

    def deliver(self) -> int:
        delivered = 0
        lease = self.workflow.webhook_timeout_seconds * 2 + 5
        for delivery in self.events.due():
            if self._stop.is_set():
                break
            if not self.events.claim(delivery, lease):
                continue
            error = post(delivery, self.workflow.webhook_timeout_seconds)
            if error is None:
                self.events.delivered(delivery)
                delivered += 1
                log.info("webhook delivery %s delivered", delivery.delivery_id)
                continue
            delay = retry_delay(self.workflow, delivery.attempts + 1)
            self.events.failed(delivery, error, retry_in=delay)
            if delay is None:
                log.warning(
                    "webhook delivery %s given up after %d attempts: %s",
                    delivery.delivery_id,
                    delivery.attempts + 1,
                    error,
                )
            else:
                log.info(
                    "webhook delivery %s failed (%s); retry in %.1fs",
                    delivery.delivery_id,
                    error,
                    delay,
                )
        return delivered
