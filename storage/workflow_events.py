"""Workflow events and their webhook deliveries, kept in the index.

An event row is written in the same transaction as the change it announces,
with one delivery row per configured webhook URL (one delivery id per event
and URL).  Deliveries stay in the index until delivered, so they survive a
restart; any number of processes may deliver: a delivery is claimed by a
conditional UPDATE (a lease), so at most one process attempts it at a time,
and a process that dies mid-attempt only delays it until the lease ends
(at-least-once).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from noctis_pacs.core.auth import DEFAULT_FACILITY
from storage.db import Connection, Database
from storage.workflow_sql import W

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def now_iso(at: datetime | None = None) -> str:
    """Timestamps as ISO text in UTC (the format of ``studies.updated_at``; sorts as text)."""
    return (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def later_iso(seconds: float) -> str:
    return now_iso(datetime.now(UTC) + timedelta(seconds=seconds))


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    subject: str
    payload: Mapping[str, Any]
    created_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "created_at": self.created_at,
            "data": dict(self.payload),
        }


@dataclass(frozen=True)
class Delivery:
    id: int
    delivery_id: str
    url: str
    attempts: int
    next_attempt_at: str
    event: Event


def emit(
    conn: Connection,
    *,
    kind: str,
    subject: str,
    payload: Mapping[str, Any],
    webhooks: Sequence[str],
) -> int:
    """Record an event (and its deliveries) inside the caller's transaction."""
    now = now_iso()
    row = conn.one(
        W("event_insert"),
        {"kind": kind, "subject": subject, "payload": json.dumps(dict(payload)), "now": now},
    )
    event_id = int(row[0])
    facility = facility_of(conn, payload)
    if facility != DEFAULT_FACILITY:
        conn.execute(
            "UPDATE workflow_events SET facility = :f WHERE id = :id",
            {"f": facility, "id": event_id},
        )
    for url in webhooks:
        conn.execute(
            W("delivery_insert"),
            {"delivery_id": str(uuid.uuid4()), "event_fk": event_id, "url": url, "now": now},
        )
    return event_id


def facility_of(conn: Connection, payload: Mapping[str, Any]) -> str:
    """An event's facility (the event stream shows it to that facility's principals): its
    study's when the study is indexed, else its worklist item's, else ``default``."""
    study_uid = payload.get("study_instance_uid")
    if study_uid:
        row = conn.one("SELECT facility FROM studies WHERE study_uid = :u", {"u": study_uid})
        if row is not None:
            return str(row[0])
    item_uid = payload.get("item_id")
    if item_uid:
        row = conn.one("SELECT facility FROM worklist_items WHERE item_uid = :u", {"u": item_uid})
        if row is not None:
            return str(row[0])
    return DEFAULT_FACILITY


def _event(row: Sequence[Any]) -> Event:
    return Event(int(row[0]), row[1], row[2], json.loads(row[3]), row[4])


class EventLog:
    """Reads events (for SSE) and drives webhook deliveries."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def last_id(self) -> int:
        with self.db.reader() as conn:
            return int(conn.one(W("events_last_id"))[0])

    def after(
        self, event_id: int, limit: int = 100, *, facilities: frozenset[str] = frozenset()
    ) -> list[Event]:
        """Events after ``event_id``; with ``facilities``, only theirs (a scoped principal)."""
        with self.db.reader() as conn:
            if not facilities:
                rows = conn.all(W("events_after"), {"after": event_id, "limit": limit})
            else:
                names = sorted(facilities)
                marks = ", ".join(f":f{n}" for n in range(len(names)))
                rows = conn.all(
                    "SELECT id, kind, subject, payload, created_at FROM workflow_events"
                    f" WHERE id > :after AND facility IN ({marks}) ORDER BY id LIMIT :limit",
                    {
                        "after": event_id,
                        "limit": limit,
                        **{f"f{n}": name for n, name in enumerate(names)},
                    },
                )
        return [_event(r) for r in rows]

    def due(self, limit: int = 20) -> list[Delivery]:
        with self.db.reader() as conn:
            rows = conn.all(W("deliveries_due"), {"now": now_iso(), "limit": limit})
        return [Delivery(int(r[0]), r[1], r[2], int(r[3]), r[4], _event(r[5:10])) for r in rows]

    def claim(self, delivery: Delivery, lease_seconds: float) -> bool:
        """Take ``delivery`` for one attempt; false when another process has it."""

        def work(conn: Connection) -> int:
            params = {
                "id": delivery.id,
                "expected": delivery.next_attempt_at,
                "lease_until": later_iso(lease_seconds),
            }
            return conn.execute(W("delivery_claim"), params).rowcount

        return self.db.transaction(work) == 1

    def delivered(self, delivery: Delivery) -> None:
        self.db.transaction(
            lambda conn: conn.execute(W("delivery_done"), {"id": delivery.id, "now": now_iso()})
        )

    def failed(self, delivery: Delivery, error: str, *, retry_in: float | None) -> None:
        """Schedule the next attempt, or give up (``retry_in`` None: status ``failed``)."""
        params = {
            "id": delivery.id,
            "status": PENDING if retry_in is not None else FAILED,
            "next_attempt_at": later_iso(retry_in or 0.0),
            "error": error[:500],
        }
        self.db.transaction(lambda conn: conn.execute(W("delivery_retry"), params))

    def summary(self) -> dict[str, int]:
        with self.db.reader() as conn:
            rows = conn.all(W("deliveries_summary"))
        out = {PENDING: 0, DELIVERED: 0, FAILED: 0}
        out.update({r[0]: int(r[1]) for r in rows})
        return out
