"""C-FIND responses encoded by dimse/responses.py are the bytes pynetdicom would send
(PS3.7 9.3.2.2 C-FIND-RSP command set, E.1; PS3.8 9.3.5 P-DATA fragments). The
behaviour over the wire is covered by every C-FIND and worklist test."""

from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace
from typing import Any

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND

from dimse.responses import fast_send_msg

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
    assert [p.presentation_data_value_list for p in sent] == _pynetdicom_pdvs(
        _response(status, identifier), max_pdu
    )


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
