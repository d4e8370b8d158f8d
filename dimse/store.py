"""Storage SCP (PS3.4 Annex B): every C-STORE goes through the archive's one ingest path.

pynetdicom's chunked receive (``_config.STORE_RECV_CHUNKED_DATASET``) writes each
received data set, as its P-DATA fragments arrive, into a ``dimse.fastpath.spool``
``ReceiveSpool`` on associations Noctis accepted: in memory up to ``SMALL_BLOB``
(1 MiB), then in a file inside the store's temporary area, so large objects never
sit in memory and pixel data is never decoded. The handler checks the SOP identity
on the first bytes, then stores a data set held in memory through the blob writer
(one file creation) or adopts the spooled file (``Archive.store_path(...,
move=True)``: no copy). Associations without a spool keep pynetdicom's temporary
file, which the handler moves into the store's temporary area and adopts the same
way.

An association aborted mid-transfer never reaches the handler, so nothing is
half-stored; the partial spool or temporary file is removed by
``discard_partial_receive``.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.uid import UID
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dimse import audit
from dimse import status as st
from dimse.access import STORE, AccessPolicy, calling_ae_of
from dimse.fastpath import receive, spool
from dimse.fastpath.part10 import data_set_offset
from dimse.fastpath.spool import ReceiveSpool
from dimse.observe import Operation, bind_context
from noctis_pacs.core.metrics import Metrics
from storage.archive import Archive, StorageFullError
from storage.ingest import Origin, RejectKind, Status, StoreOutcome
from storage.rawheader import LONG_VRS

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


#: Bytes of a received file read for the SOP identity check (the UIDs come early).
IDENTITY_HEAD = 8192

_SOP_CLASS_TAG = 0x00080016
_SOP_INSTANCE_TAG = 0x00080018
#: ``storage.rawheader.LONG_VRS`` as the bytes found in a data set.
_LONG_VRS = frozenset(vr.encode("ascii") for vr in LONG_VRS)


def _stop_after_sop_uids(tag: Any, vr: Any, length: Any) -> bool:
    return int(tag) > _SOP_INSTANCE_TAG


def _uids_by_pydicom(fh: BinaryIO) -> tuple[str, str] | None:
    try:
        ds = read_partial(fh, _stop_after_sop_uids)
        found_class = str(ds.get("SOPClassUID", "") or "").strip("\x00 ")
        found_instance = str(ds.get("SOPInstanceUID", "") or "").strip("\x00 ")
    except Exception:  # noqa: BLE001 - the ingest path reports unreadable data itself
        return None
    return found_class, found_instance


def _uids_from_head(head: bytes, transfer_syntax: str) -> tuple[str, str] | None:
    """(0008,0016) and (0008,0018) from the first bytes of a Part 10 file written by
    pynetdicom, by walking the first data set elements; ``None`` when the short walk does
    not apply (big endian, deflated, undefined lengths, UIDs beyond ``head``)."""
    syntax = UID(transfer_syntax)
    start = data_set_offset(head)
    if not syntax.is_little_endian or syntax.is_deflated or start is None:
        return None
    pos = start
    try:
        implicit = syntax.is_implicit_VR
        found: dict[int, str] = {}
        while True:
            if pos + 8 > len(head):
                if len(head) >= IDENTITY_HEAD:
                    return None  # the head ends before (0008,0018): let pydicom read on
                break
            group, element = struct.unpack_from("<HH", head, pos)
            tag = (group << 16) | element
            if tag > _SOP_INSTANCE_TAG:
                break
            if implicit:
                (length,) = struct.unpack_from("<I", head, pos + 4)
                pos += 8
            elif not (vr := head[pos + 4 : pos + 6]).isalpha() or not vr.isupper():
                return None  # implicit VR despite an explicit syntax: pydicom copes
            elif vr in _LONG_VRS:
                (length,) = struct.unpack_from("<I", head, pos + 8)
                pos += 12
            else:
                (length,) = struct.unpack_from("<H", head, pos + 6)
                pos += 8
            if length == 0xFFFFFFFF or pos + length > len(head):
                return None
            if tag in (_SOP_CLASS_TAG, _SOP_INSTANCE_TAG):
                found[tag] = head[pos : pos + length].decode("ascii", "replace").strip("\x00 ")
            pos += length
    except (struct.error, IndexError):
        return None
    return found.get(_SOP_CLASS_TAG, ""), found.get(_SOP_INSTANCE_TAG, "")


def _identity_status(
    found: tuple[str, str] | None, sop_class: str, sop_instance: str
) -> Dataset | None:
    """PS3.4 B.2.3 / PS3.7 9.1.1: the data set must be the instance the command names."""
    if found is None:
        return None
    found_class, found_instance = found
    if found_class and found_class != sop_class:
        return status_dataset(
            st.STORE_DATASET_MISMATCH, "SOP Class UID differs from Affected SOP Class UID"
        )
    if found_instance and found_instance != sop_instance:
        return status_dataset(
            st.STORE_INSTANCE_UID_MISMATCH, "SOP Instance UID differs from Affected SOP Inst UID"
        )
    return None


def _check_identity(path: Path, sop_class: str, sop_instance: str, syntax: str) -> Dataset | None:
    """The SOP identity check on a received file: its first bytes, else pydicom."""
    try:
        with open(path, "rb") as fh:
            found = _uids_from_head(fh.read(IDENTITY_HEAD), syntax)
            if found is None:
                fh.seek(0)
                found = _uids_by_pydicom(fh)
    except OSError:
        return None
    return _identity_status(found, sop_class, sop_instance)


def _check_identity_of(
    data: bytes | bytearray, sop_class: str, sop_instance: str, syntax: str
) -> Dataset | None:
    """The SOP identity check on a data set received in memory."""
    found = _uids_from_head(bytes(data[:IDENTITY_HEAD]), syntax)
    if found is None:
        found = _uids_by_pydicom(BytesIO(data))
    return _identity_status(found, sop_class, sop_instance)


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


def store_received(
    archive: Archive,
    received: Path,
    *,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    origin: Origin,
) -> StoreOutcome | Dataset:
    """Check and store one received data set; a status ``Dataset`` when it is refused.

    The file pynetdicom wrote is renamed into the store, not copied: creating a
    file is the dearest step of a small C-STORE (about 0.5-0.9 ms on the benchmark
    machine), so one creation per instance is the floor.
    """
    mismatch = _check_identity(received, sop_class, sop_instance, transfer_syntax)
    return mismatch if mismatch is not None else _adopt(archive, received, origin)


def store_spooled(
    archive: Archive,
    received: ReceiveSpool,
    *,
    sop_class: str,
    sop_instance: str,
    transfer_syntax: str,
    origin: Origin,
) -> StoreOutcome | Dataset:
    """Check and store a data set received into a spool (``dimse.fastpath.spool``): from memory
    through the blob writer, or by adopting its file, which already lies in the store
    (hashed as it was written)."""
    received.close()
    data = received.in_memory
    if data is None:
        mismatch = _check_identity(received.path, sop_class, sop_instance, transfer_syntax)
        if mismatch is not None:
            return mismatch
        return archive.store_path(received.path, origin, move=True, written=received.written)
    mismatch = _check_identity_of(data, sop_class, sop_instance, transfer_syntax)
    if mismatch is not None:
        return mismatch
    try:
        writer = archive.begin_blob()
    except StorageFullError as exc:
        return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
    try:
        writer.write(data)
    except StorageFullError as exc:
        archive.abort_blob(writer)
        return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
    except BaseException:
        archive.abort_blob(writer)
        raise
    return archive.store_blob(writer, origin)


def _store_event(event: Event, archive: Archive, origin: Origin) -> StoreOutcome | Dataset:
    request = event.request
    assert isinstance(request, C_STORE)
    sop_class = str(request.AffectedSOPClassUID)
    sop_instance = str(request.AffectedSOPInstanceUID)
    syntax = str(event.context.transfer_syntax)
    received = spool.received(request)
    if received is not None:
        return store_spooled(
            archive,
            received,
            sop_class=sop_class,
            sop_instance=sop_instance,
            transfer_syntax=syntax,
            origin=origin,
        )
    return store_received(
        archive,
        Path(event.dataset_path),
        sop_class=sop_class,
        sop_instance=sop_instance,
        transfer_syntax=syntax,
        origin=origin,
    )


def handle_store(
    event: Event, archive: Archive, policy: AccessPolicy, metrics: Metrics
) -> Dataset | int:
    """EVT_C_STORE: the status to answer, a plain ``int`` for Success (pynetdicom and
    ``dimse.fastpath.inline`` take either, and Success needs no status data set)."""
    bind_context(event)
    operation = Operation(metrics, "C-STORE")
    calling = calling_ae_of(event.assoc)
    request = event.request
    assert isinstance(request, C_STORE)
    result: Dataset | int
    if not policy.allows(calling, STORE):
        result = status_dataset(st.REFUSED_NOT_AUTHORIZED, "store not permitted for this AE")
    else:
        sop_instance = str(request.AffectedSOPInstanceUID)
        origin = Origin(
            "dimse",
            calling,
            str(event.assoc.requestor.address or ""),
            policy.principal(calling).facilities,
        )
        try:
            stored = _store_event(event, archive, origin)
        except OSError as exc:
            log.error("C-STORE could not spool the received data set: %s", exc)
            stored = StoreOutcome(Status.FAILED, reason="spool failed")
        if isinstance(stored, Dataset):
            result = stored
            audit.tally_store(event.assoc, "", False)
        else:
            audit.tally_store(event.assoc, stored.study_uid, stored.ok)
            metrics.stored_instances.labels(protocol="dimse", outcome=stored.status.value).inc()
            result = st.SUCCESS if stored.ok else outcome_status(stored)
            log.debug("C-STORE %s -> %s", sop_instance, stored.status.value)
    code = result if isinstance(result, int) else int(result.Status)
    operation.done(code)
    if code != st.SUCCESS:
        log.info("C-STORE failed: status 0x%04X", code)
    return result


def discard_partial_receive(event: Event) -> None:
    """EVT_ABORTED / EVT_CONN_CLOSE: remove what an unfinished C-STORE received."""
    receive.discard_partial_receive(event.assoc)
