"""The DICOM Part 10 file format (PS3.10 7.1): the one writer of a file's header.

Every blob the store keeps is a Part 10 file: a 128-byte preamble, ``DICM``, the File
Meta Information group (0002,eeee) in Explicit VR Little Endian behind its group
length, then the data set as received. The data sets that arrive without a header
(DIMSE C-STORE) get theirs here, whichever way they were received; files that arrive
whole (STOW-RS, import) keep the header they came with.
"""

from __future__ import annotations

import struct

#: PS3.10 7.1: the preamble (zeros) and the prefix.
PREAMBLE = b"\x00" * 128 + b"DICM"
#: (0002,0001) File Meta Information Version.
FILE_META_VERSION = b"\x00\x01"
#: (0002,0000) File Meta Information Group Length, UL, explicit VR little endian.
_GROUP_LENGTH = b"\x02\x00\x00\x00UL"
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")


def _text(value: str, pad: bytes) -> bytes:
    data = value.encode("ascii")
    return data + pad if len(data) % 2 else data


def _element(element: int, vr: str, value: bytes) -> bytes:
    if vr == "OB":
        return _LONG.pack(0x0002, element, b"OB", len(value)) + value
    return _SHORT.pack(0x0002, element, vr.encode("ascii"), len(value)) + value


def file_meta_group(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
) -> bytes:
    """The File Meta Information group (PS3.10 Table 7.1-1): version 00 01, the Media
    Storage SOP Class and Instance UIDs, the Transfer Syntax UID, the Implementation
    Class UID and (when given) Version Name, behind the group length; byte for byte what
    pydicom's ``write_file_meta_info`` writes for the same values."""
    body = b"".join(
        (
            _element(0x0001, "OB", FILE_META_VERSION),
            _element(0x0002, "UI", _text(sop_class_uid, b"\x00")),
            _element(0x0003, "UI", _text(sop_instance_uid, b"\x00")),
            _element(0x0010, "UI", _text(transfer_syntax_uid, b"\x00")),
            _element(0x0012, "UI", _text(implementation_class_uid, b"\x00")),
            (
                _element(0x0013, "SH", _text(implementation_version_name, b" "))
                if implementation_version_name
                else b""
            ),
        )
    )
    return _element(0x0000, "UL", struct.pack("<I", len(body))) + body


def file_header(
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    implementation_class_uid: str,
    implementation_version_name: str = "",
) -> bytes:
    """Preamble, prefix and File Meta Information: what goes before a data set."""
    return PREAMBLE + file_meta_group(
        sop_class_uid=sop_class_uid,
        sop_instance_uid=sop_instance_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        implementation_class_uid=implementation_class_uid,
        implementation_version_name=implementation_version_name,
    )


def data_set_offset(head: bytes | bytearray) -> int | None:
    """Where the data set of a Part 10 file starts, from its first bytes: after the
    preamble, ``DICM`` and the File Meta Information group of the length its (0002,0000)
    gives; None when the file does not start that way (no preamble, no group length, or
    fewer than 144 bytes)."""
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != _GROUP_LENGTH:
        return None
    group_length: int = struct.unpack_from("<I", head, 140)[0]
    return 144 + group_length
