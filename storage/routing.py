"""The routing tables: rules, the inbox written at ingest, the durable delivery queue.

Ingest records a received instance in ``route_inbox`` inside its own index
transaction, and the study tracker records a stable study the same way, but
only while an enabled rule for that event exists (looked up at most every
``ACTIVE_TTL`` seconds), so an archive without rules pays nothing.  The router
(``noctis_pacs/app/router.py``) takes inbox rows (a row is taken by the one
process whose DELETE removes it, so several processes share the inbox), turns
them into queue items (one per instance and destination) in the same
transaction: nothing received is lost between the two.

Queue items are delivered per group (destination, study) in id order: a process
leases a group by its oldest item, which another process then cannot select
(PostgreSQL: ``FOR UPDATE SKIP LOCKED`` on that head row; SQLite: one writer).
A failed item is retried with exponential backoff until its rule's
``max_attempts``, then stays as a dead letter an admin can retry or drop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from noctis_pacs.core.routing import Rule
from storage.db import Connection, Database
from storage.sqlfiles import named_queries
from storage.workflow_events import later_iso, now_iso

#: Seconds an "is any rule enabled?" answer is reused by ingest.
ACTIVE_TTL = 2.0


def R(name: str) -> str:  # noqa: N802 - reads like a SQL lookup
    return named_queries("routing.sql")[name]


@dataclass(frozen=True)
class InboxRow:
    id: int
    on: str
    study_uid: str
    sop_uid: str
    calling_ae: str


@dataclass(frozen=True)
class QueueItem:
    id: int
    rule_name: str
    destination: str
    study_uid: str
    sop_uid: str
    attempts: int
    max_attempts: int


def _rule(row: Sequence[Any]) -> Rule:
    matches = json.loads(row[2])
    return Rule(
        name=row[0],
        on=row[1],
        matches=tuple(sorted((str(k), str(v)) for k, v in matches.items())),
        destinations=tuple(json.loads(row[3])),
        max_attempts=int(row[4]),
        enabled=bool(row[5]),
    )


class RoutingStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._active: tuple[float, frozenset[str]] = (0.0, frozenset())
        self._lock = threading.Lock()

    # -- rules --------------------------------------------------------------------------

    def rules(self) -> list[Rule]:
        with self.db.reader() as conn:
            return [_rule(r) for r in conn.all(R("rule_list"))]

    def add_rule(self, rule: Rule) -> bool:
        """Store ``rule``; ``False`` when a rule of that name exists."""

        def work(conn: Connection) -> bool:
            if conn.one(R("rule_exists"), {"name": rule.name}) is not None:
                return False
            conn.execute(
                R("rule_insert"),
                {
                    "name": rule.name,
                    "on_event": rule.on,
                    "matches": json.dumps(dict(rule.matches)),
                    "destinations": json.dumps(list(rule.destinations)),
                    "max_attempts": rule.max_attempts,
                    "enabled": int(rule.enabled),
                    "now": now_iso(),
                },
            )
            return True

        added = self.db.transaction(work)
        self._active = (0.0, frozenset())
        return added

    def remove_rule(self, name: str) -> bool:
        removed: int = self.db.transaction(
            lambda conn: conn.execute(R("rule_delete"), {"name": name}).rowcount
        )
        self._active = (0.0, frozenset())
        return removed > 0

    def active_events(self, conn: Connection | None = None) -> frozenset[str]:
        """Events some enabled rule fires on (cached ``ACTIVE_TTL`` seconds). Inside a
        transaction pass its ``conn``: on SQLite a reader shares the thread's connection
        and would end the transaction."""
        checked, events = self._active
        now = time.monotonic()
        if now - checked < ACTIVE_TTL:
            return events
        with self._lock:
            if conn is not None:
                events = frozenset(str(r[0]) for r in conn.all(R("any_enabled")))
            else:
                with self.db.reader() as reading:
                    events = frozenset(str(r[0]) for r in reading.all(R("any_enabled")))
            self._active = (now, events)
        return events

    # -- inbox --------------------------------------------------------------------------

    def record(
        self, conn: Connection, *, on: str, study_uid: str, sop_uid: str = "", calling_ae: str = ""
    ) -> None:
        """Inside the caller's transaction (ingest, stability): note the event for the
        router when a rule may want it."""
        if on not in self.active_events(conn):
            return
        conn.execute(
            R("inbox_insert"),
            {
                "on_event": on,
                "study_uid": study_uid,
                "sop_uid": sop_uid,
                "calling_ae": calling_ae,
                "now": now_iso(),
            },
        )

    def inbox(self, limit: int) -> list[InboxRow]:
        with self.db.reader() as conn:
            rows = conn.all(R("inbox_batch"), {"limit": limit})
        return [InboxRow(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def take(self, routed: Sequence[tuple[InboxRow, Sequence[tuple[Rule, str, str]]]]) -> int:
        """One transaction: each inbox row this process removes becomes its queue items
        ((rule, destination, sop_uid) each); rows another process took are skipped.
        Returns the number of items queued."""

        def work(conn: Connection) -> int:
            queued = 0
            now = now_iso()
            for row, targets in routed:
                if conn.execute(R("inbox_take"), {"id": row.id}).rowcount != 1:
                    continue
                for rule, destination, sop_uid in targets:
                    conn.execute(
                        R("queue_insert"),
                        {
                            "rule_name": rule.name,
                            "destination": destination,
                            "study_uid": row.study_uid,
                            "sop_uid": sop_uid,
                            "max_attempts": rule.max_attempts,
                            "now": now,
                        },
                    )
                    queued += 1
            return queued

        return self.db.transaction(work)

    # -- queue --------------------------------------------------------------------------

    def lease_group(self, owner: str, lease_seconds: float, limit: int) -> list[QueueItem]:
        """Lease the oldest due group (destination, study), at most ``limit`` items in id
        order; empty when nothing is due."""
        head_sql = R("queue_head")
        if self.db.dialect == "postgresql":
            head_sql += " FOR UPDATE SKIP LOCKED"
        lease_until = later_iso(lease_seconds)

        def work(conn: Connection) -> list[QueueItem]:
            now = now_iso()
            head = conn.one(head_sql, {"now": now})
            if head is None:
                return []
            group = {"destination": head[1], "study_uid": head[2]}
            last = conn.one(R("queue_group_last"), {**group, "offset": limit - 1})
            conn.execute(
                R("queue_lease_group"),
                {
                    **group,
                    "owner": owner,
                    "lease_until": lease_until,
                    "now": now,
                    "last_id": int(last[0]) if last else 2**62,
                },
            )
            rows = conn.all(R("queue_leased"), {"owner": owner, "lease_until": lease_until})
            return [
                QueueItem(int(r[0]), r[1], r[2], r[3], r[4], int(r[5]), int(r[6])) for r in rows
            ]

        return self.db.transaction(work)

    def settle(
        self,
        *,
        delivered: Iterable[int],
        failed: Iterable[tuple[QueueItem, str, float]],
    ) -> int:
        """Delivered items leave the queue; failed ones (item, error, retry delay) are
        retried later or become dead letters. Returns how many became dead."""
        done = [{"id": i} for i in delivered]
        failures = list(failed)

        def work(conn: Connection) -> int:
            if done:
                conn.executemany(R("queue_done"), done)
            dead = 0
            for item, error, delay in failures:
                conn.execute(
                    R("queue_failed"),
                    {"id": item.id, "error": error[:500], "next_attempt_at": later_iso(delay)},
                )
                dead += int(item.attempts + 1 >= item.max_attempts)
            return dead

        return self.db.transaction(work)

    def release(self, items: Iterable[QueueItem]) -> None:
        """Give back leased items not attempted (stopping, cancelled)."""
        rows = [{"id": item.id} for item in items]
        if rows:
            self.db.transaction(lambda conn: conn.executemany(R("queue_release"), rows))

    def release_orphans(self, host_prefix: str, alive: Callable[[str], bool]) -> int:
        """Release leases of owners named ``host_prefix...`` that ``alive`` says are gone
        (a process of this host that crashed or was killed): its items are due at once
        instead of after their lease."""
        return _release_orphans(self.db, "route_queue", host_prefix, alive)

    def summary(self) -> dict[str, Any]:
        """Queue depth, dead letters and the age of the oldest queued item (metrics)."""
        with self.db.reader() as conn:
            rows = conn.all(R("queue_summary"))
            inbox = conn.one("SELECT COUNT(*), MIN(created_at) FROM route_inbox")
        by_state = {str(r[0]): (int(r[1]), r[2]) for r in rows}
        queued, oldest = by_state.get("queued", (0, None))
        oldest_inbox = inbox[1]
        candidates = [t for t in (oldest, oldest_inbox) if t]
        age = 0.0
        if candidates:
            stamp = datetime.strptime(min(candidates), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - stamp).total_seconds())
        return {
            "queued": queued,
            "inbox": int(inbox[0]),
            "dead": by_state.get("dead", (0, None))[0],
            "oldest_seconds": round(age, 3),
        }

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        with self.db.reader() as conn:
            rows = conn.all(R("queue_dead"), {"limit": limit, "offset": offset})
        keys = ("id", "rule", "destination", "study_uid", "sop_uid", "attempts", "error")
        return [dict(zip((*keys, "created_at"), r, strict=True)) for r in rows]

    def retry_dead(self, ids: Sequence[int] | None) -> int:
        return self._dead(R("dead_retry"), ids)

    def drop_dead(self, ids: Sequence[int] | None) -> int:
        return self._dead(R("dead_drop"), ids)

    def _dead(self, sql: str, ids: Sequence[int] | None) -> int:
        def work(conn: Connection) -> int:
            chosen = ids if ids is not None else [int(r[0]) for r in conn.all(R("dead_ids"))]
            now = now_iso()
            return sum(conn.execute(sql, {"id": i, "now": now}).rowcount for i in chosen)

        changed: int = self.db.transaction(work)
        return changed


def _release_orphans(
    db: Database, table: str, host_prefix: str, alive: Callable[[str], bool]
) -> int:
    """Shared by the queue and the jobs: clear the leases of dead local owners."""
    pattern = host_prefix.replace("%", "") + "%"
    with db.reader() as conn:
        owners = [
            str(r[0])
            for r in conn.all(
                f"SELECT DISTINCT lease_owner FROM {table} WHERE lease_owner LIKE :p",  # noqa: S608
                {"p": pattern},
            )
        ]
    dead = [owner for owner in owners if not alive(owner)]
    if not dead:
        return 0

    def work(conn: Connection) -> int:
        return sum(
            conn.execute(
                f"UPDATE {table} SET lease_until = '' WHERE lease_owner = :owner",  # noqa: S608
                {"owner": owner},
            ).rowcount
            for owner in dead
        )

    released: int = db.transaction(work)
    return released
