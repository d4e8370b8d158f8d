"""A minimal DICOM Upper Layer client for timing C-ECHO (PS3.8 9.3, PS3.7 9.3.5), on a
plain socket with TCP_NODELAY, so that a latency figure is the server's and the
kernel's, not a client library's polling loop.

    associate(...)  -> a socket with an accepted association
    echo(sock, id)  -> one C-ECHO-RQ / C-ECHO-RSP round trip
    release(sock)   -> A-RELEASE-RQ / A-RELEASE-RP

``contexts`` proposes that many presentation contexts (Verification first, then storage
SOP classes with three transfer syntaxes each, as a modality's storescu does), for
timing association set-up as modalities negotiate it.
"""

from __future__ import annotations

import socket
import struct

from pynetdicom.presentation import AllStoragePresentationContexts

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
VERIFICATION = b"1.2.840.10008.1.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"
DEFLATED = b"1.2.840.10008.1.2.1.99"
IMPLEMENTATION_UID = b"1.2.826.0.1.3680043.8.498.1"


def _item(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _context(context_id: int, abstract: bytes, syntaxes: list[bytes]) -> bytes:
    body = struct.pack(">BBBB", context_id, 0, 0, 0) + _item(0x30, abstract)
    body += b"".join(_item(0x40, ts) for ts in syntaxes)
    return _item(0x20, body)


def associate_rq(called: str, calling: str, contexts: int) -> bytes:
    abstracts = [VERIFICATION] + [
        str(cx.abstract_syntax).encode() for cx in AllStoragePresentationContexts
    ]
    items = _item(0x10, APPLICATION_CONTEXT)
    for n in range(max(1, contexts)):
        syntaxes = [IMPLICIT_LE] if n == 0 else [EXPLICIT_LE, IMPLICIT_LE, DEFLATED]
        items += _context(2 * n + 1, abstracts[n % len(abstracts)], syntaxes)
    user = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, IMPLEMENTATION_UID)
    items += _item(0x50, user)
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16)
    body += b"\0" * 32 + items
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def echo_rq(message_id: int) -> bytes:
    """A P-DATA-TF with one command PDV: C-ECHO-RQ in Implicit VR Little Endian."""
    elements = (
        _element(0x00000002, VERIFICATION + b"\0")
        + _element(0x00000100, struct.pack("<H", 0x0030))
        + _element(0x00000110, struct.pack("<H", message_id & 0xFFFF))
        + _element(0x00000800, struct.pack("<H", 0x0101))
    )
    command = _element(0x00000000, struct.pack("<I", len(elements))) + elements
    pdv = struct.pack(">IBB", len(command) + 2, 1, 0x03) + command
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def _read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    head = _read(sock, 6)
    kind, _, length = struct.unpack(">BBI", head)
    return kind, _read(sock, length)


def _read(sock: socket.socket, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            raise ConnectionError("peer closed")
        out += chunk
    return bytes(out)


def associate(host: str, port: int, *, called: str, contexts: int = 1) -> socket.socket:
    # The request is built before connecting, as a C client's takes microseconds: 120
    # contexts take this module ~0.4 ms of Python, which would otherwise be timed as the
    # server's (and a server that works while the request is on its way hides it).
    request = associate_rq(called, "ECHOBENCH", contexts)
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request)
    kind, _ = _read_pdu(sock)
    if kind != 0x02:
        sock.close()
        raise ConnectionError(f"association not accepted (PDU type {kind:#x})")
    return sock


def echo(sock: socket.socket, message_id: int) -> None:
    sock.sendall(echo_rq(message_id))
    kind, body = _read_pdu(sock)
    # One PDV, last command fragment: Status (0000,0900) must be 0x0000.
    if kind != 0x04 or b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00" not in body:
        raise ConnectionError("C-ECHO did not succeed")


def release(sock: socket.socket) -> None:
    sock.sendall(struct.pack(">BBIxxxx", 0x05, 0, 4))
    try:
        _read_pdu(sock)
    finally:
        sock.close()
