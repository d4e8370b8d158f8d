"""DIMSE services x AE scopes, over the wire: with ``access_control = "allow_list"``
each calling AE is offered only the presentation contexts its ``[dimse.remotes.NAME]
permissions`` cover (PS3.8 9.3.3.2: the others are rejected), a storage context stays
for C-GET callers but their C-STOREs are refused with 0124H (PS3.7 C.5.x), and an
unknown AE gets A-ASSOCIATE-RJ (PS3.8 Table 9-21)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from noctis_pacs.core.auth import Permission
from tests.conftest import RunningServer
from tests.factory import make_dataset
from tests.workflow_support import mpps_create_dataset, mwl_identifier

P = Permission
#: service -> (SOP class, the permission it needs; None = any admitted AE)
SERVICES: dict[str, tuple[str, Permission | None]] = {
    "C-ECHO": (Verification, None),
    "C-STORE": (SecondaryCaptureImageStorage, P.STORE),
    "C-FIND": (StudyRootQueryRetrieveInformationModelFind, P.QUERY),
    "C-MOVE": (StudyRootQueryRetrieveInformationModelMove, P.RETRIEVE),
    "C-GET": (StudyRootQueryRetrieveInformationModelGet, P.RETRIEVE),
    "MWL C-FIND": (ModalityWorklistInformationFind, P.QUERY),
    "MPPS N-CREATE": (ModalityPerformedProcedureStep, P.STORE),
}
#: AE title -> its permissions (the scopes under test)
SCOPES: dict[str, tuple[Permission, ...]] = {
    "FULL": (P.STORE, P.QUERY, P.RETRIEVE),
    "STORER": (P.STORE,),
    "QUERIER": (P.QUERY,),
    "RETRIEVER": (P.RETRIEVE,),
    "NOTHING": (),
}
REFUSED = 0x0124


def remotes() -> str:
    out = []
    for index, (title, permissions) in enumerate(SCOPES.items()):
        listed = ", ".join(f'"{p.value}"' for p in permissions)
        out.append(
            f'[dimse.remotes.{title.lower()}]\nae_title = "{title}"\nhost = "127.0.0.1"\n'
            f"port = {30000 + index}\npermissions = [{listed}]\n"
        )
    return "\n".join(out)


def query(level: str = "STUDY") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.777"
    return ds


def run(service: str, assoc: Any, title: str) -> int:
    """The final status of one request of ``service`` on an established association."""
    sop = SERVICES[service][0]
    if service == "C-ECHO":
        return int(assoc.send_c_echo().Status)
    if service == "C-STORE":
        return int(assoc.send_c_store(make_dataset()).Status)
    if service == "MPPS N-CREATE":
        status, _ = assoc.send_n_create(
            mpps_create_dataset("1.2.826.0.1.3680043.10.999.778", "S1"),
            sop,
            f"1.2.826.0.1.3680043.10.999.779.{list(SCOPES).index(title) + 1}",
        )
        return int(status.Status)
    if service == "C-FIND":
        responses = assoc.send_c_find(query(), sop)
    elif service == "MWL C-FIND":
        responses = assoc.send_c_find(mwl_identifier(), sop)
    elif service == "C-MOVE":
        responses = assoc.send_c_move(query(), title, sop)
    else:
        responses = assoc.send_c_get(query(), sop)
    return int([status for status, _ in responses][-1].Status)


def granted(scope: tuple[Permission, ...], permission: Permission | None) -> bool:
    return permission is None or permission in scope


def test_dimse_services_by_ae_scope(server_factory: Callable[..., RunningServer]) -> None:
    """On both index backends: the services past the access decision (stores, MPPS,
    queries, retrieves of every scope) reach the index, whose answers differ by dialect."""
    server = server_factory(remotes(), dimse_extra='access_control = "allow_list"')
    failures: list[str] = []
    for title, scope in SCOPES.items():
        ae = AE(ae_title=title)
        for sop, _ in SERVICES.values():
            ae.add_requested_context(sop)
        assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title="NOCTIS")
        assert assoc.is_established, title
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        for service, (sop, permission) in SERVICES.items():
            # A C-GET caller keeps the contexts that need store (C-GET sub-operations run
            # on storage contexts); its own requests on them are refused one by one.
            offered = granted(scope, permission) or (permission is P.STORE and P.RETRIEVE in scope)
            if (sop in accepted) != offered:
                failures.append(f"{title} {service}: context accepted={sop in accepted}")
                continue
            if sop not in accepted:
                continue
            status = run(service, assoc, title)
            allowed = granted(scope, permission)
            if (status == REFUSED) == allowed or status >= 0xC000 and allowed:
                failures.append(f"{title} {service}: status {status:04X}, allowed={allowed}")
        assoc.release()
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(Verification)
    rejected = stranger.associate("127.0.0.1", server.dimse_port, ae_title="NOCTIS")
    assert rejected.is_rejected
    assert not failures, "\n".join(failures)
