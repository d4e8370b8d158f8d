"""Verification-only associations served without pynetdicom's association layer
(dimse/fastpath/verification.py): the same A-ASSOCIATE-AC as pynetdicom's acceptor, byte
for byte; C-ECHO (PS3.7 9.3.5) answered; release (PS3.8 9.3.6, 9.3.7) and the protocol
errors of PS3.8 9.3.8 / Table 9-26 answered as the standard says; anything else left to
pynetdicom."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import CTImageStorage, Verification

from dimse.fastpath.command import command_set, parse_command, read_text, read_us, uid, us
from dimse.fastpath.pdu import read_exactly
from dimse.fastpath.verification import verification_request
from tests.conftest import RunningServer
from tests.test_dimse_support import (
    RawEchoAssociation,
    associate_request,
    dcmtk,
    in_process_dimse,
    scraped_metric,
    threads_started,
)

pytestmark = pytest.mark.timeout(120)

RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
RELEASE_RP = b"\x06\x00\x00\x00\x00\x04\x00\x00\x00\x00"


def _read_pdu(sock: socket.socket) -> bytes:
    header = bytes(read_exactly(sock, 6))
    if len(header) < 6:
        return b""
    return header + bytes(read_exactly(sock, int.from_bytes(header[2:], "big")))


def _echo_rq(message_id: int, context_id: int = 1, sop_class: str = Verification) -> bytes:
    command = command_set(
        [
            (0x0002, uid(sop_class)),
            (0x0100, us(0x0030)),
            (0x0110, us(message_id)),
            (0x0800, us(0x0101)),
        ]
    )
    item = (len(command) + 2).to_bytes(4, "big") + bytes([context_id, 0x03]) + command
    return b"\x04\x00" + len(item).to_bytes(4, "big") + item


def _verification_rq(contexts: list[tuple[int, list[str]]], **kwargs: Any) -> bytes:
    return associate_request(
        [(cid, Verification, syntaxes) for cid, syntaxes in contexts], "PROBE", "NOCTIS", **kwargs
    )


def _associated(port: int) -> socket.socket:
    """A connection whose Verification-only association was accepted (A-ASSOCIATE-AC)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(_verification_rq([(1, [ImplicitVRLittleEndian])]))
    assert _read_pdu(sock)[:1] == b"\x02"
    return sock


