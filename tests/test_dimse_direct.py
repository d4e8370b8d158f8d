"""Verification and storage associations served without pynetdicom's association layer
(dimse/fastpath/direct.py): the same A-ASSOCIATE-AC as pynetdicom's acceptor, byte for
byte; C-ECHO (PS3.7 9.3.5) and C-STORE (PS3.7 9.3.1, PS3.4 B.2) answered; release (PS3.8
9.3.6, 9.3.7) and the protocol errors of PS3.8 9.3.8 / Table 9-26 answered as the
standard says; anything else left to pynetdicom."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import (
    CTImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from dimse.fastpath.command import command_set, parse_command, read_text, read_us, uid, us
from dimse.fastpath.direct import plain_request
from dimse.fastpath.pdu import read_exactly
from dimse.fastpath.sender import command_set_c_store
from storage.part10 import data_set_offset
from tests.conftest import RunningServer
from tests.factory import make_dataset, to_bytes
from tests.test_dimse_support import (
    RawEchoAssociation,
    associate_request,
    dcmtk,
    in_process_dimse,
    scraped_metric,
    threads_started,
    write_files,
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
    assert plain_request(request) is not None
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


@pytest.mark.parametrize("why", ["query context too", "user identity", "small peer PDU"])
def test_other_requests_are_left_to_pynetdicom(tmp_path: Path, why: str) -> None:
    """Only a plain Verification-only request is served here; pynetdicom negotiates the
    rest as before (the Verification path counts nothing)."""
    user: list[object] = []
    contexts = [(1, Verification, [ImplicitVRLittleEndian])]
    if why == "query context too":
        contexts.append((3, StudyRootQueryRetrieveInformationModelFind, [ExplicitVRLittleEndian]))
    elif why == "user identity":
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 1
        identity.primary_field = b"someone"
        user.append(identity)
    request = associate_request(contexts, "PROBE", "NOCTIS", user)
    if why == "small peer PDU":
        request = request.replace((16384).to_bytes(4, "big"), (128).to_bytes(4, "big"))
    assert plain_request(request) is None
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
            while server._server.direct.waiting != 1 and time.monotonic() < deadline:
                time.sleep(0.01)
    assert [name for name in started if not name.startswith("sqlite")] == [
        name for name in started if name.startswith("direct-")
    ]
    assert len([name for name in started if name.startswith("direct-")]) == 1


def test_an_association_no_thread_can_serve_is_aborted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PS3.8 9.3.8 (Table 9-26): an association accepted by the listener that no thread
    can be started to serve gets an A-ABORT from the service provider (source 2, reason
    not specified) instead of a connection closed unannounced; once threads can be had
    again the next association is served (nothing left counted)."""
    with in_process_dimse(tmp_path) as (server, _):
        original = threading.Thread.start

        def no_serving_thread(thread: threading.Thread) -> None:
            if thread.name.startswith("direct-"):
                raise RuntimeError("can't start new thread")
            original(thread)

        monkeypatch.setattr(threading.Thread, "start", no_serving_thread)
        with _associated(server.port) as sock:
            assert _read_pdu(sock) == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0])
        monkeypatch.undo()
        with _associated(server.port) as sock:
            sock.sendall(_echo_rq(1))
            assert _read_pdu(sock)[:1] == b"\x04"
            sock.sendall(RELEASE_RQ)
            assert _read_pdu(sock) == RELEASE_RP


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


# --- Storage associations (PS3.4 Annex B) ------------------------------------------


def _pdv(context_id: int, control: int, fragment: bytes) -> bytes:
    return (len(fragment) + 2).to_bytes(4, "big") + bytes([context_id, control]) + fragment


