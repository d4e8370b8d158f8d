"""C-STORE and C-ECHO requests decoded by dimse/receive.py instead of pynetdicom's
decoder, with the same results: PS3.8 E.2 message fragments (command and data set, in
any number of PDVs and PDUs), PS3.7 9.3.1.1 C-STORE-RQ and 9.3.5.1 C-ECHO-RQ fields,
PS3.4 B.2.3 statuses; anything else goes to pynetdicom unchanged."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification

from dimse.fastpath import receive
from dimse.fastpath.command import command_set, uid, us
from dimse.fastpath.pdu import pdv_items
from dimse.fastpath.sender import command_set_c_store
from storage.archive import data_set_offset
from tests.factory import make_dataset, to_bytes
from tests.test_dimse_support import ON_PYNETDICOM, in_process_dimse


def _pdv(context_id: int, control: int, fragment: bytes) -> bytes:
    return struct.pack(">IBB", 2 + len(fragment), context_id, control) + fragment


def _pdu(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBI", 0x04, 0x00, len(body)) + body


@contextmanager
def _association(tmp_path: Path) -> Iterator[tuple[Any, Any, Any, int, int]]:
    """(peer association, server association, archive, presentation context ID, port)."""
    with in_process_dimse(tmp_path) as (server, archive):
        ae = AE(ae_title="RAWPEER")
        ae.add_requested_context(Verification)
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(ON_PYNETDICOM)
        ae.dimse_timeout = 10
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        assert assoc.is_established
        (context,) = [
            c for c in assoc.accepted_contexts if c.abstract_syntax == SecondaryCaptureImageStorage
        ]
        try:
            (accepted,) = server._server.active_associations
            yield assoc, accepted, archive, int(context.context_id), server.port
        finally:
            if assoc.is_established:
                assoc.release()


def _store_request(ds: Any, message_id: int = 7) -> tuple[bytes, bytes]:
    data = to_bytes(ds)
    offset = data_set_offset(data)
    assert offset is not None
    command = command_set_c_store(
        sop_class=str(ds.SOPClassUID),
        sop_instance=str(ds.SOPInstanceUID),
        message_id=message_id,
        priority=0,
        originator_aet="MOVER",
        originator_id=3,
    )
    return command, data[offset:]


def _exchange(assoc: Any, *pdus: bytes, responses: int = 1) -> Any:
    """Send raw PDUs on the peer's association and read ``responses`` responses (the last
    one is returned), with the peer's reactor paused throughout (as pynetdicom's own
    ``send_c_*`` do) so that it cannot take them."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.001)
    try:
        for pdu in pdus:
            assoc.dul.socket.send(pdu)
        received = [assoc.dimse.get_msg(block=True)[1] for _ in range(responses)]
    finally:
        assoc._reactor_checkpoint.set()
    assert all(r is not None for r in received), "no response within the DIMSE timeout"
    return received if responses > 1 else received[0]


def _passed_on(accepted: Any) -> list[str]:
    """Spy on what the server association's receiver passes to pynetdicom's decoder: the
    Message Control Header of each PDV handed on."""
    receiver = receive.receiving(accepted)
    assert receiver is not None
    seen: list[str] = []
    original = receiver.pynetdicom_receive

    def spy(primitive: Any) -> None:
        seen.extend(f"{data[0]:02x}" for _, data in primitive.presentation_data_value_list)
        original(primitive)

    receiver.pynetdicom_receive = spy
    return seen


def test_accepted_associations_receive_through_the_store_receiver(tmp_path: Path) -> None:
    with _association(tmp_path) as (_, accepted, _, _, _):
        assert isinstance(receive.receiving(accepted), receive.StoreReceiver)


def test_a_store_and_an_echo_are_decoded_here(tmp_path: Path) -> None:
    with _association(tmp_path) as (assoc, accepted, archive, _, _):
        passed_on = _passed_on(accepted)
        ds = make_dataset()
        assert assoc.send_c_store(ds).Status == 0x0000
        echoed = assoc.send_c_echo()
        stored = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
    assert echoed.Status == 0x0000
    assert passed_on == []  # nothing of either went through pynetdicom's decoder
    assert stored


def _echo_request(message_id: int, data_set_type: int = 0x0101) -> bytes:
    """PS3.7 9.3.5.1 C-ECHO-RQ: Affected SOP Class UID, Command Field 0030H, Message ID,
    Command Data Set Type (0101H: none)."""
    return command_set(
        [
            (0x0002, uid(str(Verification))),
            (0x0100, us(0x0030)),
            (0x0110, us(message_id)),
            (0x0800, us(data_set_type)),
        ]
    )


def _verification_context(assoc: Any) -> int:
    (context,) = [c for c in assoc.accepted_contexts if c.abstract_syntax == Verification]
    return int(context.context_id)


