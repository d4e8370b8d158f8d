"""P-DATA-TF PDUs written and read directly (PS3.8 9.3.5): the C-MOVE sender writes the
PDUs of each sub-operation and reads its response (``dimse.sender``), an accepted
association reads the PDUs it receives (``dimse.receive``)."""

from __future__ import annotations

import struct

#: PS3.8 9.3.1: the P-DATA-TF PDU type.
P_DATA_TF = 0x04
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
