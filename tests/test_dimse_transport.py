"""The PDU reader of accepted associations (dimse/transport.py): what pynetdicom's
``AssociationSocket.recv`` promises, all the bytes asked for unless the peer closed."""

from __future__ import annotations

import socket
import threading
import time

from dimse.fastpath.pdu import READ_AHEAD, read_exactly


def test_reads_everything_asked_for_across_several_sends() -> None:
    ours, peer = socket.socketpair()
    payload = bytes(range(256)) * 4096  # 1 MiB, more than one socket buffer

    def send_slowly() -> None:
        for start in range(0, len(payload), 300_000):
            peer.sendall(payload[start : start + 300_000])
            time.sleep(0.01)

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


def test_a_large_read_grows_with_the_data() -> None:
    """A PDU's length is the peer's claim: reading 3 MiB that arrive in pieces gives them
    all, in order, through a buffer that grows as they come."""
    ours, peer = socket.socketpair()
    payload = bytes(range(251)) * (3 * 4096 + 17)

    def send_slowly() -> None:
        for start in range(0, len(payload), 500_000):
            peer.sendall(payload[start : start + 500_000])
            time.sleep(0.005)

    sender = threading.Thread(target=send_slowly)
    sender.start()
    try:
        assert read_exactly(ours, len(payload)) == payload
    finally:
        sender.join()
        ours.close()
        peer.close()


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
