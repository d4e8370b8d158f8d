"""DIMSE command sets written directly (PS3.7 E.1: group 0000, Implicit VR Little
Endian, Command Group Length first), for the messages Noctis encodes itself
(``dimse.sender``, ``dimse.responses``)."""

from __future__ import annotations

import struct

#: PS3.7 E.2: C-STORE-RSP command field (written by ``dimse.responses``, read by
#: ``dimse.sender``).
C_STORE_RSP = 0x8001
#: Explicit VR Little Endian: VRs with a reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


def us(value: int) -> bytes:
    """An unsigned short value."""
    return struct.pack("<H", value)


def text(value: str, pad: bytes = b" ") -> bytes:
    """An ASCII value padded to even length (UI pads with NUL, PS3.5 6.2)."""
    data = value.encode("ascii")
    return data + pad if len(data) % 2 else data


def uid(value: str) -> bytes:
    return text(value, b"\x00")


def command_set(elements: list[tuple[int, bytes]]) -> bytes:
    """(0000,eeee) elements in tag order behind their Command Group Length."""
    body = b"".join(struct.pack("<HHI", 0x0000, e, len(v)) + v for e, v in elements)
    return struct.pack("<HHI", 0x0000, 0x0000, 4) + struct.pack("<I", len(body)) + body
