"""Storage SCP (PS3.4 Annex B): every C-STORE goes through the archive's one ingest path.

The handler hands the store what was received and what the request says it is (its
Affected SOP Class and Instance UIDs, ``Expected``); the store writes the Part 10
header, parses the header of the data set once and refuses a data set that is not
the instance the request names (PS3.4 B.2.3: 0xA900 for another SOP class, 0xC002 for
another instance), then stores it as received.

With the fast path (``dimse.fastpath.spool``) the data set was written, as it
arrived, into a blob writer of the store, which the handler hands over
(``Archive.store_blob``: no copy, no second hash). On stock pynetdicom it is in
pynetdicom's receive file (``event.dataset_path``, chunked receive), whose data set
the store copies behind its own header (``Archive.store_received_file``). Pixel data
is never decoded and a large object never sits whole in memory either way.

An association aborted mid-transfer never reaches the handler, so nothing is
half-stored; the partial blob or temporary file is removed by
``discard_partial_receive``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event

from dimse import audit
from dimse import status as st
from dimse.access import STORE, AccessPolicy, calling_ae_of
from dimse.fastpath import receive, spool
from dimse.fastpath.spool import FileMeta, ReceiveSpool
from dimse.observe import Operation, bind_context, log_failure
from noctis_pacs.core.metrics import Metrics
from storage.archive import (
    Archive,
    Expected,
    Implementation,
    Origin,
    RejectKind,
    Status,
    StoreOutcome,
)

log = logging.getLogger("noctis.dimse.store")

_REJECT_STATUS = {
    RejectKind.NOT_DICOM: st.STORE_CANNOT_UNDERSTAND,
    RejectKind.TRUNCATED: st.STORE_TRUNCATED,
    RejectKind.MISSING_ATTRIBUTE: st.STORE_DATASET_MISMATCH,
    RejectKind.MISMATCH: st.STORE_DATASET_MISMATCH,
    RejectKind.STUDY_MISMATCH: st.STORE_DATASET_MISMATCH,
    RejectKind.CONFLICT: st.STORE_DATASET_MISMATCH,
    RejectKind.CLASS_MISMATCH: st.STORE_DATASET_MISMATCH,
    RejectKind.INSTANCE_MISMATCH: st.STORE_INSTANCE_UID_MISMATCH,
    RejectKind.INVALID_UID: st.STORE_DATASET_MISMATCH,
}
#: The header values of a received file: pynetdicom's, as its own receive file has.
RECEIVED_BY = Implementation(PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION)


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
        # The reason names the free-space reserve (storage.min_free_mb) when that refused.
        return status_dataset(st.STORE_OUT_OF_RESOURCES, outcome.reason or "storage full")
    if outcome.status is Status.UNAVAILABLE:
        return status_dataset(st.STORE_OUT_OF_RESOURCES_INTERNAL, outcome.reason)
    if outcome.status is Status.REJECTED:
        code = _REJECT_STATUS.get(
            outcome.reject_kind or RejectKind.NOT_DICOM, st.STORE_CANNOT_UNDERSTAND
        )
        return status_dataset(code, outcome.reason)
    return status_dataset(st.STORE_OUT_OF_RESOURCES_INTERNAL, "archive could not store; retry")


def store_received(
    archive: Archive,
    received: Path,
    expected: Expected,
    *,
    transfer_syntax: str,
    origin: Origin,
) -> StoreOutcome:
    """Store the data set of pynetdicom's receive file (stock pynetdicom)."""
    return archive.store_received_file(
        received,
        expected,
        transfer_syntax_uid=transfer_syntax,
        implementation=RECEIVED_BY,
        origin=origin,
    )


def store_spooled(
    archive: Archive, received: ReceiveSpool, expected: Expected, *, origin: Origin
) -> StoreOutcome:
    """Store a data set received into a blob writer of the store (the fast path)."""
    if received.error is not None:
        received.discard()
        return StoreOutcome(Status.STORAGE_FULL, reason=str(received.error))
    writer = received.take()
    if writer is None:
        return StoreOutcome(Status.FAILED, reason="nothing was received")
    return archive.store_blob(writer, origin, expected=expected)


def _store_event(event: Event, archive: Archive, origin: Origin) -> StoreOutcome:
    request = event.request
    assert isinstance(request, C_STORE)
    expected = Expected(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID))
    received = spool.received(request)
    if received is not None:
        return store_spooled(archive, received, expected, origin=origin)
    return store_received(
        archive,
        Path(event.dataset_path),
        expected,
        transfer_syntax=str(event.context.transfer_syntax),
        origin=origin,
    )


