"""The PDU reader of accepted associations (dimse/transport.py): what pynetdicom's
``AssociationSocket.recv`` promises, all the bytes asked for unless the peer closed."""

from __future__ import annotations

import socket
import threading
import time

from dimse.fastpath.pdu import read_exactly


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
