"""The DIMSE services this AE offers, assembled in one place.

``build_services`` returns the supported presentation contexts (each tagged
with the permission it needs) and the (event, handler, args) bindings.  A new
service (Modality Worklist, MPPS, ...) adds its contexts here and either its
own event binding (N-CREATE, N-SET) or a route in ``find_routes`` — pynetdicom
allows one handler per intervention event, so C-FIND requests are dispatched
by their SOP Class UID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.uid import (
    AllTransferSyntaxes,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import evt
from pynetdicom.events import Event
from pynetdicom.presentation import AllStoragePresentationContexts

from dimse import status as st
from dimse.access import QUERY, RETRIEVE, STORE, AccessPolicy, handle_requested
from dimse.audit import flush_store_tally
from dimse.find import handle_find
from dimse.observe import Operation, bind_context
from dimse.retrieve import handle_get, handle_move
from dimse.store import discard_partial_receive, handle_store, status_dataset
from dimse.worklist import register_workflow
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.settings import Settings
from storage.archive import Archive

VERIFICATION = "1.2.840.10008.1.1"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"

#: Every transfer syntax the archive stores as received (PS3.5 Annex A), Explicit VR
#: Little Endian first: the acceptor chooses among the proposed syntaxes (PS3.8
#: 9.3.3.2; pynetdicom in this list's order), so a peer proposing it gets it rather than
#: Implicit VR (VRs kept as sent), and a C-GET requestor that proposes it receives the
#: instances stored in it as they are (``dimse.fastpath.sender``), as most are.
STORAGE_SYNTAXES: tuple[str, ...] = (str(ExplicitVRLittleEndian),) + tuple(
    str(uid) for uid in AllTransferSyntaxes if uid != ExplicitVRLittleEndian
)
#: Query/Retrieve identifiers are small: the uncompressed syntaxes suffice.
QR_SYNTAXES: tuple[str, ...] = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Context:
    """A supported presentation context and the permission a caller needs for it."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    permission: str | None = None
    #: Accept SCP/SCU Role Selection (C-GET sub-operations run on storage contexts).
    roles: bool = False


@dataclass
class Services:
    contexts: list[Context] = field(default_factory=list)
    bindings: list[Any] = field(default_factory=list)
    #: C-FIND handlers by SOP Class UID (Q/R models now, Modality Worklist later).
    find_routes: dict[str, tuple[Handler, list[Any]]] = field(default_factory=dict)

    def permissions(self) -> Mapping[str, str | None]:
        return {cx.abstract_syntax: cx.permission for cx in self.contexts}


def handle_echo(event: Event, metrics: Metrics) -> int:
    """EVT_C_ECHO: Verification SOP Class (PS3.4 Annex A), always success."""
    bind_context(event)
    Operation(metrics, "C-ECHO").done(st.SUCCESS)
    return st.SUCCESS


def dispatch_find(event: Event, routes: Mapping[str, tuple[Handler, list[Any]]]) -> Iterator[Any]:
    """EVT_C_FIND: hand the request to the service of its SOP class."""
    route = routes.get(str(event.request.AffectedSOPClassUID))
    if route is None:
        yield status_dataset(st.QR_IDENTIFIER_MISMATCH, "SOP class not served"), None
        return
    handler, args = route
    yield from handler(event, *args)


def build_services(
    *, settings: Settings, archive: Archive, metrics: Metrics, policy: AccessPolicy
) -> Services:
    services = Services()
    services.contexts.append(Context(VERIFICATION, QR_SYNTAXES))
    for cx in AllStoragePresentationContexts:
        services.contexts.append(
            Context(str(cx.abstract_syntax), STORAGE_SYNTAXES, STORE, roles=True)
        )
    for uid in (PATIENT_ROOT_FIND, STUDY_ROOT_FIND):
        services.contexts.append(Context(uid, QR_SYNTAXES, QUERY))
    for uid in (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE, PATIENT_ROOT_GET, STUDY_ROOT_GET):
        services.contexts.append(Context(uid, QR_SYNTAXES, RETRIEVE))

    qr_args: list[Any] = [archive, policy, metrics, settings]
    services.find_routes[PATIENT_ROOT_FIND] = (handle_find, qr_args)
    services.find_routes[STUDY_ROOT_FIND] = (handle_find, qr_args)
    # Modality Worklist (C-FIND route) and MPPS (N-CREATE / N-SET): dimse/worklist.py.
    register_workflow(services, settings=settings, archive=archive, metrics=metrics, policy=policy)
    services.bindings += [
        (evt.EVT_REQUESTED, handle_requested, [policy, services.permissions(), archive]),
        (evt.EVT_C_ECHO, handle_echo, [metrics]),
        (evt.EVT_C_STORE, handle_store, [archive, policy, metrics]),
        (evt.EVT_C_FIND, dispatch_find, [services.find_routes]),
        (evt.EVT_C_MOVE, handle_move, qr_args),
        (evt.EVT_C_GET, handle_get, qr_args),
        (evt.EVT_ABORTED, discard_partial_receive, []),
        (evt.EVT_CONN_CLOSE, discard_partial_receive, []),
        # One C-STORE audit record per study, when the association ends.
        (evt.EVT_RELEASED, flush_store_tally, [archive]),
        (evt.EVT_ABORTED, flush_store_tally, [archive]),
        (evt.EVT_CONN_CLOSE, flush_store_tally, [archive]),
    ]
    return services
