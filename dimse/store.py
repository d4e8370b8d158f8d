"""Storage SCP (PS3.4 Annex B): every C-STORE goes through the archive's one ingest path.

pynetdicom writes the received data set to a temporary Part 10 file as the
P-DATA fragments arrive (``_config.STORE_RECV_CHUNKED_DATASET``), so large
objects never sit in memory and pixel data is never decoded.  The handler moves
that file into the store's temporary area (a rename, no copy, on one file
system) and hands it to ``Archive.store_path(..., move=True)``.  An association
aborted mid-transfer never reaches the handler, so nothing is half-stored; the
partial temporary file is removed by ``discard_partial_receive``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.filereader import read_partial

from dimse import status as st
from dimse.access import STORE, AccessPolicy, calling_ae_of
from dimse.observe import Operation, bind_context
from noctis_pacs.metrics import Metrics
from storage.archive import Archive
from storage.ingest import Origin, RejectKind, Status, StoreOutcome

log = logging.getLogger("noctis.dimse.store")

_REJECT_STATUS = {
    RejectKind.NOT_DICOM: st.STORE_CANNOT_UNDERSTAND,
    RejectKind.TRUNCATED: st.STORE_TRUNCATED,
    RejectKind.MISSING_ATTRIBUTE: st.STORE_DATASET_MISMATCH,
    RejectKind.MISMATCH: st.STORE_DATASET_MISMATCH,
    RejectKind.STUDY_MISMATCH: st.STORE_DATASET_MISMATCH,
}


def status_dataset(status: int, comment: str = "") -> Dataset:
    """A C-STORE/C-FIND status with an optional Error Comment (LO, PS3.7 C.11.2)."""
    ds = Dataset()
    ds.Status = status
    if comment:
        ds.ErrorComment = comment[: st.ERROR_COMMENT_MAX]
    return ds


def outcome_status(outcome: StoreOutcome) -> Dataset:
    """Map the archive's typed outcome to a PS3.4 B.2.3 status."""
    if outcome.status in (Status.STORED, Status.ALREADY_STORED):
        # The archive stores what it received, so nothing was coerced: Success.
        return status_dataset(st.SUCCESS)
    if outcome.status is Status.STORAGE_FULL:
        return status_dataset(st.STORE_OUT_OF_RESOURCES, "storage full")
    if outcome.status is Status.REJECTED:
        code = _REJECT_STATUS.get(
            outcome.reject_kind or RejectKind.NOT_DICOM, st.STORE_CANNOT_UNDERSTAND
        )
        return status_dataset(code, outcome.reason)
    return status_dataset(st.STORE_OUT_OF_RESOURCES_INTERNAL, "archive could not store; retry")


def _stop_after_sop_uids(tag: Any, vr: Any, length: Any) -> bool:
    return int(tag) > 0x00080018


def _check_identity(path: Path, sop_class: str, sop_instance: str) -> Dataset | None:
    """PS3.4 B.2.3 / PS3.7 9.1.1: the data set must be the instance the command names.

    Reads only up to (0008,0018); the ingest path parses the whole header afterwards.
    """
    try:
        with open(path, "rb") as fh:
            ds = read_partial(fh, _stop_after_sop_uids)
        found_class = str(ds.get("SOPClassUID", "") or "").strip("\x00 ")
        found_instance = str(ds.get("SOPInstanceUID", "") or "").strip("\x00 ")
    except Exception:  # noqa: BLE001 - the ingest path reports unreadable data itself
        return None
    if found_class and found_class != sop_class:
        return status_dataset(
            st.STORE_DATASET_MISMATCH, "SOP Class UID differs from Affected SOP Class UID"
        )
    if found_instance and found_instance != sop_instance:
        return status_dataset(
            st.STORE_INSTANCE_UID_MISMATCH, "SOP Instance UID differs from Affected SOP Inst UID"
        )
    return None


def _adopt(archive: Archive, received: Path, origin: Origin) -> StoreOutcome:
    """Store the received file, moving it into the store's tmp area when possible."""
    spool = archive.spool_path()
    try:
        os.rename(received, spool)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        return archive.store_path(received, origin)
    return archive.store_path(spool, origin, move=True)


def handle_store(event: Any, archive: Archive, policy: AccessPolicy, metrics: Metrics) -> Dataset:
    """EVT_C_STORE."""
    bind_context(event)
    operation = Operation(metrics, "C-STORE")
    calling = calling_ae_of(event.assoc)
    request = event.request
    if not policy.allows(calling, STORE):
        result = status_dataset(st.REFUSED_NOT_AUTHORIZED, "store not permitted for this AE")
    else:
        received = Path(event.dataset_path)
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        mismatch = _check_identity(received, sop_class, sop_instance)
        if mismatch is not None:
            result = mismatch
        else:
            origin = Origin("dimse", calling, str(event.assoc.requestor.address or ""))
            try:
                outcome = _adopt(archive, received, origin)
            except OSError as exc:
                log.error("C-STORE could not spool the received data set: %s", exc)
                outcome = StoreOutcome(Status.FAILED, reason="spool failed")
            metrics.stored_instances.labels(protocol="dimse", outcome=outcome.status.value).inc()
            result = outcome_status(outcome)
            log.debug("C-STORE %s -> %s", sop_instance, outcome.status.value)
    operation.done(int(result.Status))
    if int(result.Status) != st.SUCCESS:
        log.info("C-STORE failed: status 0x%04X", int(result.Status))
    return result


def discard_partial_receive(event: Any) -> None:
    """EVT_ABORTED / EVT_CONN_CLOSE: remove the temporary file of an unfinished C-STORE.

    pynetdicom creates it on the first data fragment and deletes it only after the
    handler ran, so an abort mid-transfer would leave it behind.
    """
    message = getattr(event.assoc.dimse, "message", None)
    handle = getattr(message, "_data_set_file", None)
    path = getattr(message, "_data_set_path", None)
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    if path is not None:
        Path(path).unlink(missing_ok=True)