def _p_data(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return b"\x04\x00" + len(body).to_bytes(4, "big") + body


def _store_parts(ds: Any, message_id: int = 7, sop_class: str | None = None) -> tuple[bytes, bytes]:
    """(C-STORE-RQ command set, data set) for ``ds``."""
    data = to_bytes(ds)
    offset = data_set_offset(data)
    assert offset is not None
    command = command_set_c_store(
        sop_class=sop_class or str(ds.SOPClassUID),
        sop_instance=str(ds.SOPInstanceUID),
        message_id=message_id,
        priority=0,
        originator_aet=None,
        originator_id=None,
    )
    return command, data[offset:]


def _storage_rq(calling: str = "MODALITY") -> bytes:
    """Verification and Secondary Capture Image Storage (context 3, Explicit VR LE)."""
    return associate_request(
        [
            (1, Verification, [ImplicitVRLittleEndian]),
            (3, SecondaryCaptureImageStorage, [ExplicitVRLittleEndian]),
        ],
        calling,
        "NOCTIS",
    )


def _stored(server: Any) -> float:
    value = server.metrics.registry.get_sample_value(
        "noctis_dimse_fast_path_total", {"path": "storage", "outcome": "hit"}
    )
    return float(value or 0.0)


def _store_association(port: int, calling: str = "MODALITY") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sock.sendall(_storage_rq(calling))
    assert _read_pdu(sock)[:1] == b"\x02"
    return sock


def _response(sock: socket.socket) -> dict[int, bytes]:
    answer = _read_pdu(sock)
    assert answer[:1] == b"\x04", answer[:10]
    assert answer[11] & 0x03 == 0x03  # the whole command set in one PDV
    return parse_command(answer[12:])


def test_the_storage_accept_is_byte_for_byte_pynetdicoms(fast_and_stock: tuple[int, int]) -> None:
    """PS3.8 9.3.3: for a storescu-like request (Verification, every storage class the
    server knows and a private one, several transfer syntaxes) the direct path's
    A-ASSOCIATE-AC equals stock pynetdicom's."""
    from pynetdicom.presentation import AllStoragePresentationContexts

    fast, stock = fast_and_stock
    contexts = [(1, Verification, [ImplicitVRLittleEndian])]
    for n, cx in enumerate(AllStoragePresentationContexts[:100]):
        syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit][: 1 + n % 3]
        contexts.append((2 * n + 3, str(cx.abstract_syntax), syntaxes))
    request = associate_request(contexts, "STORESCU", "NOCTIS")
    parsed = plain_request(request)
    assert parsed is not None and parsed.stores
    ours, theirs = _exchange(fast, request), _exchange(stock, request)
    assert ours[:1] == b"\x02"
    assert ours == theirs


def test_a_c_store_is_stored_as_sent_and_answered(tmp_path: Path) -> None:
    """PS3.7 9.3.1.2: the C-STORE-RSP names the request's SOP class and instance, answers
    its Message ID, has no data set and status Success; PS3.4 B.2: the data set is stored
    as it was sent (here fragmented over PDVs and PDUs anywhere, the command and the
    first fragment in one PDU); the association is counted on the storage path."""
    with in_process_dimse(tmp_path) as (server, archive):
        before = _stored(server)
        with _store_association(server.port) as sock:
            for message_id, cut in ((1, 1), (2, 100), (3, 4000)):
                ds = make_dataset()
                command, data = _store_parts(ds, message_id)
                sock.sendall(_p_data(_pdv(3, 0x03, command), _pdv(3, 0x00, data[:cut])))
                rest = data[cut:]
                middle = len(rest) // 2
                sock.sendall(_p_data(_pdv(3, 0x00, rest[:middle])))
                sock.sendall(_p_data(_pdv(3, 0x00, rest[middle:-1]), _pdv(3, 0x02, rest[-1:])))
                elements = _response(sock)
                assert read_us(elements, 0x0100) == 0x8001
                assert read_us(elements, 0x0120) == message_id
                assert read_us(elements, 0x0800) == 0x0101
                assert read_us(elements, 0x0900) == 0x0000
                assert read_text(elements, 0x0002) == str(ds.SOPClassUID)
                assert read_text(elements, 0x1000) == str(ds.SOPInstanceUID)
                (location,) = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
                with archive.open_blob(location) as blob:
                    stored = blob.read()
                assert stored[data_set_offset(stored) or 0 :] == data
            sock.sendall(_echo_rq(9))  # C-ECHO on the same association
            assert read_us(_response(sock), 0x0120) == 9
            sock.sendall(RELEASE_RQ)
            assert _read_pdu(sock) == RELEASE_RP
        assert _stored(server) == before + 1
        assert _hits(server) == 0.0


