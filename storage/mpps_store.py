"""MPPS instances in the index; the worklist item follows each one (PS3.4 F.7).

The rules are ``noctis_pacs.core.workflow.mpps``; this module applies them inside
one transaction with the worklist change and the events they cause.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydicom.dataset import Dataset

from noctis_pacs.core.auth import DEFAULT_FACILITY
from noctis_pacs.core.workflow import events as ev
from noctis_pacs.core.workflow.items import COMPLETED, DISCONTINUED, FINAL_STATUSES, IN_PROGRESS
from noctis_pacs.core.workflow.mpps import (
    DUPLICATE_SOP_INSTANCE,
    NO_SUCH_SOP_INSTANCE,
    MppsError,
    check_create,
    check_set,
    merge,
)
from storage.db import Connection
from storage.workflow_events import facility_of, now_iso
from storage.workflow_sql import W
from storage.worklist import WorklistStore

#: Step status for each MPPS status (PS3.4 F.7: the SPS follows its PPS).
_STEP_STATUS = {IN_PROGRESS: IN_PROGRESS, COMPLETED: COMPLETED, DISCONTINUED: DISCONTINUED}


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


class MppsStore:
    def __init__(self, worklist: WorklistStore) -> None:
        self.worklist = worklist
        self.db = worklist.db

    @staticmethod
    def _linked_steps(conn: Connection, ds: Dataset) -> list[tuple[int, int, str]]:
        """(step pk, item pk, status) of the worklist steps the MPPS references."""
        out: list[tuple[int, int, str]] = []
        for ref in ds.get("ScheduledStepAttributesSequence") or []:
            step_id = _text(ref, "ScheduledProcedureStepID")
            if not step_id:
                continue
            rows = conn.all(
                W("step_by_study"),
                {"study_uid": _text(ref, "StudyInstanceUID"), "step_id": step_id},
            )
            if not rows and _text(ref, "AccessionNumber"):
                rows = conn.all(
                    W("step_by_accession"),
                    {"accession_number": _text(ref, "AccessionNumber"), "step_id": step_id},
                )
            out.extend((int(r[0]), int(r[1]), r[2]) for r in rows)
        return out

    def _follow(self, conn: Connection, steps: Sequence[tuple[int, int, str]], status: str) -> None:
        target = _STEP_STATUS[status]
        for step_pk, item_pk, current in steps:
            if current != target and current not in FINAL_STATUSES:
                self.worklist.set_step_status(conn, step_pk, item_pk, target)

    def _announce(self, conn: Connection, sop_uid: str, ds: Dataset, item_pk: int | None) -> None:
        study = ""
        refs = ds.get("ScheduledStepAttributesSequence") or []
        if refs:
            study = _text(refs[0], "StudyInstanceUID")
        item_uid = None
        if item_pk is not None:
            item_uid = conn.one(W("item_by_id"), {"id": item_pk})[1]
        self.worklist.emit(
            conn,
            ev.MPPS_CHANGED,
            sop_uid,
            {
                "mpps_uid": sop_uid,
                "status": _text(ds, "PerformedProcedureStepStatus"),
                "study_instance_uid": study,
                "item_id": item_uid,
            },
        )

    def create(self, sop_uid: str, ds: Dataset) -> Dataset:
        """N-CREATE: validate, store IN PROGRESS, move the referenced steps."""
        check_create(ds)

        def work(conn: Connection) -> Dataset:
            if conn.one(W("mpps_by_uid"), {"sop_uid": sop_uid}) is not None:
                raise MppsError(DUPLICATE_SOP_INSTANCE, "MPPS instance already exists")
            steps = self._linked_steps(conn, ds)
            refs = ds.get("ScheduledStepAttributesSequence") or []
            now = now_iso()
            item_pk = steps[0][1] if steps else None
            conn.execute(
                W("mpps_insert"),
                {
                    "sop_uid": sop_uid,
                    "status": IN_PROGRESS,
                    "study_uid": _text(refs[0], "StudyInstanceUID") if refs else "",
                    "item_fk": item_pk,
                    "step_id": _text(refs[0], "ScheduledProcedureStepID") if refs else "",
                    "dataset": ds.to_json(),
                    "now": now,
                },
            )
            self._follow(conn, steps, IN_PROGRESS)
            self._announce(conn, sop_uid, ds, item_pk)
            return ds

        return self.db.transaction(work)

    def set(self, sop_uid: str, modification: Dataset) -> Dataset:
        """N-SET: apply the modification under the state rules; final states move the steps."""

        def work(conn: Connection) -> Dataset:
            row = conn.one(W("mpps_by_uid"), {"sop_uid": sop_uid})
            if row is None:
                raise MppsError(NO_SUCH_SOP_INSTANCE, "no such MPPS instance")
            current = Dataset.from_json(row[6])
            status = check_set(current, modification)
            merged = merge(current, modification)
            updated = conn.execute(
                W("mpps_update"),
                {
                    "status": status,
                    "dataset": merged.to_json(),
                    "now": now_iso(),
                    "id": row[0],
                    "old_status": row[2],
                },
            ).rowcount
            if updated != 1:  # another association finished it in between
                raise MppsError(NO_SUCH_SOP_INSTANCE, "MPPS changed concurrently")
            self._follow(conn, self._linked_steps(conn, merged), status)
            self._announce(conn, sop_uid, merged, row[4])
            return merged

        return self.db.transaction(work)

    def get(
        self, sop_uid: str, *, facilities: frozenset[str] = frozenset()
    ) -> dict[str, Any] | None:
        """The MPPS instance; with ``facilities`` (a scoped principal) ``None`` unless its
        facility is one of them: its study's when indexed, else its scheduled item's,
        else ``default`` (as if absent otherwise, like a study of another facility)."""
        with self.db.reader() as conn:
            row = conn.one(W("mpps_by_uid"), {"sop_uid": sop_uid})
            if row is None:
                return None
            if facilities and _facility(conn, row[3]) not in facilities:
                return None
        return {
            "mpps_uid": row[1],
            "status": row[2],
            "study_instance_uid": row[3],
            "step_id": row[5],
            "dataset": json.loads(row[6]),
            "created_at": row[7],
            "updated_at": row[8],
        }


def _facility(conn: Connection, study_uid: str | None) -> str:
    facility = facility_of(conn, {"study_instance_uid": study_uid})
    if facility == DEFAULT_FACILITY and study_uid:
        row = conn.one(
            "SELECT facility FROM worklist_items WHERE study_uid = :u LIMIT 1", {"u": study_uid}
        )
        if row is not None:
            return str(row[0])
    return facility
