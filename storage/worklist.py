"""Worklist items in the index and the Modality Worklist query engine.

Items are validated by ``noctis_pacs.core.workflow.items`` and stored as their JSON
document plus indexed columns (``worklist_items``, one ``worklist_steps`` row
per Scheduled Procedure Step).  Queries are ``WorklistQuery`` objects compiled
here to parameterised SQL with the PS3.4 C.2.2.2 matching of the Q/R engine
(``storage.query``'s wildcard and range helpers); column names come only
from the fixed maps in ``noctis_pacs.core.workflow.mwl``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydicom.uid import generate_uid

from noctis_pacs.core.auth import DEFAULT_FACILITY
from noctis_pacs.core.model import Match
from noctis_pacs.core.workflow import events as ev
from noctis_pacs.core.workflow.items import (
    DISCONTINUED,
    FINAL_STATUSES,
    Item,
    Step,
    aggregate_status,
    validate_item,
)
from noctis_pacs.core.workflow.mwl import (
    ITEM_COLUMNS,
    MULTI_VALUED,
    STEP_COLUMNS,
    WorklistQuery,
    vr_of,
)
from storage.db import Connection, Database
from storage.index import normalise_time
from storage.parse import normalise_pn
from storage.query import Column, match_condition
from storage.workflow_events import emit, now_iso
from storage.workflow_sql import W

T = TypeVar("T")

#: PN columns with a case- and accent-folded twin (``<column>_norm``).
_PN_NORM = frozenset({"patient_name", "referring_physician_name", "performing_physician_name"})


class ItemNotFound(LookupError):
    """No worklist item has this id."""


class WorkflowConflict(ValueError):
    """The change is not possible in the item's current state; the message says why."""


@dataclass(frozen=True)
class StoredItem:
    """An item as kept in the index, with its statuses and timestamps."""

    pk: int
    item_uid: str
    item: Item
    status: str
    created_at: str
    updated_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.item_uid,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            **self.item.as_json(),
        }


def _joined(values: Sequence[str]) -> str:
    return "\\" + "".join(f"{v}\\" for v in values if v)


class _Conditions:
    """Builds WHERE clauses with ``:pN`` parameters through the Q/R engine's
    ``match_condition`` (values never enter the SQL text)."""

    def __init__(self, case_insensitive_pn: bool) -> None:
        self.params: dict[str, Any] = {}
        self.ci = case_insensitive_pn

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def match(self, alias: str, column: str, match: Match) -> str:
        spec = Column(
            sql=f"{alias}.{column}",
            vr=vr_of(match.keyword),
            multi_valued=column in MULTI_VALUED,
            pn_folded=f"{alias}.{column}_norm" if column in _PN_NORM else None,
        )
        return match_condition(spec, match, param=self.param, case_insensitive_pn=self.ci)

    def statuses(self, column: str, statuses: Sequence[str]) -> str:
        return f"{column} IN ({', '.join(self.param(s) for s in statuses)})"


def _where(query: WorklistQuery) -> tuple[list[str], list[str], dict[str, Any]]:
    """(item clauses on ``w``, step clauses on ``s``, parameters)."""
    cond = _Conditions(query.case_insensitive_pn)
    item_sql = [cond.match("w", ITEM_COLUMNS[m.keyword], m) for m in query.item_matches]
    step_sql = [cond.match("s", STEP_COLUMNS[m.keyword], m) for m in query.step_matches]
    if query.statuses:
        step_sql.append(cond.statuses("s.status", query.statuses))
    if query.facilities:
        marks = ", ".join(cond.param(f) for f in sorted(query.facilities))
        item_sql.append(f"w.facility IN ({marks})")
    return item_sql, step_sql, cond.params


