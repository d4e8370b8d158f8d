"""C-FIND responses encoded by dimse/responses.py are the bytes pynetdicom would send
(PS3.7 9.3.2.2 C-FIND-RSP command set, E.1; PS3.8 9.3.5 P-DATA fragments). The
behaviour over the wire is covered by every C-FIND and worklist test."""

from __future__ import annotations

import time
from io import BytesIO
from types import SimpleNamespace
from typing import Any

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND

from dimse.fastpath.responses import fast_send_msg

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def _response(status: int, identifier: bytes | None) -> C_FIND:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = STUDY_ROOT_FIND
    rsp.Status = status
    rsp.Identifier = BytesIO(identifier) if identifier is not None else None
    return rsp


def _pynetdicom_pdvs(rsp: C_FIND, max_pdu: int) -> list[Any]:
    message = C_FIND_RSP()
    message.primitive_to_message(rsp)
    return [p.presentation_data_value_list for p in message.encode_msg(3, max_pdu)]


@pytest.mark.parametrize("max_pdu", [0, 64, 16384])
@pytest.mark.parametrize(
    ("status", "identifier"),
    [(0xFF00, b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY " * 20), (0xFF01, b"x" * 10), (0x0000, None)],
)
def test_direct_c_find_response_equals_pynetdicom(
    status: int, identifier: bytes | None, max_pdu: int
) -> None:
    sent: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=max_pdu, dul=SimpleNamespace(send_pdu=sent.append))
    fallback: list[Any] = []
    send = fast_send_msg(dimse, lambda p, c: fallback.append(p))
    send(_response(status, identifier), 3)
    assert not fallback
    expected = _pynetdicom_pdvs(_response(status, identifier), max_pdu)
    # The same PDVs in the same order; with room, command and identifier share a PDU.
    assert [pdv for p in sent for pdv in p.presentation_data_value_list] == [
        pdv for pdvs in expected for pdv in pdvs
    ]
    if identifier is not None and max_pdu != 64:
        assert len(sent) == 1
    for p in sent:
        size = sum(6 + len(data) - 1 for _, data in p.presentation_data_value_list)
        assert not max_pdu or size <= max_pdu  # PS3.8 9.3.5: within the peer's maximum


def test_other_messages_keep_pynetdicoms_encoding() -> None:
    fallback: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=0, dul=SimpleNamespace(send_pdu=None))
    send = fast_send_msg(dimse, lambda p, c: fallback.append(p))
    cancel = _response(0xFE00, None)
    failure = _response(0xA900, None)
    failure.ErrorComment = "bad key"
    request = C_FIND()
    request.MessageID = 1
    for primitive in (cancel, failure, request):
        send(primitive, 3)
    assert fallback == [cancel, failure, request]


@pytest.mark.parametrize("kind", ["move", "get"])
def test_pending_retrieve_response_equals_pynetdicom(kind: str) -> None:
    from pynetdicom.dimse_messages import C_GET_RSP, C_MOVE_RSP
    from pynetdicom.dimse_primitives import C_GET, C_MOVE

    def pending() -> Any:
        rsp = C_MOVE() if kind == "move" else C_GET()
        rsp.MessageIDBeingRespondedTo = 5
        rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
        rsp.Status = 0xFF00
        rsp.NumberOfRemainingSuboperations = 250
        rsp.NumberOfCompletedSuboperations = 5
        rsp.NumberOfFailedSuboperations = 1
        rsp.NumberOfWarningSuboperations = 0
        return rsp

    sent: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=16384, dul=SimpleNamespace(send_pdu=sent.append))
    send = fast_send_msg(dimse, lambda p, c: pytest.fail("fell back"))
    send(pending(), 1)
    message = C_MOVE_RSP() if kind == "move" else C_GET_RSP()
    message.primitive_to_message(pending())
    expected = [p.presentation_data_value_list for p in message.encode_msg(1, 16384)]
    assert [p.presentation_data_value_list for p in sent] == expected


