"""The C-MOVE sender's read of a C-STORE response (dimse/sender.py): P-DATA-TF PDUs
(PS3.8 9.3.5, E.2) carrying a C-STORE-RSP command set (PS3.7 9.3.1.2). The sends over
the wire are covered by tests/test_dimse_retrieve.py."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from dimse.fastpath.command import command_set, text, uid, us
from dimse.fastpath.sender import _ProtocolError, read_store_response

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def _response(message_id: int, status: int, comment: str = "") -> bytes:
    elements = [
        (0x0002, uid(CT_IMAGE)),
        (0x0100, us(0x8001)),
        (0x0120, us(message_id)),
        (0x0800, us(0x0101)),
        (0x0900, us(status)),
    ]
    if comment:
        elements.append((0x0902, text(comment)))
    elements.append((0x1000, uid("1.2.3.4")))
    return command_set(elements)


def _p_data(fragments: list[tuple[int, bytes]]) -> bytes:
    items = b"".join(struct.pack(">IBB", 2 + len(d), 1, c) + d for c, d in fragments)
    return struct.pack(">BBI", 0x04, 0, len(items)) + items


def test_reads_a_response_split_over_two_pdus(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    command = _response(7, 0xB000, "coerced")
    peer.sendall(_p_data([(0x01, command[:20])]) + _p_data([(0x03, command[20:])]))
    status = read_store_response(ours, 7, timeout=5)
    assert status.Status == 0xB000
    assert status.ErrorComment == "coerced"


def test_an_abort_instead_of_the_response_is_a_protocol_error(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    peer.sendall(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0]))  # A-ABORT-RQ, PS3.8 9.3.8
    with pytest.raises(_ProtocolError, match="0x07"):
        read_store_response(ours, 7, timeout=5)


@pytest.mark.parametrize(
    "pdu",
    [
        _p_data([(0x03, _response(8, 0x0000))]),  # the response to another request
        _p_data([(0x02, b"\x08\x00\x18\x00")]),  # a data set fragment
    ],
)
def test_anything_but_this_response_is_a_protocol_error(
    pair: tuple[socket.socket, socket.socket], pdu: bytes
) -> None:
    ours, peer = pair
    peer.sendall(pdu)
    with pytest.raises(_ProtocolError):
        read_store_response(ours, 7, timeout=5)


def test_silence_times_out_and_a_closed_socket_fails(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    with pytest.raises(TimeoutError):
        read_store_response(ours, 7, timeout=0.2)
    peer.close()
    with pytest.raises(_ProtocolError, match="closed"):
        read_store_response(ours, 7, timeout=5)