def test_an_echo_and_a_store_in_one_pdu_are_both_answered(tmp_path: Path) -> None:
    """PS3.8 9.3.5.1: a P-DATA-TF carries one or more PDVs, here the whole C-ECHO-RQ and
    then a C-STORE-RQ; each gets its response (PS3.7 9.3.5.2, 9.3.1.2), in order."""
    with _association(tmp_path) as (assoc, accepted, archive, cx, _):
        passed_on = _passed_on(accepted)
        ds = make_dataset()
        command, data = _store_request(ds, message_id=12)
        echo_cx = _verification_context(assoc)
        echoed, stored = _exchange(
            assoc,
            _pdu(
                _pdv(echo_cx, 0x03, _echo_request(11)),
                _pdv(cx, 0x03, command),
                _pdv(cx, 0x02, data),
            ),
            responses=2,
        )
        located = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
    assert (echoed.MessageIDBeingRespondedTo, echoed.Status) == (11, 0x0000)
    assert str(echoed.AffectedSOPClassUID) == str(Verification)
    assert (stored.MessageIDBeingRespondedTo, stored.Status) == (12, 0x0000)
    assert located
    assert passed_on == []


def test_an_echo_this_receiver_cannot_take_goes_to_pynetdicom(tmp_path: Path) -> None:
    """A C-ECHO-RQ whose Message ID is not one US value is pynetdicom's to judge: its
    command fragment is handed on whole."""
    with _association(tmp_path) as (assoc, accepted, _, _, _):
        passed_on = _passed_on(accepted)
        odd = command_set(
            [
                (0x0002, uid(str(Verification))),
                (0x0100, us(0x0030)),
                (0x0110, b"\x05\x00\x00\x00"),  # four bytes: not one US value
                (0x0800, us(0x0101)),
            ]
        )
        echo_cx = _verification_context(assoc)
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.001)
        try:
            assoc.dul.socket.send(_pdu(_pdv(echo_cx, 0x03, odd)))
            deadline = time.monotonic() + 5
            while not passed_on and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            assoc._reactor_checkpoint.set()
    assert passed_on == ["03"]


def test_fragments_split_anywhere_give_the_same_instance(tmp_path: Path) -> None:
    """PS3.8 E.2: a command set and a data set may each span any number of PDVs, and a
    PDU may carry the last command fragment together with data set fragments."""
    with _association(tmp_path) as (assoc, _, archive, cx, _):
        ds = make_dataset()
        command, data = _store_request(ds, message_id=41)
        first, second = command[:10], command[10:]
        a, b, c = data[:100], data[100:5000], data[5000:]
        response = _exchange(
            assoc,
            _pdu(_pdv(cx, 0x01, first)),
            _pdu(_pdv(cx, 0x03, second), _pdv(cx, 0x00, a)),
            _pdu(_pdv(cx, 0x00, b), _pdv(cx, 0x02, c)),
        )
        assert response.Status == 0x0000
        assert response.MessageIDBeingRespondedTo == 41
        assert str(response.AffectedSOPInstanceUID) == str(ds.SOPInstanceUID)
        (location,) = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
        with archive.open_blob(location) as fh:
            stored = fh.read()
    assert stored.endswith(data)
    assert b"\x02\x00\x10\x00UI" in stored[:400]  # the Part 10 header names the syntax


def test_a_store_with_a_wrong_sop_instance_in_its_data_set_is_refused(tmp_path: Path) -> None:
    """PS3.7 9.1.1.1: the data set is the instance the command names; a different SOP
    Instance UID is refused with 0xC002 (cannot understand), as before."""
    with _association(tmp_path) as (assoc, _, archive, cx, _):
        ds = make_dataset()
        command, data = _store_request(ds)
        other = command.replace(uid(str(ds.SOPInstanceUID)), uid("1.2.3.4" + "5" * 10))
        other = command_set(_elements_of(other))
        response = _exchange(assoc, _pdu(_pdv(cx, 0x03, other), _pdv(cx, 0x02, data)))
        assert response.Status == 0xC002
        assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))


