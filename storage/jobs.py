"""Jobs kept in the index: sends (and later exports), with per-instance outcomes.

A job is ``queued`` until a runner claims it (a conditional UPDATE, so several
processes sharing the index never run one job twice; a lease that runs out puts a
crashed runner's job back in reach), ``running`` while instances go out, then
``succeeded``, ``failed`` (attempts used up, or a fatal error) or ``cancelled``.
A failed attempt with attempts left goes back to ``queued`` with a later
``next_attempt_at``; only the instances not yet sent are sent again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.db import Connection, Database
from storage.remotes import A
from storage.workflow_events import later_iso, now_iso

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
#: Per-instance outcomes.
PENDING, SENT, ITEM_FAILED = "pending", "sent", "failed"


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    state: str
    destination: str
    request: dict[str, Any]
    total: int
    done: int
    failed: int
    attempts: int
    max_attempts: int
    next_attempt_at: str
    error: str
    created_by: str
    created_at: str
    updated_at: str

    def public(self) -> dict[str, Any]:
        shown = {k: v for k, v in vars(self).items()}
        shown["progress"] = round(self.done / self.total, 4) if self.total else 1.0
        return shown


def _job(row: Sequence[Any]) -> Job:
    values = list(row)
    values[4] = json.loads(values[4])
    for index in (0, 5, 6, 7, 8, 9):
        values[index] = int(values[index])
    return Job(*values)


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        *,
        kind: str,
        destination: str,
        request: dict[str, Any],
        sop_uids: Iterable[str],
        max_attempts: int,
        created_by: str,
    ) -> int:
        uids = list(dict.fromkeys(sop_uids))

        def work(conn: Connection) -> int:
            now = now_iso()
            cur = conn.execute(
                A("job_insert") + " RETURNING id",
                {
                    "kind": kind,
                    "destination": destination,
                    "request": json.dumps(request),
                    "total": len(uids),
                    "max_attempts": max_attempts,
                    "created_by": created_by,
                    "now": now,
                },
            )
            job_id = int(cur.fetchone()[0])
            conn.executemany(
                A("job_item_insert"), [{"job_fk": job_id, "sop_uid": u, "now": now} for u in uids]
            )
            return job_id

        return self.db.transaction(work)

    def recent(self, *, state: str | None = None, limit: int = 100, offset: int = 0) -> list[Job]:
        sql = A("job_columns")
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            sql += " WHERE state = :state"
            params["state"] = state
        sql += " ORDER BY id DESC LIMIT :limit OFFSET :offset"
        with self.db.reader() as conn:
            return [_job(r) for r in conn.all(sql, params)]

    def get(self, job_id: int) -> Job | None:
        with self.db.reader() as conn:
            row = conn.one(A("job_columns") + " WHERE id = :id", {"id": job_id})
        return _job(row) if row is not None else None

    def items(self, job_id: int) -> list[dict[str, str]]:
        with self.db.reader() as conn:
            rows = conn.all(A("job_items_of"), {"id": job_id})
        return [{"sop_uid": r[0], "state": r[1], "detail": r[2], "updated_at": r[3]} for r in rows]

    def depth(self) -> dict[str, int]:
        """Jobs per state (metrics, statistics)."""
        with self.db.reader() as conn:
            rows = conn.all("SELECT state, COUNT(*) FROM jobs GROUP BY state")
        return {str(r[0]): int(r[1]) for r in rows}

    def claim(self, owner: str, lease_seconds: float) -> Job | None:
        """The oldest due job, now ``running`` under ``owner``'s lease; ``None`` if none."""
        with self.db.reader() as conn:
            due = [int(r[0]) for r in conn.all(A("job_due"), {"now": now_iso()})]
        for job_id in due:
            params = {"id": job_id, "owner": owner, "lease_until": later_iso(lease_seconds)}

            def work(conn: Connection, params: dict[str, Any] = params) -> int:
                return int(conn.execute(A("job_claim"), {**params, "now": now_iso()}).rowcount)

            claimed = self.db.transaction(work)
            if claimed:
                return self.get(job_id)
        return None

    def renew(self, job_id: int, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; ``False`` when the job is no longer this runner's (cancelled)."""
        params = {"id": job_id, "owner": owner, "lease_until": later_iso(lease_seconds)}
        renewed: int = self.db.transaction(
            lambda conn: conn.execute(A("job_renew"), {**params, "now": now_iso()}).rowcount
        )
        return renewed > 0

    def pending_items(self, job_id: int) -> list[str]:
        with self.db.reader() as conn:
            return [str(r[0]) for r in conn.all(A("job_pending_items"), {"id": job_id})]

    def record(self, job_id: int, outcomes: Sequence[tuple[str, str, str]]) -> tuple[int, int]:
        """Store (sop_uid, state, detail) outcomes and the job's progress; (done, failed)."""

        def work(conn: Connection) -> tuple[int, int]:
            now = now_iso()
            conn.executemany(
                A("job_item_outcome"),
                [
                    {"id": job_id, "sop_uid": uid, "state": state, "detail": detail, "now": now}
                    for uid, state, detail in outcomes
                ],
            )
            done, failed = _counts(conn, job_id)
            conn.execute(
                A("job_progress"), {"id": job_id, "done": done, "failed": failed, "now": now}
            )
            return done, failed

        return self.db.transaction(work)

    def finish(self, job_id: int, owner: str, *, retry_in: float | None, error: str) -> str:
        """End an attempt: ``succeeded`` when every instance went, else ``queued`` again
        after ``retry_in`` seconds or ``failed`` (``retry_in`` None). The state it ends in
        (``cancelled`` if it was cancelled meanwhile)."""

        def work(conn: Connection) -> str:
            done, failed = _counts(conn, job_id)
            total_row = conn.one("SELECT total FROM jobs WHERE id = :id", {"id": job_id})
            total = int(total_row[0]) if total_row else 0
            if done >= total and not error:
                state, next_at = SUCCEEDED, now_iso()
            elif retry_in is not None:
                state, next_at = QUEUED, later_iso(retry_in)
            else:
                state, next_at = FAILED, now_iso()
            conn.execute(
                A("job_finish"),
                {
                    "id": job_id,
                    "owner": owner,
                    "state": state,
                    "error": error[:1000],
                    "next_attempt_at": next_at,
                    "done": done,
                    "failed": failed,
                    "now": now_iso(),
                },
            )
            row = conn.one(A("job_state"), {"id": job_id})
            return str(row[0]) if row else state

        return self.db.transaction(work)

    def release_orphans(self, host_prefix: str, alive: Callable[[str], bool]) -> int:
        """Running jobs of a dead local owner become due at once (see the queue's)."""
        from storage.routing import _release_orphans

        return _release_orphans(self.db, "jobs", host_prefix, alive)

    def state(self, job_id: int) -> str | None:
        with self.db.reader() as conn:
            row = conn.one(A("job_state"), {"id": job_id})
        return str(row[0]) if row else None

    def cancel(self, job_id: int) -> bool:
        changed: int = self.db.transaction(
            lambda conn: conn.execute(A("job_cancel"), {"id": job_id, "now": now_iso()}).rowcount
        )
        return changed > 0

    def retry(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again (its unsent instances), attempts reset."""
        changed: int = self.db.transaction(
            lambda conn: conn.execute(A("job_retry"), {"id": job_id, "now": now_iso()}).rowcount
        )
        return changed > 0


def _counts(conn: Connection, job_id: int) -> tuple[int, int]:
    counts = {str(r[0]): int(r[1]) for r in conn.all(A("job_counts"), {"id": job_id})}
    return counts.get(SENT, 0), counts.get(ITEM_FAILED, 0)
