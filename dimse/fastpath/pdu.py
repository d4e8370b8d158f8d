"""P-DATA-TF PDUs written and read directly (PS3.8 9.3.5): the C-MOVE sender writes the
PDUs of each sub-operation and reads its response (``sender``), an accepted association
reads the PDUs it receives (``receive``), each PDU read with as few ``recv_into`` calls
as the data allows (:class:`PduReader`)."""

from __future__ import annotations

import select
import socket
import struct
import time

from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

#: PS3.8 9.3.1 (Table 9-11 and the tables after it): PDU types.
ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF = 0x04
RELEASE_RQ, RELEASE_RP, ABORT = 0x05, 0x06, 0x07
#: PDU type, reserved byte, PDU length (PS3.8 Table 9-22).
PDU_HEADER = struct.Struct(">BBI")
#: The PDU header and one PDV item header (item length, context ID, control header).
_PDU_AND_ITEM_HEADER = struct.Struct(">BBIIBB")
_ITEM_LENGTH = struct.Struct(">I")


def pdu_header(context_id: int, control: int, length: int) -> bytes:
    """The headers of a P-DATA-TF PDU holding one PDV item whose fragment is ``length``
    bytes (PS3.8 9.3.5.1, E.2: ``control`` is the message control header)."""
    return _PDU_AND_ITEM_HEADER.pack(P_DATA_TF, 0x00, 6 + length, 2 + length, context_id, control)


def pdu(context_id: int, control: int, fragment: bytes | memoryview) -> bytes:
    """One P-DATA-TF PDU holding one PDV item."""
    return pdu_header(context_id, control, len(fragment)) + fragment


def pdv_items(body: bytes | bytearray) -> list[tuple[int, memoryview]] | None:
    """The PDV items of a P-DATA-TF PDU body (PS3.8 9.3.5.1): (presentation context ID,
    message control header and fragment) each, as views of ``body``; None when the items
    do not fill the body exactly or one is shorter than its two header bytes."""
    view = memoryview(body)
    items = []
    pos = 0
    size = len(body)
    while pos < size:
        if pos + 4 > size:
            return None
        (length,) = _ITEM_LENGTH.unpack_from(body, pos)
        end = pos + 4 + length
        if length < 2 or end > size:
            return None
        items.append((body[pos + 4], view[pos + 5 : end]))
        pos = end
    return items


#: The most a read allocates beyond the bytes that have arrived: a PDU's length is the
#: peer's claim, and a 6-byte header saying 4 GiB must not cost 4 GiB of memory (the
#: buffer grows, doubling, as the data comes).
READ_AHEAD = 1 << 20


def read_exactly(sock: socket.socket, size: int, *, deadline: float | None = None) -> bytearray:
    """``size`` bytes from ``sock`` (fewer only when the peer closed the connection), read
    straight into one buffer: what pynetdicom's ``AssociationSocket.recv`` promises.
    With a ``deadline`` (``time.monotonic()``) a peer that is silent past it raises
    ``TimeoutError``. At most ``READ_AHEAD`` bytes (or as many as arrived) are
    allocated ahead of the data."""
    buffer = bytearray(min(size, READ_AHEAD))
    view = memoryview(buffer)
    got = 0
    try:
        while got < size:
            if got == len(buffer):  # full of data: grow by as much again, up to size
                view.release()
                buffer.extend(bytes(min(len(buffer), size - got)))
                view = memoryview(buffer)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                    raise TimeoutError("the peer sent nothing in time")
            n = sock.recv_into(view[got:])
            if n == 0:
                break
            got += n
    finally:
        view.release()
    if got < len(buffer):
        del buffer[got:]
    return buffer


class PduReader:
    """An association's ``socket.recv``: bytes read straight into one buffer
    (:func:`read_exactly`), after any given back with ``unread``."""

    def __init__(self, transport: AssociationSocket) -> None:
        self.transport = transport
        self.pending = b""

    def __call__(self, nr_bytes: int) -> bytearray:
        sock = self.transport.socket
        if self.pending:
            head, self.pending = self.pending[:nr_bytes], self.pending[nr_bytes:]
            data = bytearray(head)
            if len(data) < nr_bytes and sock is not None:
                data += read_exactly(sock, nr_bytes - len(data))
            return data
        if sock is None:
            raise OSError("the association's socket is closed")
        return read_exactly(sock, nr_bytes)

    def unread(self, data: bytes | bytearray) -> None:
        """Give back bytes read ahead: the next reads return them first."""
        self.pending = bytes(data) + self.pending


def attach_reader(assoc: Association) -> None:
    """Read this association's PDUs through :class:`PduReader` (plain TCP or TLS)."""
    transport = assoc.dul.socket
    assert transport is not None
    transport.recv = PduReader(transport)  # type: ignore[method-assign]
