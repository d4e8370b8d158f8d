"""The PDU reader of accepted associations (dimse/transport.py): what pynetdicom's
``AssociationSocket.recv`` promises, all the bytes asked for unless the peer closed."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from dimse.fastpath.pdu import READ_AHEAD, read_exactly


@pytest.mark.parametrize(
    ("size", "piece"),
    [(1 << 20, 300_000), (3 * (1 << 20) + 4267, 500_000)],
    ids=["1 MiB", "over READ_AHEAD"],
)
def test_reads_everything_asked_for_across_several_sends(size: int, piece: int) -> None:
    """All the bytes asked for, in order, as they arrive in pieces (more than one socket
    buffer; past ``READ_AHEAD`` the buffer grows as they come)."""
    ours, peer = socket.socketpair()
    payload = (bytes(range(251)) * (size // 251 + 1))[:size]

    def send_slowly() -> None:
        for start in range(0, len(payload), piece):
            peer.sendall(payload[start : start + piece])
            time.sleep(0.005)

    sender = threading.Thread(target=send_slowly)
    sender.start()
    try:
        assert read_exactly(ours, len(payload)) == payload
    finally:
        sender.join()
        ours.close()
        peer.close()


def test_a_closed_peer_gives_what_arrived() -> None:
    ours, peer = socket.socketpair()
    peer.sendall(b"\x04\x00\x00")
    peer.close()
    try:
        assert read_exactly(ours, 6) == bytearray(b"\x04\x00\x00")
    finally:
        ours.close()


def test_a_claimed_length_costs_no_more_than_what_arrived() -> None:
    """A header claiming 1 GiB followed by 100 bytes and a close: the 100 bytes come back
    and the reader allocated a bounded buffer (the claim is not trusted)."""
    import tracemalloc

    ours, peer = socket.socketpair()
    peer.sendall(b"x" * 100)
    peer.close()
    tracemalloc.start()
    try:
        assert read_exactly(ours, 1 << 30) == bytearray(b"x" * 100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        ours.close()
    assert peak < 4 * READ_AHEAD