def handle_store(
    event: Event, archive: Archive, policy: AccessPolicy, metrics: Metrics
) -> Dataset | int:
    """EVT_C_STORE: the status to answer, a plain ``int`` for Success (pynetdicom and
    ``dimse.fastpath.inline`` take either, and Success needs no status data set)."""
    bind_context(event)
    request = event.request
    assert isinstance(request, C_STORE)
    return serve_store(
        archive,
        policy,
        metrics,
        caller=(calling_ae_of(event.assoc), str(event.assoc.requestor.address or "")),
        sop_instance=str(request.AffectedSOPInstanceUID),
        store=lambda origin: _store_event(event, archive, origin),
        tally=audit.tally_of(event.assoc),
    )


def serve_store(
    archive: Archive,
    policy: AccessPolicy,
    metrics: Metrics,
    *,
    caller: tuple[str, str],
    sop_instance: str,
    store: Callable[[Origin], StoreOutcome],
    tally: audit.StoreTally,
) -> Dataset | int:
    """One C-STORE by ``caller`` (calling AE title, address), whichever layer received it:
    the permission checked, ``store`` run with the request's origin, the outcome counted
    (metrics, the association's audit ``tally``); the status to answer."""
    operation = Operation(metrics, "C-STORE")
    calling, address = caller
    result: Dataset | int
    stored: StoreOutcome | None = None
    if not policy.allows(calling, STORE):
        result = status_dataset(st.REFUSED_NOT_AUTHORIZED, "store not permitted for this AE")
    else:
        origin = Origin("dimse", calling, address, policy.principal(calling).facilities)
        try:
            stored = store(origin)
        except OSError as exc:
            log.error("C-STORE could not spool the received data set: %s", exc)
            stored = StoreOutcome(Status.FAILED, reason="spool failed")
        tally.add(stored.study_uid, stored.ok)
        metrics.stored_instances.labels(protocol="dimse", outcome=stored.status.value).inc()
        result = st.SUCCESS if stored.ok else outcome_status(stored)
        log.debug("C-STORE %s -> %s", sop_instance, stored.status.value)
    code = result if isinstance(result, int) else int(result.Status)
    operation.done(code)
    if code != st.SUCCESS:
        comment = "" if isinstance(result, int) else str(result.get("ErrorComment", ""))
        log_failure("C-STORE", code, comment or (stored.reason if stored is not None else ""))
    return result


class DirectStore:
    """The C-STOREs of associations ``dimse.fastpath.direct`` serves without pynetdicom's
    association layer: the same checks, store, metrics and audit as :func:`handle_store`."""

    def __init__(self, archive: Archive, policy: AccessPolicy, metrics: Metrics) -> None:
        self.archive = archive
        self.policy = policy
        self.metrics = metrics

    def admits(self, calling: str, address: str) -> bool:
        """Whether the settings alone let ``calling`` at ``address`` associate and store
        (anything else is decided on pynetdicom's path, with its rejections and records)."""
        return self.policy.stores_by_settings(calling, address)

    def session(self, caller: tuple[str, str]) -> DirectStoreSession:
        """The C-STOREs of one association of ``caller`` (calling AE title, address)."""
        return DirectStoreSession(self, caller)


class DirectStoreSession:
    """The C-STOREs of one association served by ``dimse.fastpath.direct``."""

    def __init__(self, owner: DirectStore, caller: tuple[str, str]) -> None:
        self.owner = owner
        self.caller = caller
        self.tally = audit.StoreTally()

    def spool(self, sop_class: str, sop_instance: str, transfer_syntax: str) -> ReceiveSpool:
        """Where the data set of a C-STORE-RQ is written as it arrives, header first."""
        received = ReceiveSpool(self.owner.archive)
        received.begin(FileMeta(sop_class, sop_instance, transfer_syntax))
        return received

    def store(self, sop_class: str, sop_instance: str, received: ReceiveSpool) -> tuple[int, str]:
        """Store a received data set; the status to answer and its Error Comment."""
        owner = self.owner
        expected = Expected(sop_class, sop_instance)
        try:
            result = serve_store(
                owner.archive,
                owner.policy,
                owner.metrics,
                caller=self.caller,
                sop_instance=sop_instance,
                store=lambda origin: store_spooled(
                    owner.archive, received, expected, origin=origin
                ),
                tally=self.tally,
            )
        finally:
            received.discard()  # memory, or a file the store did not adopt
        if isinstance(result, int):
            return result, ""
        return int(result.Status), str(result.get("ErrorComment", "") or "")

    def ended(self) -> None:
        """The association ended: one audit record per study it stored."""
        tally, self.tally = self.tally, audit.StoreTally()
        audit.flush_tally(self.owner.archive, tally, self.caller)


def discard_partial_receive(event: Event) -> None:
    """EVT_ABORTED / EVT_CONN_CLOSE: remove what an unfinished C-STORE received."""
    receive.discard_partial_receive(event.assoc)