@pytest.fixture
def fast_and_stock(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A server with the fast path (default) and one on stock pynetdicom, in this
    process: (fast port, stock port)."""
    with (
        in_process_dimse(tmp_path / "fast") as (fast, _),
        in_process_dimse(tmp_path / "stock", fast_path=False) as (stock, _),
    ):
        assert stock.fast is None and fast.fast is not None
        yield fast.port, stock.port


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        answer = _read_pdu(sock)
        if answer[:1] == b"\x02":
            sock.sendall(RELEASE_RQ)
            assert _read_pdu(sock) == RELEASE_RP
        return answer


@pytest.mark.parametrize(
    "contexts",
    [
        [(1, [ImplicitVRLittleEndian])],
        [(1, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]), (3, [JPEGBaseline8Bit])],
        [(5, [JPEGBaseline8Bit]), (3, [ImplicitVRLittleEndian]), (1, [ExplicitVRLittleEndian])],
    ],
    ids=["one", "accepted-and-rejected", "out-of-order"],
)
def test_the_accept_is_byte_for_byte_pynetdicoms(
    fast_and_stock: tuple[int, int], contexts: list[tuple[int, list[str]]]
) -> None:
    """PS3.8 9.3.3: the A-ASSOCIATE-AC of the Verification path equals the one stock
    pynetdicom sends for the same request (results 0 and 4, PS3.8 Table 9-18)."""
    fast, stock = fast_and_stock
    request = _verification_rq(contexts)
    assert verification_request(request) is not None
    ours, theirs = _exchange(fast, request), _exchange(stock, request)
    assert ours[:1] == b"\x02"
    assert ours == theirs


def test_echoes_and_release_on_one_association(tmp_path: Path) -> None:
    """PS3.7 9.3.5.2: each C-ECHO-RSP names the Verification SOP Class, answers its
    request's Message ID, has no data set and status Success; PS3.8 9.3.7: the release
    is answered with an A-RELEASE-RP, then the connection closes."""
    with in_process_dimse(tmp_path) as (server, _):
        before = _hits(server)
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(_verification_rq([(1, [ImplicitVRLittleEndian])]))
            assert _read_pdu(sock)[:1] == b"\x02"
            for message_id in (1, 2, 65535):
                sock.sendall(_echo_rq(message_id))
                answer = _read_pdu(sock)
                assert answer[:1] == b"\x04" and answer[10:12] == b"\x01\x03"
                elements = parse_command(answer[12:])
                assert read_text(elements, 0x0002) == Verification
                assert read_us(elements, 0x0100) == 0x8030
                assert read_us(elements, 0x0120) == message_id
                assert read_us(elements, 0x0800) == 0x0101
                assert read_us(elements, 0x0900) == 0x0000
            sock.sendall(RELEASE_RQ)
            assert _read_pdu(sock) == RELEASE_RP
            assert _read_pdu(sock) == b""  # closed
        assert _hits(server) == before + 1


def _hits(server: Any) -> float:
    value = server.metrics.registry.get_sample_value(
        "noctis_dimse_fast_path_total", {"path": "verification", "outcome": "hit"}
    )
    return float(value or 0.0)


def test_a_command_split_over_pdvs_is_answered(tmp_path: Path) -> None:
    """PS3.8 E.2: a command set may come in several fragments; the last one is marked."""
    with (
        in_process_dimse(tmp_path) as (server, _),
        _associated(server.port) as sock,
    ):
        command = _echo_rq(7)[12:]
        first, second = command[:20], command[20:]
        for fragment, control in ((first, 0x01), (second, 0x03)):
            item = (len(fragment) + 2).to_bytes(4, "big") + bytes([1, control]) + fragment
            sock.sendall(b"\x04\x00" + len(item).to_bytes(4, "big") + item)
        elements = parse_command(_read_pdu(sock)[12:])
        assert read_us(elements, 0x0120) == 7 and read_us(elements, 0x0900) == 0
        sock.sendall(RELEASE_RQ)
        assert _read_pdu(sock) == RELEASE_RP


def test_another_sop_class_in_the_request_is_refused(tmp_path: Path) -> None:
    """PS3.7 C.5.2 (0122H): a C-ECHO-RQ naming another SOP class than its context's."""
    with (
        in_process_dimse(tmp_path) as (server, _),
        _associated(server.port) as sock,
    ):
        sock.sendall(_echo_rq(3, sop_class=CTImageStorage))
        elements = parse_command(_read_pdu(sock)[12:])
        assert read_us(elements, 0x0900) == 0x0122
        assert read_text(elements, 0x0002) == CTImageStorage


@pytest.mark.parametrize(
    "pdu, reason",
    [
        (b"\x09\x00\x00\x00\x00\x02\x00\x00", 1),  # unrecognised PDU type
        (_verification_rq([(1, [ImplicitVRLittleEndian])]), 2),  # A-ASSOCIATE-RQ in Sta6
        (b"\x04\x00\x00\x00\x00\x03\x00\x00\x09", 6),  # malformed PDV item
        (_echo_rq(1, context_id=3), 6),  # a context that was not proposed
        (b"\x04\x00\x00\x00\x00\x08\x00\x00\x00\x04\x01\x02\x00\x00", 6),  # a data set
    ],
    ids=["unrecognised", "unexpected", "malformed", "unknown-context", "data-set"],
)
def test_protocol_errors_are_aborted_and_the_server_goes_on(
    tmp_path: Path, pdu: bytes, reason: int
) -> None:
    """PS3.8 9.3.8 / Table 9-26: A-ABORT from the service provider (source 2) with the
    reason of the error; the connection closes and the next association is served."""
    with (
        in_process_dimse(tmp_path) as (server, _),
        _associated(server.port) as sock,
    ):
        sock.sendall(pdu)
        assert _read_pdu(sock) == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, reason])
        assert _read_pdu(sock) == b""
        _echo_once(server.port)


def _echo_once(port: int) -> None:
    probe = RawEchoAssociation(port)
    assert probe.is_established
    assert probe.send_c_echo() == 0x0000
    probe.release()


def test_a_silent_peer_is_aborted_after_the_network_timeout(tmp_path: Path) -> None:
    """``dimse.network_timeout``: an established peer that sends nothing gets an A-ABORT
    (source 2, reason 0, as pynetdicom's time-out) and the connection closes."""
    with (
        in_process_dimse(tmp_path, network_timeout=0.3) as (server, _),
        _associated(server.port) as sock,
    ):
        started = time.monotonic()
        assert _read_pdu(sock) == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0])
        assert 0.2 < time.monotonic() - started < 10
        assert _read_pdu(sock) == b""


