"""The audit trail of DIMSE operations: who (calling AE title, address), what, outcome.

Queries and retrieves give one record per request (C-FIND with its query keys,
C-MOVE / C-GET with the studies sent and the sub-operation counts, MWL, MPPS).
C-STOREs are counted per association and study, and recorded once when the
association ends (PS3.15 A.5.3.3 "DICOM Instances Transferred" is per study and
association too): a busy modality adds one record per study, not one per
instance, and the store path only updates a counter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pynetdicom.association import Association
from pynetdicom.events import Event

from dimse import status as st
from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from storage.archive import Archive

AE_KIND = "ae"
_TALLY_ATTR = "_noctis_store_tally"
_TALLY_LOCK = threading.Lock()
#: Query key values longer than this are cut in the record.
MAX_KEY_TEXT = 256


def caller_of(assoc: Association) -> tuple[str, str]:
    """(calling AE title, peer address) of an association."""
    requestor = assoc.requestor
    title = str(requestor.ae_title or "").strip()
    if not title:
        primitive = getattr(requestor, "primitive", None)
        title = str(getattr(primitive, "calling_ae_title", "") or "").strip()
    return title, str(requestor.address or "")


def outcome_of(status: int) -> AuditOutcome:
    """PS3.7 Annex C status classes as audit outcomes."""
    if status in (st.SUCCESS, st.CANCEL):
        return AuditOutcome.SUCCESS
    if status == st.REFUSED_NOT_AUTHORIZED:
        return AuditOutcome.DENIED
    if status == st.QR_WARNING_SUBOPS_FAILED:  # some sub-operations or stores failed
        return AuditOutcome.PARTIAL
    return AuditOutcome.FAILURE


def query_keys(identifier: Dataset | None) -> dict[str, str]:
    """The matching keys of a C-FIND / C-MOVE / C-GET identifier (non-empty values only;
    sequence items as ``Sequence.Keyword``)."""
    keys: dict[str, str] = {}
    if identifier is None:
        return keys

    def walk(ds: Dataset, prefix: str) -> None:
        for element in ds:
            keyword = element.keyword or f"{element.tag:08X}"
            if element.VR == "SQ":
                for item in element.value or []:
                    walk(item, f"{prefix}{keyword}.")
                continue
            if element.tag.group == 0x0008 and element.keyword == "SpecificCharacterSet":
                continue
            value = element.value
            if value is None or value == "" or element.tag.element == 0:
                continue
            text = "\\".join(str(v) for v in value) if element.VM > 1 else str(value)
            if text:
                keys[f"{prefix}{keyword}"] = text[:MAX_KEY_TEXT]

    try:
        walk(identifier, "")
    except Exception:  # noqa: BLE001 - a malformed identifier is refused elsewhere
        return keys
    return keys


def record(
    archive: Archive,
    by: Association | tuple[str, str],
    action: str,
    status: int,
    *,
    study_uids: Iterable[str] = (),
    series_uids: Iterable[str] = (),
    sop_uids: Iterable[str] = (),
    query: dict[str, str] | None = None,
    detail: str = "",
) -> None:
    """Queue the record of one DIMSE operation by an association's caller (``by``: the
    association, or its calling AE title and peer address)."""
    if not archive.audit_enabled:
        return
    title, address = by if isinstance(by, tuple) else caller_of(by)
    text = f"status 0x{status:04X}" + (f", {detail}" if detail else "")
    archive.audit_later(
        AuditEvent(
            action=action,
            outcome=str(outcome_of(status)),
            principal=title,
            principal_kind=AE_KIND,
            client=address,
            study_uids=tuple(dict.fromkeys(u for u in study_uids if u)),
            series_uids=tuple(dict.fromkeys(u for u in series_uids if u)),
            sop_uids=tuple(dict.fromkeys(u for u in sop_uids if u)),
            query=dict(query or {}),
            detail=text,
        )
    )


@dataclass
class StoreTally:
    """C-STOREs of one association, per study: [stored, failed]."""

    studies: dict[str, list[int]] = field(default_factory=dict)
    failed_unknown: int = 0

    def add(self, study_uid: str, ok: bool) -> None:
        """Count one C-STORE (its study, when the data set named one)."""
        if not study_uid:
            self.failed_unknown += 0 if ok else 1
            return
        counts = self.studies.get(study_uid)
        if counts is None:
            counts = self.studies[study_uid] = [0, 0]
        counts[0 if ok else 1] += 1


def tally_of(assoc: Association) -> StoreTally:
    """The C-STORE tally of ``assoc`` (created on its first C-STORE)."""
    tally: StoreTally | None = getattr(assoc, _TALLY_ATTR, None)
    if tally is None:
        with _TALLY_LOCK:
            tally = getattr(assoc, _TALLY_ATTR, None)
            if tally is None:
                tally = StoreTally()
                setattr(assoc, _TALLY_ATTR, tally)
    return tally


def flush_store_tally(event: Event, archive: Archive) -> None:
    """EVT_RELEASED / EVT_ABORTED / EVT_CONN_CLOSE: one C-STORE record per study received
    on the association (once, whichever event comes first)."""
    assoc = event.assoc
    with _TALLY_LOCK:
        tally: StoreTally | None = getattr(assoc, _TALLY_ATTR, None)
        if tally is None:
            return
        setattr(assoc, _TALLY_ATTR, StoreTally())
    flush_tally(archive, tally, caller_of(assoc))


def flush_tally(archive: Archive, tally: StoreTally, caller: tuple[str, str]) -> None:
    """One C-STORE record per study of ``tally``, by ``caller`` (calling AE title, address)."""
    if not archive.audit_enabled:
        return
    for study_uid, (stored, failed) in tally.studies.items():
        status = (
            st.SUCCESS
            if not failed
            else (st.QR_WARNING_SUBOPS_FAILED if stored else st.QR_UNABLE_TO_PROCESS)
        )
        record(
            archive,
            caller,
            AuditAction.C_STORE,
            status,
            study_uids=[study_uid],
            detail=f"{stored} stored, {failed} failed",
        )
    if tally.failed_unknown:
        record(
            archive,
            caller,
            AuditAction.C_STORE,
            st.QR_UNABLE_TO_PROCESS,
            detail=f"{tally.failed_unknown} refused before their study was known",
        )


def identifier_of(event: Event) -> Dataset | None:
    """The request's identifier, ``None`` when it cannot be decoded (refused elsewhere)."""
    try:
        identifier = event.identifier
    except Exception:  # noqa: BLE001
        return None
    return identifier if isinstance(identifier, Dataset) else None


def identifier_studies(identifier: Dataset | None) -> list[str]:
    """Study Instance UIDs an identifier names (a UID list counts each)."""
    if identifier is None:
        return []
    try:
        value = identifier.get("StudyInstanceUID")
    except Exception:  # noqa: BLE001
        return []
    if not value:
        return []
    values = value if isinstance(value, list | tuple) else str(value).split("\\")
    return [str(v).strip() for v in values if str(v).strip()]