@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xB000])
@pytest.mark.parametrize("max_pdu", [0, 16, 16384])
def test_c_store_response_equals_pynetdicom(status: int, max_pdu: int) -> None:
    """PS3.7 9.3.1.2: the C-STORE-RSP command set, as pynetdicom would encode it."""
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    def response() -> Any:
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = 3
        rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        rsp.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1234567"
        rsp.Status = status
        return rsp

    sent: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=max_pdu, dul=SimpleNamespace(send_pdu=sent.append))
    send = fast_send_msg(dimse, lambda p, c: pytest.fail("fell back"))
    send(response(), 1)
    message = C_STORE_RSP()
    message.primitive_to_message(response())
    expected = [p.presentation_data_value_list for p in message.encode_msg(1, max_pdu)]
    assert [p.presentation_data_value_list for p in sent] == expected


def test_c_store_response_with_a_comment_keeps_pynetdicoms_encoding() -> None:
    from pynetdicom.dimse_primitives import C_STORE

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 3
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = "1.2.3"
    rsp.Status = 0xA900
    rsp.ErrorComment = "SOP Class UID differs"
    fallback: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=0, dul=SimpleNamespace(send_pdu=None))
    fast_send_msg(dimse, lambda p, c: fallback.append(p))(rsp, 1)
    assert fallback == [rsp]


def test_pending_retrieve_responses_are_spaced_by_the_interval() -> None:
    """PS3.4 C.4.2.3.1: pending C-MOVE responses are optional; the first is sent, then at
    most one per interval; other responses are never held back."""
    from pynetdicom.dimse_primitives import C_MOVE

    def pending(remaining: int) -> Any:
        rsp = C_MOVE()
        rsp.MessageIDBeingRespondedTo = 5
        rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.2"
        rsp.Status = 0xFF00
        rsp.NumberOfRemainingSuboperations = remaining
        rsp.NumberOfCompletedSuboperations = 10 - remaining
        rsp.NumberOfFailedSuboperations = 0
        rsp.NumberOfWarningSuboperations = 0
        return rsp

    sent: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=0, dul=SimpleNamespace(send_pdu=sent.append))
    fallback: list[Any] = []
    send = fast_send_msg(dimse, lambda p, c: fallback.append(p), pending_interval=0.2)
    send(pending(9), 1)
    send(pending(8), 1)
    assert len(sent) == 1
    time.sleep(0.25)
    send(pending(7), 1)
    assert len(sent) == 2
    final = pending(0)
    final.Status = 0x0000
    send(final, 1)
    assert fallback == [final]
    every: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=0, dul=SimpleNamespace(send_pdu=every.append))
    send = fast_send_msg(dimse, lambda p, c: None, pending_interval=0)
    for remaining in range(9, -1, -1):
        send(pending(remaining), 1)
    assert len(every) == 10


@pytest.mark.parametrize("comment", ["SOP Class UID differs", "x" * 80, "Zürich"])
def test_c_store_response_with_an_error_comment_equals_pynetdicom(comment: str) -> None:
    """PS3.7 9.3.1.2 / C.11.2: the Error Comment (0000,0902) written directly is the
    element pynetdicom writes (LO, at most 64 characters, padded to even length)."""
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    from dimse.fastpath.responses import send_store_response

    sent: list[Any] = []
    dimse = SimpleNamespace(maximum_pdu_size=16384, dul=SimpleNamespace(send_pdu=sent.append))
    send_store_response(
        dimse, 1, sop_class="1.2.840.10008.5.1.4.1.1.2", sop_instance="1.2.3",
        responding_to=3, status=0xA900, comment=comment,
    )  # fmt: skip
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 3
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = "1.2.3"
    rsp.Status = 0xA900
    rsp.ErrorComment = comment[:64].encode("ascii", "replace").decode("ascii")
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    expected = [p.presentation_data_value_list for p in message.encode_msg(1, 16384)]
    assert [p.presentation_data_value_list for p in sent] == expected