@pytest.mark.parametrize("why", ["storage context too", "user identity", "small peer PDU"])
def test_other_requests_are_left_to_pynetdicom(tmp_path: Path, why: str) -> None:
    """Only a plain Verification-only request is served here; pynetdicom negotiates the
    rest as before (the Verification path counts nothing)."""
    user: list[object] = []
    contexts = [(1, Verification, [ImplicitVRLittleEndian])]
    if why == "storage context too":
        contexts.append((3, CTImageStorage, [ExplicitVRLittleEndian]))
    elif why == "user identity":
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 1
        identity.primary_field = b"someone"
        user.append(identity)
    request = associate_request(contexts, "PROBE", "NOCTIS", user)
    if why == "small peer PDU":
        request = request.replace((16384).to_bytes(4, "big"), (128).to_bytes(4, "big"))
    assert verification_request(request) is None
    with in_process_dimse(tmp_path) as (server, _):
        before = _hits(server)
        assert _exchange(server.port, request)[:1] == b"\x02"
        assert _hits(server) == before


@pytest.mark.dcmtk
def test_echoscu_over_the_verification_path(server: RunningServer) -> None:
    """dcmtk's echoscu (Verification only) is served by the Verification path: its
    counter moves, and C-ECHO is counted as an operation (noctis_dimse_operations). A
    request that has not arrived within PEEK_BUDGET (a loaded machine) goes to
    pynetdicom instead, so not every association need count."""
    hits = scraped_metric(
        server, "noctis_dimse_fast_path_total", path="verification", outcome="hit"
    )
    echoes = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-ECHO", status="0x0000"
    )
    for _ in range(3):
        result = dcmtk("echoscu", "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port))
        assert result.returncode == 0, result.stderr
    served = scraped_metric(
        server, "noctis_dimse_fast_path_total", path="verification", outcome="hit"
    )
    assert hits + 1 <= served <= hits + 3
    assert (
        scraped_metric(server, "noctis_dimse_operations_total", operation="C-ECHO", status="0x0000")
        == echoes + 3
    )


def test_an_allow_list_caller_not_configured_is_rejected_by_pynetdicom(
    server_factory: Any,
) -> None:
    """PS3.8 9.3.4 (Table 9-21): with ``access_control = "allow_list"`` an unknown calling
    AE gets A-ASSOCIATE-RJ (rejected-permanent, service-user, calling AE not recognized)
    on a Verification-only request too; a configured one is served."""
    srv = server_factory(
        dimse_extra='access_control = "allow_list"',
        config='[dimse.remotes.known]\nae_title = "KNOWN"\nhost = "127.0.0.1"\nport = 11112\n',
    )
    with socket.create_connection(("127.0.0.1", srv.dimse_port), timeout=20) as sock:
        sock.sendall(_verification_rq([(1, [ImplicitVRLittleEndian])]))
        assert _read_pdu(sock)[:10] == bytes([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 3])
    known = associate_request([(1, Verification, [ImplicitVRLittleEndian])], "KNOWN", "NOCTIS")
    assert _exchange(srv.dimse_port, known)[:1] == b"\x02"


def test_one_thread_and_no_pynetdicom_association(tmp_path: Path) -> None:
    """Verification-only associations cost no pynetdicom association (an association
    thread and a DUL thread each): one thread of the Verification path serves them, and
    serves the next one after it is released (no thread start per association)."""
    with in_process_dimse(tmp_path) as (server, _), threads_started() as started:
        for message_id in (1, 2, 3):
            with _associated(server.port) as sock:
                sock.sendall(_echo_rq(message_id))
                assert _read_pdu(sock)[:1] == b"\x04"
                sock.sendall(RELEASE_RQ)
                assert _read_pdu(sock) == RELEASE_RP
            # The thread goes back to waiting once the peer has closed.
            deadline = time.monotonic() + 10
            while server._server.verification.waiting != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert [name for name in started if not name.startswith("sqlite")] == [
        name for name in started if name.startswith("verification-")
    ]
    assert len([name for name in started if name.startswith("verification-")]) == 1


def test_at_the_association_limit_the_request_is_rejected(tmp_path: Path) -> None:
    """PS3.8 9.3.4, Table 9-21: with ``dimse.max_associations`` associations open, the
    next Verification-only request gets A-ASSOCIATE-RJ rejected-transient (2),
    service-provider presentation related (3), local-limit-exceeded (2), as pynetdicom
    rejects; once one is released, the next is accepted."""
    with (
        in_process_dimse(tmp_path, max_associations=1) as (server, _),
        _associated(server.port) as held,
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            sock.sendall(_verification_rq([(1, [ImplicitVRLittleEndian])]))
            assert _read_pdu(sock) == bytes([0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2])
        held.sendall(RELEASE_RQ)
        assert _read_pdu(held) == RELEASE_RP
        assert _exchange(server.port, _verification_rq([(1, [ImplicitVRLittleEndian])]))[:1] == (
            b"\x02"
        )
