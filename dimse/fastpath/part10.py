"""Where a Part 10 file's data set starts (PS3.10 7.1), read from its first bytes."""

from __future__ import annotations

import struct

#: (0002,0000) File Meta Information Group Length, UL, explicit VR little endian.
_GROUP_LENGTH = b"\x02\x00\x00\x00UL"


def data_set_offset(head: bytes) -> int | None:
    """The offset after the 128-byte preamble, "DICM" and the File Meta Information
    group of the length its (0002,0000) gives; None when the file does not start that
    way (no preamble, no group length, or fewer than 144 bytes)."""
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != _GROUP_LENGTH:
        return None
    group_length: int = struct.unpack_from("<I", head, 140)[0]
    return 144 + group_length
