"""Modality Performed Procedure Step SCP: N-CREATE and N-SET (PS3.4 F.7).

The rules and their statuses are ``noctis_pacs.core.workflow.mpps``; the store
applies them with the worklist change in one transaction.  Handlers only map
``MppsError`` to the PS3.7 status with an Error Comment.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.events import Event

from dimse import audit
from dimse import status as st
from dimse.access import STORE, AccessPolicy, calling_ae_of
from dimse.observe import Operation, bind_context
from noctis_pacs.core.audit import AuditAction
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.workflow.mpps import PROCESSING_FAILURE, SUCCESS, MppsError
from storage.archive import Archive, MppsStore

log = logging.getLogger("noctis.dimse.mpps_scp")

NResponse = tuple[int | Dataset, Dataset | None]


def _failure(status: int, comment: str) -> NResponse:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[: st.ERROR_COMMENT_MAX]
    return ds, None


def handle_n_create(
    event: Event, store: MppsStore, policy: AccessPolicy, metrics: Metrics, archive: Archive
) -> NResponse:
    """EVT_N_CREATE: a new MPPS, IN PROGRESS (PS3.4 F.7.2.1)."""
    bind_context(event)
    operation = Operation(metrics, "N-CREATE")
    status = SUCCESS
    sop_uid = ""
    try:
        if not policy.allows(calling_ae_of(event.assoc), STORE):
            status = st.REFUSED_NOT_AUTHORIZED
            return _failure(status, "MPPS not permitted for this AE")
        request = event.request
        assert isinstance(request, N_CREATE)  # EVT_N_CREATE carries one
        request_uid = request.AffectedSOPInstanceUID
        sop_uid = str(request_uid) if request_uid else generate_uid()
        attributes = event.attribute_list
        try:
            created = store.create(sop_uid, attributes)
        except MppsError as exc:
            status = exc.status
            log.info("MPPS N-CREATE refused: 0x%04X %s", exc.status, exc.comment)
            return _failure(exc.status, exc.comment)
        log.info("MPPS N-CREATE: IN PROGRESS")
        reply = Dataset()
        reply.update(created)
        if not request_uid:
            # PS3.7 10.1.5.1.4: the SCP returns the UID it assigned.
            reply.AffectedSOPInstanceUID = sop_uid
        return SUCCESS, reply
    except Exception:
        log.exception("MPPS N-CREATE failed")
        status = PROCESSING_FAILURE
        return _failure(status, "MPPS could not be stored")
    finally:
        operation.done(status)
        _audit(archive, event, status, sop_uid, "attribute_list", "N-CREATE")


def handle_n_set(
    event: Event, store: MppsStore, policy: AccessPolicy, metrics: Metrics, archive: Archive
) -> NResponse:
    """EVT_N_SET: update an MPPS; COMPLETED and DISCONTINUED are final (PS3.4 F.7.2.2)."""
    bind_context(event)
    operation = Operation(metrics, "N-SET")
    status = SUCCESS
    sop_uid = ""
    try:
        if not policy.allows(calling_ae_of(event.assoc), STORE):
            status = st.REFUSED_NOT_AUTHORIZED
            return _failure(status, "MPPS not permitted for this AE")
        request = event.request
        assert isinstance(request, N_SET)  # EVT_N_SET carries one
        sop_uid = str(request.RequestedSOPInstanceUID)
        try:
            merged = store.set(sop_uid, event.modification_list)
        except MppsError as exc:
            status = exc.status
            log.info("MPPS N-SET refused: 0x%04X %s", exc.status, exc.comment)
            return _failure(exc.status, exc.comment)
        log.info("MPPS N-SET: %s", merged.get("PerformedProcedureStepStatus", ""))
        return SUCCESS, merged
    except Exception:
        log.exception("MPPS N-SET failed")
        status = PROCESSING_FAILURE
        return _failure(status, "MPPS could not be updated")
    finally:
        operation.done(status)
        _audit(archive, event, status, sop_uid, "modification_list", "N-SET")


def _audit(
    archive: Archive, event: Event, status: int, sop_uid: str, data_set: str, verb: str
) -> None:
    """One MPPS record: the instance, the studies its attributes reference, the new status."""
    studies: list[str] = []
    state = ""
    try:
        attributes = getattr(event, data_set)
        for item in attributes.get("ScheduledStepAttributesSequence", []) or []:
            studies += audit.identifier_studies(item)
        state = str(attributes.get("PerformedProcedureStepStatus", "") or "")
    except Exception:  # noqa: BLE001 - a malformed data set was refused already
        pass
    audit.record(
        archive,
        event.assoc,
        AuditAction.MPPS,
        status,
        study_uids=studies,
        sop_uids=[sop_uid],
        detail=f"{verb} {state}".strip(),
    )