class WorklistStore:
    """Worklist items, MWL queries and the item side of MPPS, over one index."""

    def __init__(
        self,
        db: Database,
        *,
        webhooks: Sequence[str] = (),
        case_insensitive_pn: bool = True,
        max_results: int = 1000,
    ) -> None:
        self.db = db
        self.webhooks = tuple(webhooks)
        self.case_insensitive_pn = case_insensitive_pn
        self.max_results = max_results

    def transaction(self, work: Callable[[Connection], T]) -> T:
        return self.db.transaction(work)

    def emit(self, conn: Connection, kind: str, subject: str, payload: Mapping[str, Any]) -> int:
        return emit(conn, kind=kind, subject=subject, payload=payload, webhooks=self.webhooks)

    # -- items --------------------------------------------------------------------------

    @staticmethod
    def _columns(item: Item) -> dict[str, Any]:
        return {
            "study_uid": item.study_instance_uid,
            "accession_number": item.accession_number,
            "patient_id": item.patient_id,
            "issuer_of_patient_id": item.issuer_of_patient_id,
            "patient_name": item.patient_name,
            "patient_name_norm": normalise_pn(item.patient_name),
            "patient_birth_date": item.patient_birth_date,
            "patient_sex": item.patient_sex,
            "referring_physician_name": item.referring_physician_name,
            "referring_physician_name_norm": normalise_pn(item.referring_physician_name),
            "requested_procedure_id": item.requested_procedure_id,
            "status": aggregate_status(s.status for s in item.steps),
            "document": json.dumps(item.as_json()),
        }

    @staticmethod
    def _insert_steps(conn: Connection, item_pk: int, item: Item, now: str) -> None:
        for position, step in enumerate(item.steps):
            conn.execute(
                W("step_insert"),
                {
                    "item_fk": item_pk,
                    "position": position,
                    "step_id": step.step_id,
                    "modality": step.modality,
                    "station_ae_title": _joined(step.station_ae_titles),
                    "station_name": step.station_name,
                    "start_date": step.start_date,
                    "start_time": normalise_time(step.start_time),
                    "performing_physician_name": step.performing_physician_name,
                    "performing_physician_name_norm": normalise_pn(step.performing_physician_name),
                    "location": step.location,
                    "status": step.status,
                    "now": now,
                },
            )

    def _payload(self, conn: Connection, item_pk: int) -> tuple[str, dict[str, Any]]:
        stored = self._load(conn, item_pk)
        return stored.item_uid, {
            "item_id": stored.item_uid,
            "status": stored.status,
            "study_instance_uid": stored.item.study_instance_uid,
            "accession_number": stored.item.accession_number,
            "steps": [{"step_id": s.step_id, "status": s.status} for s in stored.item.steps],
        }

    def create(self, data: Mapping[str, Any], *, facility: str = DEFAULT_FACILITY) -> StoredItem:
        """Validate and store a new item (``WorklistValidationError`` lists the problems);
        ``facility`` scopes it (MWL and the REST API show it to that facility's principals)."""
        item = validate_item(data, new_study_uid=generate_uid())
        item_uid = str(uuid.uuid4())

        def work(conn: Connection) -> StoredItem:
            now = now_iso()
            pk = int(
                conn.one(
                    W("item_insert"), {**self._columns(item), "item_uid": item_uid, "now": now}
                )[0]
            )
            self._insert_steps(conn, pk, item, now)
            conn.execute(
                "UPDATE worklist_items SET facility = :f WHERE id = :id", {"f": facility, "id": pk}
            )
            subject, payload = self._payload(conn, pk)
            self.emit(conn, ev.WORKLIST_CREATED, subject, payload)
            return self._load(conn, pk)

        return self.db.transaction(work)

    def _row(
        self, conn: Connection, item_uid: str, facilities: frozenset[str] = frozenset()
    ) -> Any:
        """The item's row; ``ItemNotFound`` also when it lies outside ``facilities``."""
        row = conn.one(W("item_by_uid"), {"item_uid": item_uid})
        if row is not None and facilities:
            facility = conn.one(
                "SELECT facility FROM worklist_items WHERE id = :id", {"id": row[0]}
            )[0]
            row = row if facility in facilities else None
        if row is None:
            raise ItemNotFound(f"no worklist item {item_uid}")
        return row

    def _load(self, conn: Connection, item_pk: int) -> StoredItem:
        row = conn.one(W("item_by_id"), {"id": item_pk})
        return self._stored(conn, row)

    def _stored(self, conn: Connection, row: Sequence[Any]) -> StoredItem:
        document = json.loads(row[2])
        statuses = {r[1]: r[2] for r in conn.all(W("steps_of_item"), {"item_fk": row[0]})}
        item = validate_item(document, new_study_uid=document["study_instance_uid"])
        steps = tuple(replace(s, status=statuses.get(s.step_id, s.status)) for s in item.steps)
        item = replace(item, steps=steps)
        return StoredItem(int(row[0]), row[1], item, row[3], row[4], row[5])

    def get(self, item_uid: str, *, facilities: frozenset[str] = frozenset()) -> StoredItem:
        with self.db.reader() as conn:
            return self._stored(conn, self._row(conn, item_uid, facilities))

    def get_by_pk(self, item_pk: int) -> StoredItem:
        with self.db.reader() as conn:
            return self._load(conn, item_pk)

    def update(
        self,
        item_uid: str,
        data: Mapping[str, Any],
        *,
        merge: bool,
        facilities: frozenset[str] = frozenset(),
    ) -> StoredItem:
        """Replace (``merge`` false) or patch the item; step statuses are kept unless given."""

        def work(conn: Connection) -> StoredItem:
            current = self._stored(conn, self._row(conn, item_uid, facilities))
            base = current.item.as_json() if merge else {}
            document = {**base, **dict(data)}
            if "steps" in data:
                known = {s.step_id: s.status for s in current.item.steps}
                document["steps"] = [
                    {"status": known[s["step_id"]], **s}
                    if isinstance(s, Mapping) and s.get("step_id") in known
                    else s
                    for s in data["steps"]
                ]
            item = validate_item(
                document,
                new_study_uid=document.get("study_instance_uid") or current.item.study_instance_uid,
            )
            now = now_iso()
            conn.execute(W("item_update"), {**self._columns(item), "id": current.pk, "now": now})
            conn.execute(W("steps_delete"), {"item_fk": current.pk})
            self._insert_steps(conn, current.pk, item, now)
            subject, payload = self._payload(conn, current.pk)
            self.emit(conn, ev.WORKLIST_CHANGED, subject, {**payload, "change": "updated"})
            return self._load(conn, current.pk)

        return self.db.transaction(work)

    def cancel(self, item_uid: str, *, facilities: frozenset[str] = frozenset()) -> StoredItem:
        """Discontinue every step not yet final; refused when all steps are final."""

        def work(conn: Connection) -> StoredItem:
            row = self._row(conn, item_uid, facilities)
            steps = conn.all(W("steps_of_item"), {"item_fk": row[0]})
            open_steps = [r for r in steps if r[2] not in FINAL_STATUSES]
            if not open_steps:
                raise WorkflowConflict(f"worklist item {item_uid} is already {row[3]}")
            now = now_iso()
            for step_pk, _, _ in open_steps:
                conn.execute(
                    W("step_set_status"), {"status": DISCONTINUED, "now": now, "id": step_pk}
                )
            self.refresh_status(conn, int(row[0]), change="cancelled")
            return self._load(conn, int(row[0]))

        return self.db.transaction(work)

    def set_step_status(self, conn: Connection, step_pk: int, item_pk: int, status: str) -> None:
        """Used by MPPS: move one step, then the item, and announce the change."""
        conn.execute(W("step_set_status"), {"status": status, "now": now_iso(), "id": step_pk})
        self.refresh_status(conn, item_pk, change="mpps")

    def refresh_status(self, conn: Connection, item_pk: int, *, change: str) -> None:
        steps = conn.all(W("steps_of_item"), {"item_fk": item_pk})
        status = aggregate_status(r[2] for r in steps)
        conn.execute(W("item_set_status"), {"status": status, "now": now_iso(), "id": item_pk})
        subject, payload = self._payload(conn, item_pk)
        self.emit(conn, ev.WORKLIST_CHANGED, subject, {**payload, "change": change})

    # -- queries ------------------------------------------------------------------------

    def find_steps(self, query: WorklistQuery) -> Iterator[tuple[StoredItem, Step]]:
        """One (item, step) per matching Scheduled Procedure Step (the MWL C-FIND answers)."""
        item_sql, step_sql, params = _where(query)
        where = " AND ".join(["1 = 1", *item_sql, *step_sql])
        limit = min(query.limit or self.max_results, self.max_results)
        sql = (
            "SELECT w.id, w.item_uid, w.document, w.status, w.created_at, w.updated_at, s.step_id"
            " FROM worklist_steps s JOIN worklist_items w ON s.item_fk = w.id"
            f" WHERE {where} ORDER BY s.start_date, s.start_time, w.id, s.position"
            f" LIMIT {int(limit)} OFFSET {int(max(query.offset, 0))}"
        )
        with self.db.reader() as conn:
            rows = conn.all(sql, params)
            cache: dict[int, StoredItem] = {}
            for row in rows:
                pk = int(row[0])
                stored = cache.get(pk) or self._stored(conn, row[:6])
                cache[pk] = stored
                step = next(s for s in stored.item.steps if s.step_id == row[6])
                yield stored, step

    def list(self, query: WorklistQuery, *, item_statuses: Sequence[str] = ()) -> list[StoredItem]:
        """Items with at least one step matching ``query`` (REST and CLI listings)."""
        item_sql, step_sql, params = _where(query)
        cond = _Conditions(False)
        cond.params = params
        if item_statuses:
            item_sql.append(cond.statuses("w.status", item_statuses))
        if step_sql:
            item_sql.append(
                "EXISTS (SELECT 1 FROM worklist_steps s WHERE s.item_fk = w.id AND "
                + " AND ".join(step_sql)
                + ")"
            )
        where = " AND ".join(["1 = 1", *item_sql])
        limit = min(query.limit or self.max_results, self.max_results)
        sql = (
            "SELECT w.id, w.item_uid, w.document, w.status, w.created_at, w.updated_at"
            f" FROM worklist_items w WHERE {where} ORDER BY w.id DESC"
            f" LIMIT {int(limit)} OFFSET {int(max(query.offset, 0))}"
        )
        with self.db.reader() as conn:
            return [self._stored(conn, row) for row in conn.all(sql, params)]

    def item_for_study(self, conn: Connection, study_uid: str, accession_number: str) -> int | None:
        """The item a study belongs to: by Study Instance UID, else by Accession Number."""
        row = conn.one(W("item_by_study"), {"study_uid": study_uid})
        if row is None and accession_number:
            row = conn.one(W("item_by_accession"), {"accession_number": accession_number})
        return None if row is None else int(row[0])
