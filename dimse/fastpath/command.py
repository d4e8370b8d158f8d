"""DIMSE command sets written and read directly (PS3.7 E.1: group 0000, Implicit VR
Little Endian, Command Group Length first), for the messages Noctis encodes or decodes
itself (``dimse.fastpath.sender``, ``dimse.fastpath.responses``, ``dimse.fastpath.receive``)."""

from __future__ import annotations

import struct

#: PS3.7 E.2: C-STORE-RQ, C-STORE-RSP and C-ECHO-RQ command fields.
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
#: PS3.7 E.1-1: Command Data Set Type when no data set follows.
NO_DATA_SET = 0x0101


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


def parse_command(command: bytes) -> dict[int, bytes]:
    """The (0000,eeee) elements of a command set, by element number; ``ValueError`` when
    it is not a well-formed group 0000 in Implicit VR Little Endian."""
    elements: dict[int, bytes] = {}
    pos = 0
    size = len(command)
    while pos + 8 <= size:
        group, element, length = _ELEMENT.unpack_from(command, pos)
        pos += 8
        if group != 0x0000 or pos + length > size:
            raise ValueError("malformed command set")
        elements[element] = command[pos : pos + length]
        pos += length
    if pos != size:
        raise ValueError("malformed command set")
    return elements


def read_us(elements: dict[int, bytes], element: int) -> int:
    """A US command element's value; ``KeyError`` or ``ValueError`` when absent or not
    one value."""
    value = elements[element]
    if len(value) != 2:
        raise ValueError(f"(0000,{element:04X}) is not one US value")
    return int.from_bytes(value, "little")


def read_text(elements: dict[int, bytes], element: int) -> str:
    """A UI or AE command element's value, its padding removed."""
    return elements[element].decode("ascii").strip("\x00 ")


_ELEMENT = struct.Struct("<HHI")