@pytest.mark.parametrize(
    "change, status",
    [("instance", 0xC002), ("class", 0xA900), ("not a storage class", 0x0122)],
)
def test_a_c_store_that_does_not_match_is_refused(tmp_path: Path, change: str, status: int) -> None:
    """PS3.4 B.2.3: a data set that is not the instance the request names is refused
    (C002H another instance, A900H another SOP class); PS3.7 C.5.2: a C-STORE-RQ for a
    SOP class that is not a storage class gets 0122H. Nothing is stored, the
    association goes on."""
    with in_process_dimse(tmp_path) as (server, archive), _store_association(server.port) as sock:
        ds = make_dataset()
        sop_class = None
        if change == "instance":
            ds.SOPInstanceUID = "1.2.3.4.5.6.7"
            command, data = _store_parts(make_dataset(), 4)
            data = _store_parts(ds, 4)[1]
        else:
            if change == "class":
                sop_class = CTImageStorage
            else:
                sop_class = StudyRootQueryRetrieveInformationModelFind
            command, data = _store_parts(ds, 4, sop_class=sop_class)
        sock.sendall(_p_data(_pdv(3, 0x03, command), _pdv(3, 0x02, data)))
        elements = _response(sock)
        assert read_us(elements, 0x0900) == status
        assert read_us(elements, 0x0120) == 4
        assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
        good = make_dataset()
        command, data = _store_parts(good, 5)
        sock.sendall(_p_data(_pdv(3, 0x03, command), _pdv(3, 0x02, data)))
        assert read_us(_response(sock), 0x0900) == 0x0000
        assert archive.locate_uids(sop_uid=str(good.SOPInstanceUID))


@pytest.mark.parametrize("ending", ["abort", "close", "command"])
def test_an_unfinished_c_store_leaves_nothing(tmp_path: Path, ending: str) -> None:
    """PS3.8 9.3.8 / E.2: an association aborted or closed while a data set arrives, or a
    new command before the data set ended (A-ABORT, reason 6): nothing is stored, the
    partial blob (past memory: in a file) is removed and the server goes on."""
    with in_process_dimse(tmp_path) as (server, archive), _store_association(server.port) as sock:
        ds = make_dataset()
        command, data = _store_parts(ds)
        big = data + b"\x00" * (2 << 20)  # past the memory limit: spooled to a file
        sock.sendall(_p_data(_pdv(3, 0x03, command), _pdv(3, 0x00, big)))
        tmp = tmp_path / "data" / "tmp"
        deadline = time.monotonic() + 10
        while not list(tmp.rglob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.01)
        (spooled,) = tmp.rglob("*.part")
        if ending == "abort":
            sock.sendall(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]))
        elif ending == "close":
            sock.shutdown(socket.SHUT_WR)
        else:
            sock.sendall(_p_data(_pdv(3, 0x03, command)))
            assert _read_pdu(sock) == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 6])
        assert _read_pdu(sock) == b""
        deadline = time.monotonic() + 10
        while spooled.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not spooled.exists()
        assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
        _echo_once(server.port)


@pytest.mark.dcmtk
def test_storescu_over_the_storage_path(server: RunningServer, tmp_path: Path) -> None:
    """dcmtk's storescu (its default proposal: ~120 storage contexts and Verification)
    is served by the direct path (its counter moves; a request that has not arrived
    within PEEK_BUDGET on a loaded machine goes to pynetdicom instead) and every
    instance is stored and counted as a C-STORE operation."""
    hits = scraped_metric(server, "noctis_dimse_fast_path_total", path="storage", outcome="hit")
    stores = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-STORE", status="0x0000"
    )
    files = write_files(tmp_path / "in", [make_dataset() for _ in range(3)])
    for _ in range(2):
        result = dcmtk(
            "storescu",
            "-aec",
            server.ae_title,
            "127.0.0.1",
            str(server.dimse_port),
            *map(str, files),
        )
        assert result.returncode == 0, result.stderr
    served = scraped_metric(server, "noctis_dimse_fast_path_total", path="storage", outcome="hit")
    assert hits + 1 <= served <= hits + 2
    assert (
        scraped_metric(
            server, "noctis_dimse_operations_total", operation="C-STORE", status="0x0000"
        )
        == stores + 6
    )


