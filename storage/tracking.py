"""Study tracking: arriving studies linked to worklist items, and study stability.

Ingest is not touched: ``scan`` compares ``studies.updated_at`` (kept at
ingest) with what ``study_tracking`` last saw.  Every change is applied by a
conditional UPDATE / INSERT ... ON CONFLICT DO NOTHING, so several processes
may scan the same index and each event is recorded exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from noctis_pacs.core.workflow import events as ev
from storage.db import Connection
from storage.workflow_events import now_iso
from storage.workflow_sql import W
from storage.worklist import WorklistStore

#: How far before the newest ``updated_at`` seen a scan looks again (ingest transactions
#: may commit after a later timestamp was already visible).
RESCAN_SLACK = timedelta(seconds=120)

PHASES = ("scheduled", "in_progress", "received", "stable", "completed")


def _shift(stamp: str, delta: timedelta) -> str:
    if not stamp:
        return ""
    at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return now_iso(at + delta)


class StudyTracker:
    def __init__(self, worklist: WorklistStore) -> None:
        self.worklist = worklist
        self.db = worklist.db
        self.watermark = ""
        #: Called in the transaction that marks a study stable (routing rules).
        self.on_stable: Callable[[Connection, str], None] | None = None

    def scan(self) -> int:
        """Record new and changed studies; return how many changed."""
        since = _shift(self.watermark, -RESCAN_SLACK)
        with self.db.reader() as conn:
            rows = conn.all(W("tracking_changes"), {"since": since})
        if rows:
            # One transaction per scan: during a busy ingest many studies change each
            # second, and each transaction would take the index's write lock again.
            self.db.transaction(partial(self._apply_all, rows=rows))
            self.watermark = max(self.watermark, *(row[3] for row in rows))
        return len(rows)

    def _apply_all(self, conn: Connection, rows: list[Any]) -> None:
        for row in rows:
            self._apply(conn, row)

    def _apply(self, conn: Connection, row: Any) -> None:
        study_uid, accession, count, updated_at, track_pk, old_seen, item_fk, stable_at = row
        if item_fk is None:
            item_fk = self.worklist.item_for_study(conn, study_uid, accession)
        if track_pk is None:
            inserted = conn.execute(
                W("tracking_insert"),
                {
                    "study_uid": study_uid,
                    "item_fk": item_fk,
                    "num_instances": count,
                    "seen": updated_at,
                    "now": now_iso(),
                },
            ).rowcount
            reopened = False
        else:
            inserted = conn.execute(
                W("tracking_update"),
                {
                    "item_fk": item_fk,
                    "num_instances": count,
                    "seen": updated_at,
                    "id": track_pk,
                    "old_seen": old_seen,
                },
            ).rowcount
            reopened = stable_at is not None
        if inserted != 1 or (track_pk is not None and not reopened):
            return
        self.worklist.emit(
            conn,
            ev.STUDY_RECEIVED,
            study_uid,
            {
                "study_instance_uid": study_uid,
                "accession_number": accession,
                "item_id": self._item_uid(conn, item_fk),
                "instances": int(count),
                "reopened": reopened,
            },
        )

    @staticmethod
    def _item_uid(conn: Connection, item_fk: int | None) -> str | None:
        if item_fk is None:
            return None
        row = conn.one(W("item_by_id"), {"id": item_fk})
        return None if row is None else str(row[1])

    def mark_stable(self, stable_after_seconds: float) -> int:
        """Studies without a new instance for ``stable_after_seconds`` become stable, once."""
        cutoff = now_iso(datetime.now(UTC) - timedelta(seconds=stable_after_seconds))
        with self.db.reader() as conn:
            rows = conn.all(W("tracking_unstable"), {"cutoff": cutoff})
        marked = 0
        for row in rows:
            marked += self.db.transaction(partial(self._stable, row=row))
        return marked

    def _stable(self, conn: Connection, row: Any) -> int:
        track_pk, study_uid, item_fk, count, last_change = row
        changed = conn.execute(
            W("tracking_mark_stable"),
            {"now": now_iso(), "id": track_pk, "last_change_at": last_change},
        ).rowcount
        if changed != 1:
            return 0
        self.worklist.emit(
            conn,
            ev.STUDY_STABLE,
            study_uid,
            {
                "study_instance_uid": study_uid,
                "item_id": self._item_uid(conn, item_fk),
                "instances": int(count),
                "last_instance_at": last_change,
            },
        )
        if self.on_stable is not None:
            self.on_stable(conn, study_uid)
        return 1

    # -- the status view -------------------------------------------------------------------

    def _view(self, conn: Connection, row: Any, item: Any) -> dict[str, Any]:
        study_uid, item_fk, count, last_change, stable_at, created_at = row
        if item is None and item_fk is not None:
            item = self.worklist._load(conn, int(item_fk))
        return self._phase(study_uid, item, count, last_change, stable_at, created_at)

    @staticmethod
    def _phase(
        study_uid: str,
        item: Any,
        count: int,
        last_change: str | None,
        stable_at: str | None,
        created_at: str | None,
    ) -> dict[str, Any]:
        status = item.status if item is not None else None
        if status == "COMPLETED" and stable_at:
            phase = "completed"
        elif stable_at:
            phase = "stable"
        elif count:
            phase = "received"
        elif status == "IN PROGRESS":
            phase = "in_progress"
        else:
            phase = "scheduled"
        return {
            "study_instance_uid": study_uid,
            "phase": phase,
            "instances": int(count or 0),
            "first_seen_at": created_at,
            "last_instance_at": last_change,
            "stable_at": stable_at,
            "item_id": item.item_uid if item is not None else None,
            "item_status": status,
            "accession_number": item.item.accession_number if item is not None else None,
        }

    def status(
        self, study_uid: str, *, facilities: frozenset[str] = frozenset()
    ) -> dict[str, Any] | None:
        """The status of one study (tracked, or only scheduled by a worklist item); ``None``
        also when it lies outside ``facilities`` (a scoped principal)."""
        with self.db.reader() as conn:
            if facilities and not self._visible(conn, study_uid, facilities):
                return None
            row = conn.one(W("tracking_by_study"), {"study_uid": study_uid})
            if row is not None:
                return self._view(conn, row, None)
            item_row = conn.one(W("item_by_study"), {"study_uid": study_uid})
            if item_row is None:
                return None
            item = self.worklist._load(conn, int(item_row[0]))
            return self._phase(study_uid, item, 0, None, None, None)

    @staticmethod
    def _visible(conn: Connection, study_uid: str, facilities: frozenset[str]) -> bool:
        """The study's facility (else its worklist item's) is one of ``facilities``."""
        row = conn.one("SELECT facility FROM studies WHERE study_uid = :u", {"u": study_uid})
        if row is None:
            row = conn.one(
                "SELECT facility FROM worklist_items WHERE study_uid = :u", {"u": study_uid}
            )
        return row is not None and str(row[0]) in facilities

    def recent(
        self, limit: int = 100, offset: int = 0, *, facilities: frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        with self.db.reader() as conn:
            if not facilities:
                rows = conn.all(W("tracking_recent"), {"limit": limit, "offset": offset})
            else:
                names = sorted(facilities)
                marks = ", ".join(f":f{n}" for n in range(len(names)))
                rows = conn.all(
                    "SELECT t.study_uid, t.item_fk, t.num_instances, t.last_change_at,"
                    " t.stable_at, t.created_at FROM study_tracking t WHERE EXISTS (SELECT 1"
                    " FROM studies st WHERE st.study_uid = t.study_uid"
                    f" AND st.facility IN ({marks}))"
                    " ORDER BY t.last_change_at DESC, t.id DESC LIMIT :limit OFFSET :offset",
                    {
                        "limit": limit,
                        "offset": offset,
                        **{f"f{n}": name for n, name in enumerate(names)},
                    },
                )
            return [self._view(conn, row, None) for row in rows]

    def for_item(self, item_pk: int) -> list[dict[str, Any]]:
        with self.db.reader() as conn:
            rows = conn.all(W("tracking_of_item"), {"item_fk": item_pk})
            return [self._view(conn, row, None) for row in rows]