def _elements_of(command: bytes) -> list[tuple[int, bytes]]:
    """The elements of a command set, its group length left out (for rebuilding)."""
    out = []
    pos = 0
    while pos < len(command):
        _, element, length = struct.unpack_from("<HHI", command, pos)
        if element:
            out.append((element, command[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    return out


def test_an_echo_split_over_two_pdus_is_decoded_here(tmp_path: Path) -> None:
    """PS3.8 E.2: a C-ECHO-RQ command set in two fragments, in two PDUs, is one message."""
    with _association(tmp_path) as (assoc, accepted, _, _, _):
        passed_on = _passed_on(accepted)
        echo_cx = _verification_context(assoc)
        echo = _echo_request(9)
        response = _exchange(
            assoc, _pdu(_pdv(echo_cx, 0x01, echo[:12])), _pdu(_pdv(echo_cx, 0x03, echo[12:]))
        )
        assert response.Status == 0x0000
        assert response.MessageIDBeingRespondedTo == 9
    assert passed_on == []


def _echo_on_a_new_association(port: int) -> None:
    """The server still serves: a new association answers a C-ECHO with Success."""
    ae = AE(ae_title="AGAIN")
    ae.add_requested_context(Verification)
    again = ae.associate("127.0.0.1", port, ae_title="NOCTIS")
    try:
        assert again.send_c_echo().Status == 0x0000
    finally:
        again.release()


def _wait_closed(assoc: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_command_inside_a_data_set_aborts_and_leaves_nothing(tmp_path: Path) -> None:
    """PS3.8 E.2: a message's data set fragments follow its command; a new command
    fragment in the middle is a protocol error: the association is aborted, nothing is
    stored, the partial spool is gone and the server goes on serving."""
    with _association(tmp_path) as (assoc, accepted, archive, cx, port):
        receiver = receive.receiving(accepted)
        assert receiver is not None
        ds = make_dataset()
        command, data = _store_request(ds)
        big = data + b"\x00" * (2 << 20)  # past the memory limit: spooled to a file
        assoc.dul.socket.send(_pdu(_pdv(cx, 0x03, command), _pdv(cx, 0x00, big)))
        tmp = tmp_path / "data" / "tmp"
        deadline = time.monotonic() + 10
        while not list(tmp.rglob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.01)
        (spooled,) = tmp.rglob("*.part")  # the data set so far, past memory: in a file
        assert receiver.spool is not None
        assoc.dul.socket.send(_pdu(_pdv(cx, 0x03, command)))
        _wait_closed(assoc)
        assert not assoc.is_established
        deadline = time.monotonic() + 10
        while spooled.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not spooled.exists()
        assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
        _echo_on_a_new_association(port)


def test_pdv_items_are_views_of_the_pdu_body() -> None:
    """PS3.8 9.3.5.1: item length, presentation context ID, PDV (control header first)."""
    body = _pdv(1, 0x03, b"cmd") + _pdv(3, 0x02, b"data!")
    items = pdv_items(bytearray(body))
    assert items is not None
    assert [(cx, bytes(pdv)) for cx, pdv in items] == [(1, b"\x03cmd"), (3, b"\x02data!")]
    assert pdv_items(body[:-1]) is None  # an item past the end of the PDU
    assert pdv_items(body + b"\x00\x00") is None  # bytes that are no item
    assert pdv_items(struct.pack(">IB", 1, 1)) is None  # shorter than its header


def test_one_pdu_ending_a_store_and_beginning_the_next_message(tmp_path: Path) -> None:
    """PS3.8 9.3.5.1: PDVs of two messages in one P-DATA-TF PDU; both are answered."""
    with _association(tmp_path) as (assoc, _, archive, cx, _):
        echo_cx = next(
            int(c.context_id) for c in assoc.accepted_contexts if c.abstract_syntax == Verification
        )
        ds = make_dataset()
        command, data = _store_request(ds, message_id=11)
        echo = command_set(
            [(0x0002, uid(Verification)), (0x0100, us(0x0030)), (0x0110, us(12)),
             (0x0800, us(0x0101))]
        )  # fmt: skip
        pdu = _pdu(_pdv(cx, 0x03, command), _pdv(cx, 0x02, data), _pdv(echo_cx, 0x03, echo))
        first, second = _exchange(assoc, pdu, responses=2)
        assert (first.MessageIDBeingRespondedTo, first.Status) == (11, 0x0000)
        assert (second.MessageIDBeingRespondedTo, second.Status) == (12, 0x0000)
        assert archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))


def test_a_malformed_p_data_pdu_aborts_only_its_association(tmp_path: Path) -> None:
    """PS3.8 9.3.5 / 9.2 (AA-8): a P-DATA-TF PDU whose items do not fit its length is an
    invalid PDU; the association is aborted and the server serves the next one."""
    with _association(tmp_path) as (assoc, _, _, cx, port):
        broken = struct.pack(">BBIIBB", 0x04, 0, 8, 100, cx, 0x03) + b"xx"
        assoc.dul.socket.send(broken)
        _wait_closed(assoc)
        assert not assoc.is_established
        _echo_on_a_new_association(port)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("1.2.840.10008.5.1.4.1.1.7", True),
        ("1.2.03.4", True),  # valid, not conformant: kept with a warning
        ("1.2.a", True),
        ("1." * 40, False),  # longer than 64 characters: invalid
        ("", False),
    ],
)
def test_uid_fields_are_set_as_pynetdicoms_setter_sets_them(value: str, accepted: bool) -> None:
    """PS3.5 9.1: a conformant UID is set directly; anything else goes through
    pynetdicom's setter, which keeps a non-conformant but valid one (with a warning) and
    refuses an invalid one, as it did for every request before."""
    from pynetdicom.dimse_primitives import C_STORE

    ours, theirs = C_STORE(), C_STORE()
    for primitive, setter in ((ours, receive._set_uid), (theirs, setattr)):
        try:
            setter(primitive, "AffectedSOPInstanceUID", value)
        except ValueError:
            assert not accepted
    assert ours.AffectedSOPInstanceUID == theirs.AffectedSOPInstanceUID
    assert type(ours.AffectedSOPInstanceUID) is type(theirs.AffectedSOPInstanceUID)
    assert (ours.AffectedSOPInstanceUID is not None) == accepted
