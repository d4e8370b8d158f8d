"""Query/Retrieve C-MOVE (PS3.4 C.4.2) and C-GET (PS3.4 C.4.3) SCPs.

The identifier compiles to the archive's query form; ``Archive.locate`` lists
the instances; pynetdicom runs the C-STORE sub-operations and counts them
(remaining, completed, warning, failed) and reports the Failed SOP Instance
UID List on partial failure.  Each instance is sent in its stored transfer
syntax when the peer accepted it, else converted to a native syntax the peer
accepted (``noctis_pacs.core.transcode``, the converter WADO-RS uses too).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext, StoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dimse import audit, fastpath
from dimse import status as st
from dimse.access import RETRIEVE, AccessPolicy, calling_ae_of
from dimse.fastpath.sender import StoredInstance
from dimse.identifier import MODELS, IdentifierError, parse_identifier, retrieve_key_error
from dimse.observe import Operation, bind_context
from dimse.store import status_dataset
from dimse.suboperations import SubOperations, mark_unsendable
from noctis_pacs.core.audit import AuditAction
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.model import InvalidMatchValue
from noctis_pacs.core.remotes import DIMSE, Remote
from noctis_pacs.core.settings import Settings
from noctis_pacs.core.transcode import (
    NATIVE_SYNTAXES,
    ConversionError,
    choose_syntax,
    load_converted,
)
from storage.archive import Archive, InstanceLocation, QueryError

log = logging.getLogger("noctis.dimse.retrieve")

#: PS3.8 9.3.2.2: at most 128 presentation contexts in one association request.
MAX_CONTEXTS = 128


@dataclass
class SubAssociation:
    """The C-MOVE sub-association, captured when the destination accepts it."""

    tally: SubOperations
    assoc: Association | None = None
    #: The association of the C-MOVE request (its fast path, if any, tunes this one).
    parent: Association | None = None
    failed: list[str] = field(default_factory=list)


def _on_sub_accepted(event: Event, holder: SubAssociation) -> None:
    holder.assoc = event.assoc
    # With the fast path, instances sent as stored go out from their files; either way
    # every result is counted with its reason (dimse/suboperations.py).
    fastpath.tune_sub_association(event.assoc, holder.parent)
    holder.tally.attach(event.assoc)


def locate(
    event: Event, archive: Archive, settings: Settings, policy: AccessPolicy
) -> list[InstanceLocation]:
    """The instances the identifier names, in the studies the calling AE sees; raises
    ``IdentifierError`` on a bad identifier, and on one without the unique keys of its
    level and those above (PS3.4 C.4.2.2.1): never a retrieve widened to every instance
    of the archive."""
    model = MODELS.get(str(event.request.AffectedSOPClassUID), "study")
    parsed = parse_identifier(
        event.identifier, model, case_insensitive_pn=settings.query.case_insensitive_pn
    )
    missing = retrieve_key_error(event.identifier, model, parsed.level)
    if missing is not None:
        raise IdentifierError(missing)
    principal = policy.principal(calling_ae_of(event.assoc))
    return archive.locate(parsed.query, principal=principal)


def move_contexts(locations: list[InstanceLocation]) -> list[PresentationContext]:
    """Presentation contexts for the sub-association (PS3.4 C.4.2.3.1).

    Each SOP class is offered in one context of the native syntaxes, explicit little
    endian first (any of them converts to any other), and in each syntax it is stored
    in, alone: a destination that accepts that syntax takes the instance as stored, sent
    from its file unchanged (a destination choosing within one shared context may prefer
    a syntax that costs a conversion per instance: ``storescp +xa`` takes deflated).
    Within 128 contexts, the shared ones first so that every class can be sent.
    """
    pairs = sorted({(loc.sop_class_uid, loc.transfer_syntax_uid) for loc in locations})
    classes = sorted({sop for sop, _ in pairs})
    contexts = [build_context(sop, list(NATIVE_SYNTAXES)) for sop in classes]
    for sop, syntax in pairs:
        if len(contexts) >= MAX_CONTEXTS:
            break
        contexts.append(build_context(sop, [syntax]))
    return contexts[:MAX_CONTEXTS]


def _accepted_syntaxes(assoc: Association | None, sop_class: str, *, as_scu: bool) -> set[str]:
    if assoc is None:
        return set()
    return {
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class and (not as_scu or cx.as_scu)
    }


def _prepare(
    archive: Archive, location: InstanceLocation, accepted: set[str], *, direct: bool = False
) -> Dataset:
    """The dataset to send; on failure a stub whose send fails (counted as failed).

    With ``direct`` (a C-MOVE sub-association, whose ``send_c_store`` is
    ``dimse.fastpath.sender``'s) an instance sent as stored is only named, with its blob."""
    target = choose_syntax(location.transfer_syntax_uid, accepted)
    if direct and target is not None and target == location.transfer_syntax_uid:
        opener = functools.partial(archive.open_blob, location)
        return StoredInstance(
            opener, location.size, location.sop_class_uid, location.sop_uid, target
        )
    if target is not None:
        try:
            with archive.open_blob(location) as fh:
                if target == location.transfer_syntax_uid:
                    return dcmread(fh)
                return load_converted(fh, target)
        except (ConversionError, OSError) as exc:
            reason = f"cannot be sent in {target}: {exc}"
    else:
        reason = (
            f"stored as {location.transfer_syntax_uid}, which the peer did not accept,"
            " and no accepted syntax it converts to"
        )
    # A dataset no accepted context fits: pynetdicom's send fails and lists the UID.
    stub = mark_unsendable(Dataset(), reason)
    stub.SOPClassUID = UID(location.sop_class_uid)
    stub.SOPInstanceUID = UID(location.sop_uid)
    stub.file_meta = Dataset()  # type: ignore[assignment]
    stub.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.999")
    return stub


def _locate_or_refuse(
    event: Event, archive: Archive, policy: AccessPolicy, settings: Settings
) -> tuple[list[InstanceLocation], tuple[int, str] | None]:
    """The instances to send, or the refusal (status, comment) to answer with:
    0x0124 for a caller without retrieve permission (PS3.7 C.5.3), 0xA900 for an
    identifier that does not match the SOP class (PS3.4 C.4.2.1.5, C.4.3.1.4)."""
    if not policy.allows(calling_ae_of(event.assoc), RETRIEVE):
        return [], (st.REFUSED_NOT_AUTHORIZED, "retrieve not permitted for this AE")
    try:
        return locate(event, archive, settings, policy), None
    except (IdentifierError, QueryError) as exc:
        return [], (st.QR_IDENTIFIER_MISMATCH, str(exc))
    except InvalidMatchValue as exc:  # a DA/TM/DT key PS3.5 6.2 does not allow
        return [], (st.QR_UNABLE_TO_PROCESS, str(exc))


def _refusal(code: int, comment: str) -> Iterator[Any]:
    """pynetdicom answers Success to zero sub-operations, so a refusal announces one
    and then fails it with ``code`` and its Error Comment before any is attempted."""
    yield 1
    yield status_dataset(code, comment), None


#: What a refused C-MOVE's sub-association offers (Verification and the storage SOP
#: classes, so that any Storage SCP accepts it): pynetdicom opens it before it reads the
#: refusal, and releases it with nothing sent over it.
_REFUSAL_CONTEXTS = [build_context(Verification)] + [
    build_context(str(cx.abstract_syntax)) for cx in StoragePresentationContexts
][: MAX_CONTEXTS - 1]


def _sub_operations(
    event: Event,
    archive: Archive,
    locations: list[InstanceLocation],
    storing_assoc: Callable[[], Association | None],
    *,
    as_scu: bool,
) -> Generator[Any, None, int]:
    """(Pending, dataset) per instance over ``storing_assoc()`` (the C-MOVE
    sub-association, or the C-GET association itself); C-CANCEL stops it (PS3.4
    C.4.2.3.1 / C.4.3.3.1). Returns the status that ends the operation."""
    accepted_by_class: dict[tuple[int, str], set[str]] = {}
    for location in locations:
        if event.is_cancelled:
            yield st.CANCEL, None
            return st.CANCEL
        assoc = storing_assoc()
        key = (id(assoc), location.sop_class_uid)
        accepted = accepted_by_class.get(key)
        if accepted is None:
            accepted = _accepted_syntaxes(assoc, location.sop_class_uid, as_scu=as_scu)
            if assoc is not None:
                accepted_by_class[key] = accepted
        direct = fastpath.sends_from_files(assoc)
        yield st.PENDING, _prepare(archive, location, accepted, direct=direct)
    return st.SUCCESS


def _destination(archive: Archive, ae_title: str) -> Remote | None:
    """The move destination: a configured remote, else one kept in the index (added at
    run time and used at once)."""
    remote = archive.remotes.by_ae_title(ae_title)
    return remote if remote is not None and remote.kind == DIMSE else None


def handle_move(
    event: Event, archive: Archive, policy: AccessPolicy, metrics: Metrics, settings: Settings
) -> Iterator[Any]:
    """EVT_C_MOVE: destination, number of sub-operations, then (status, dataset) pairs.

    A refused C-MOVE (no retrieve permission 0124, an identifier that does not fit the
    model or lacks its unique keys A900) answers that status with its Error Comment:
    pynetdicom opens the sub-association before it reads any status, so the refusal
    goes through a sub-association over which nothing is sent (a destination that cannot
    be reached makes it A801, still moving nothing)."""
    bind_context(event)
    operation = Operation(metrics, "C-MOVE")
    tally = SubOperations("C-MOVE", metrics)
    final = st.SUCCESS
    locations: list[InstanceLocation] = []
    target = str(event.move_destination or "").strip()
    try:
        destination = _destination(archive, str(event.move_destination or ""))
        if destination is None:
            final = st.MOVE_DESTINATION_UNKNOWN
            log.warning("C-MOVE to an unknown destination AE")
            yield None, None
            return
        locations, refused = _locate_or_refuse(event, archive, policy, settings)
        holder = SubAssociation(tally, parent=event.assoc)
        if refused is not None:
            final = refused[0]
            log.warning("C-MOVE refused: %s", refused[1])
            yield destination.host, destination.port, {"contexts": _REFUSAL_CONTEXTS}
            yield from _refusal(*refused)
            return
        yield (
            destination.host,
            destination.port,
            {
                "contexts": move_contexts(locations) if locations else None,
                "evt_handlers": [(evt.EVT_ACCEPTED, _on_sub_accepted, [holder])],
            },
        )
        yield len(locations)
        final = yield from _sub_operations(
            event, archive, locations, lambda: holder.assoc, as_scu=False
        )
        if final == st.CANCEL:
            return
        final = tally.final_status()
        _log_result(f"C-MOVE of {len(locations)} instance(s) to {destination.ae_title}", tally)
    except Exception:
        final = st.QR_UNABLE_TO_PROCESS
        raise
    finally:
        operation.done(final)
        _audit(archive, event, AuditAction.C_MOVE, final, locations, f"to {target}")


def _log_result(what: str, tally: SubOperations) -> None:
    if tally.failed or tally.warning:
        log.warning("%s: %s", what, tally.summary())
    else:
        log.info("%s: %s", what, tally.summary())


def _audit(
    archive: Archive,
    event: Event,
    action: str,
    final: int,
    locations: list[InstanceLocation],
    detail: str,
) -> None:
    identifier = audit.identifier_of(event)
    audit.record(
        archive,
        event.assoc,
        action,
        final,
        study_uids=[loc.study_uid for loc in locations] or audit.identifier_studies(identifier),
        query=audit.query_keys(identifier),
        detail=f"{len(locations)} instance(s) {detail}".strip(),
    )


def handle_get(
    event: Event, archive: Archive, policy: AccessPolicy, metrics: Metrics, settings: Settings
) -> Iterator[Any]:
    """EVT_C_GET: number of sub-operations, then (status, dataset) pairs.

    The C-STORE sub-operations run on the same association over the storage
    contexts the requestor offered with SCP/SCU Role Selection (PS3.7 D.3.3.4);
    their results are counted with their reasons while the operation runs.
    """
    bind_context(event)
    operation = Operation(metrics, "C-GET")
    tally = SubOperations("C-GET", metrics)
    final = st.SUCCESS
    locations: list[InstanceLocation] = []
    detach: Callable[[], None] | None = None
    try:
        locations, refused = _locate_or_refuse(event, archive, policy, settings)
        if refused is not None:
            final = refused[0]
            log.warning("C-GET refused: %s", refused[1])
            yield from _refusal(*refused)
            return
        fastpath.tune_get_association(event.assoc)
        detach = tally.attach(event.assoc)
        yield len(locations)
        final = yield from _sub_operations(
            event, archive, locations, lambda: event.assoc, as_scu=True
        )
        if final == st.CANCEL:
            return
        final = tally.final_status()
        _log_result(f"C-GET of {len(locations)} instance(s)", tally)
    except Exception:
        final = st.QR_UNABLE_TO_PROCESS
        raise
    finally:
        if detach is not None:
            detach()
        operation.done(final)
        _audit(archive, event, AuditAction.C_GET, final, locations, "")


def dataset_to_send(
    archive: Archive, location: InstanceLocation, accepted: set[str], *, direct: bool
) -> Dataset:
    """What a C-STORE SCU (``dimse.scu``) sends for ``location`` on an association that
    accepted ``accepted`` syntaxes for its SOP class; the same choice as a C-MOVE."""
    return _prepare(archive, location, accepted, direct=direct)