def test_allow_list_callers_store_as_their_permissions_say(server_factory: Any) -> None:
    """``access_control = "allow_list"``: a configured caller with ``store`` is served by
    the storage path; one without it is pynetdicom's (PS3.8 Table 9-18: its storage
    contexts rejected, result 3, abstract syntax not supported, as for a class the
    server lacks), as is an unknown one (A-ASSOCIATE-RJ 1/1/3)."""
    srv = server_factory(
        dimse_extra='access_control = "allow_list"',
        config=(
            '[dimse.remotes.modality]\nae_title = "MODALITY"\nhost = "127.0.0.1"\nport = 11112\n'
            'permissions = ["store"]\n'
            '[dimse.remotes.viewer]\nae_title = "VIEWER"\nhost = "127.0.0.1"\nport = 11113\n'
            'permissions = ["query"]\n'
        ),
    )
    port = srv.dimse_port
    before = scraped_metric(srv, "noctis_dimse_fast_path_total", path="storage", outcome="hit")
    with _store_association(port, "MODALITY") as sock:
        ds = make_dataset()
        command, data = _store_parts(ds)
        sock.sendall(_p_data(_pdv(3, 0x03, command), _pdv(3, 0x02, data)))
        assert read_us(_response(sock), 0x0900) == 0x0000
        sock.sendall(RELEASE_RQ)
        assert _read_pdu(sock) == RELEASE_RP
    after = scraped_metric(srv, "noctis_dimse_fast_path_total", path="storage", outcome="hit")
    assert before <= after <= before + 1  # on a loaded machine: pynetdicom's path
    answer = _exchange(port, _storage_rq("VIEWER"))
    assert answer[:1] == b"\x02"
    # The AC's presentation context items (type 0x21): context 3 rejected (3).
    at = answer.index(bytes([0x21, 0x00]), 74)
    results = {}
    while answer[at] == 0x21:
        length = int.from_bytes(answer[at + 2 : at + 4], "big")
        results[answer[at + 4]] = answer[at + 6]
        at += 4 + length
    assert results == {1: 0, 3: 3}
    assert (
        scraped_metric(srv, "noctis_dimse_fast_path_total", path="storage", outcome="hit") == after
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(_storage_rq("STRANGER"))
        assert _read_pdu(sock)[:10] == bytes([0x03, 0, 0, 0, 0, 4, 0, 1, 1, 3])


def test_a_store_that_raises_is_answered_c211(tmp_path: Path) -> None:
    """A fault in the store (injected: a session whose store raises) is answered with
    C211H, as pynetdicom answers a C-STORE handler that raised, and the association goes
    on (PS3.4 B.2.3: a failure status, never a dropped connection)."""

    class Broken:
        def __init__(self, real: Any) -> None:
            self.real = real

        def spool(self, *args: Any) -> Any:
            return self.real.spool(*args)

        def store(self, *args: Any) -> tuple[int, str]:
            raise RuntimeError("boom")

        def ended(self) -> None:
            self.real.ended()

    with in_process_dimse(tmp_path) as (server, archive):
        stores = server._server.direct.stores
        session = stores.session
        stores.session = lambda caller: Broken(session(caller))
        with _store_association(server.port) as sock:
            ds = make_dataset()
            command, data = _store_parts(ds, 11)
            sock.sendall(_p_data(_pdv(3, 0x03, command), _pdv(3, 0x02, data)))
            elements = _response(sock)
            assert read_us(elements, 0x0900) == 0xC211
            assert read_us(elements, 0x0120) == 11
            sock.sendall(_echo_rq(12))
            assert read_us(_response(sock), 0x0900) == 0x0000
        assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
