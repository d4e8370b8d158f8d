"""The A-ASSOCIATE-RQ read and the A-ASSOCIATE-AC written by the fast path
(dimse/fastpath/associate.py): what the association negotiates with is what pynetdicom
would have built, byte for byte what it would have sent, and over the wire the results
are the ones PS3.8 9.3.3.2 asks for."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pynetdicom import AE, AllStoragePresentationContexts, build_role
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationVersionNameNotification,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor
from pynetdicom.sop_class import CTImageStorage, Verification

from dimse.fastpath import associate, uids
from dimse.fastpath.pdu import read_exactly
from tests.test_dimse_support import associate_request, in_process_dimse

_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]


def _request(contexts: int, *, extra: list[object] | None = None) -> bytes:
    """An A-ASSOCIATE-RQ PDU as pynetdicom encodes it: Verification, then storage SOP
    classes with three transfer syntaxes each, and user information."""
    abstracts = [Verification] + [cx.abstract_syntax for cx in AllStoragePresentationContexts]
    proposed = [
        (
            2 * n + 1,
            abstracts[n % len(abstracts)],
            [ImplicitVRLittleEndian] if n == 0 else _SYNTAXES,
        )
        for n in range(contexts)
    ]
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = "MODALITY_1"
    return associate_request(proposed, "MODALITY", "NOCTIS", [version, *(extra or [])])


def _fields(primitive: A_ASSOCIATE) -> tuple[object, ...]:
    contexts = [
        (cx.context_id, cx.abstract_syntax, list(cx.transfer_syntax), cx.result)
        for cx in primitive.presentation_context_definition_list
    ]
    user = [(type(item).__name__, vars(item)) for item in primitive.user_information]
    return (
        primitive.calling_ae_title,
        primitive.called_ae_title,
        primitive.application_context_name,
        contexts,
        user,
    )


def _roles_and_identity() -> list[object]:
    role = build_role(CTImageStorage, scu_role=True, scp_role=True)
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"user"
    identity.secondary_field = b"secret"
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 1
    window.maximum_number_operations_performed = 1
    return [role, identity, window]


@pytest.fixture(autouse=True, scope="module")
def _uid_cache() -> None:
    uids.install()  # as the server runs: the fast path's UID caches in


@pytest.mark.parametrize("contexts", [1, 3, 120])
@pytest.mark.parametrize("extra", [False, True], ids=["plain", "roles-identity-window"])
def test_the_request_decodes_to_the_primitive_pynetdicom_builds(contexts: int, extra: bool) -> None:
    """PS3.8 9.3.2: every field the association negotiates with, as pynetdicom reads it."""
    pdu = _request(contexts, extra=_roles_and_identity() if extra else None)
    ours = associate.decode_request(pdu)
    assert ours is not None
    reference = A_ASSOCIATE_RQ()
    reference.decode(pdu)
    assert ours.protocol_version == reference.protocol_version == 1
    assert _fields(ours.to_primitive()) == _fields(reference.to_primitive())
    again = associate.decode_request(pdu)  # the cached syntaxes: new, equal contexts
    assert again is not None
    first = ours.to_primitive().presentation_context_definition_list
    second = again.to_primitive().presentation_context_definition_list
    assert all(
        a is not b and a._transfer_syntax is not b._transfer_syntax
        for a, b in zip(first, second, strict=True)
    )


def _with_item(pdu: bytes, item: bytes) -> bytes:
    body = pdu[6:] + item
    return struct.pack(">BBI", pdu[0], 0, len(body)) + body


@pytest.mark.parametrize(
    "change",
    ["unknown item", "sub-item of another type", "bad UID", "no transfer syntax", "truncated"],
)
def test_anything_unusual_is_left_to_pynetdicom(change: str) -> None:
    pdu = _request(2)
    context = struct.pack(">BBBB", 3, 0, 0, 0)
    abstract = struct.pack(">BBH", 0x30, 0, 17) + b"1.2.840.10008.1.1"
    syntax = struct.pack(">BBH", 0x40, 0, 17) + b"1.2.840.10008.1.2"
    if change == "unknown item":
        pdu = _with_item(pdu, struct.pack(">BBH", 0x77, 0, 2) + b"xx")
    elif change == "sub-item of another type":
        odd = struct.pack(">BBH", 0x41, 0, 2) + b"xx"
        item = context + abstract + syntax + odd
        pdu = _with_item(pdu, struct.pack(">BBH", 0x20, 0, len(item)) + item)
    elif change == "bad UID":
        bad = struct.pack(">BBH", 0x40, 0, 8) + b"1.2.x.40"
        item = context + abstract + bad
        pdu = _with_item(pdu, struct.pack(">BBH", 0x20, 0, len(item)) + item)
    elif change == "no transfer syntax":
        item = context + abstract
        pdu = _with_item(pdu, struct.pack(">BBH", 0x20, 0, len(item)) + item)
    else:
        pdu = pdu[:-5]
    assert associate.decode_request(pdu) is None


def _accept(pdu: bytes) -> A_ASSOCIATE:
    """The accepting A-ASSOCIATE primitive pynetdicom's ACSE builds for ``pdu``, against a
    server supporting storage in Explicit VR Little Endian and JPEG Baseline only."""
    request = A_ASSOCIATE_RQ()
    request.decode(pdu)
    asked = request.to_primitive()
    supported = []
    for uid in [Verification, *[cx.abstract_syntax for cx in AllStoragePresentationContexts[:60]]]:
        context = PresentationContext()
        context.abstract_syntax = uid
        for syntax in [ExplicitVRLittleEndian, JPEGBaseline8Bit, ImplicitVRLittleEndian][
            : 3 if uid == Verification else 2
        ]:
            context.add_transfer_syntax(syntax)
        supported.append(context)
    accepted, _ = negotiate_as_acceptor(asked.presentation_context_definition_list, supported)
    primitive = A_ASSOCIATE()
    primitive.application_context_name = asked.application_context_name
    primitive.calling_ae_title = asked.calling_ae_title
    primitive.called_ae_title = asked.called_ae_title
    primitive.result = 0x00
    primitive.user_information = asked.user_information
    primitive.presentation_context_definition_results_list = accepted
    return primitive


@pytest.mark.parametrize("contexts", [1, 120])
def test_the_accept_is_byte_for_byte_what_pynetdicom_writes(contexts: int) -> None:
    """PS3.8 9.3.3: accepted, abstract syntax not supported (3) and transfer syntaxes not
    supported (4) results, each with its transfer syntax sub-item."""
    primitive = _accept(_request(contexts))
    results = {cx.result for cx in primitive.presentation_context_definition_results_list}
    assert results == ({0} if contexts == 1 else {0, 3})
    assert associate.encode_accept(primitive) == A_ASSOCIATE_AC(primitive).encode()


def _associate_hits(server: Any) -> float:
    sample = server.metrics.registry.get_sample_value(
        "noctis_dimse_fast_path_total", {"path": "associate", "outcome": "hit"}
    )
    return float(sample or 0.0)


def _read_pdu(sock: socket.socket) -> bytes:
    header = bytes(read_exactly(sock, 6))
    return header + bytes(read_exactly(sock, struct.unpack(">I", header[2:])[0]))


def test_over_the_wire_each_context_gets_its_result(tmp_path: Path) -> None:
    """PS3.8 9.3.3.2: a raw A-ASSOCIATE-RQ proposing Verification, CT Image Storage in
    Explicit VR Little Endian, CT in a syntax nobody serves and an unknown SOP class is
    answered acceptance (0), acceptance, transfer syntaxes not supported (4) and abstract
    syntax not supported (3), and the association goes on to release (PS3.8 9.3.6)."""
    request = associate_request(
        [
            (1, Verification, [ImplicitVRLittleEndian]),
            (3, CTImageStorage, [ExplicitVRLittleEndian]),
            (5, CTImageStorage, ["1.2.3.4.5.6"]),
            (7, "1.2.3.4.5.6.7", [ExplicitVRLittleEndian]),
        ],
        "RAW",
        "NOCTIS",
    )
    with in_process_dimse(tmp_path) as (server, _):
        before = _associate_hits(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(request)
            answer = _read_pdu(sock)
            assert answer[0] == 0x02  # A-ASSOCIATE-AC
            accept = A_ASSOCIATE_AC()
            accept.decode(answer)
            results = {
                cx.context_id: cx.result
                for cx in accept.to_primitive().presentation_context_definition_results_list
            }
            assert results == {1: 0, 3: 0, 5: 4, 7: 3}
            sock.sendall(bytes.fromhex("0500000000040000 0000".replace(" ", "")))  # A-RELEASE-RQ
            assert _read_pdu(sock)[0] == 0x06  # A-RELEASE-RP
        assert _associate_hits(server) == before + 1


def test_a_pynetdicom_requestor_negotiates_as_before(tmp_path: Path) -> None:
    """PS3.7 D.3.3.4 / PS3.8 9.3.2: role selection proposed by a pynetdicom requestor comes
    back in the answer, and the association serves a C-ECHO."""
    with in_process_dimse(tmp_path) as (server, _):
        ae = AE(ae_title="ROLES")
        ae.add_requested_context(Verification)
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        role = build_role(CTImageStorage, scp_role=True)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS", ext_neg=[role])
        assert assoc.is_established
        try:
            ct = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == CTImageStorage)
            assert ct.as_scp is True
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()
