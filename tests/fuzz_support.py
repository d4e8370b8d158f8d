"""Seeded mutations of DICOM Part 10 files, multipart bodies and query strings for the
fuzz trials (tests/test_fault_fuzz.py in CI, bench/fault_fuzz.py for longer runs).

Each mutation names itself, so a failure says which kind of damage caused it."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.factory import make_instance, uid

#: VRs written as a wrong one in the "wrong VR" mutation.
_VRS = [
    b"AE",
    b"CS",
    b"DA",
    b"DS",
    b"IS",
    b"LO",
    b"OB",
    b"OW",
    b"PN",
    b"SQ",
    b"UI",
    b"UL",
    b"US",
    b"UN",
    b"XX",
]
_LONG_VRS = {
    b"OB",
    b"OW",
    b"OF",
    b"OD",
    b"OL",
    b"OV",
    b"SQ",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"SV",
    b"UV",
}


def _elements(data: bytes) -> list[tuple[int, int, int]]:
    """(offset of the VR, offset of the length field, its width) of the explicit VR
    little endian elements at the top level, after the preamble (best effort)."""
    found = []
    pos = 132
    while pos + 8 <= len(data):
        vr = data[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            break
        if vr in _LONG_VRS:
            length = struct.unpack_from("<I", data, pos + 8)[0]
            found.append((pos + 4, pos + 8, 4))
            pos += 12 + (0 if length == 0xFFFFFFFF else length)
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            found.append((pos + 4, pos + 6, 2))
            pos += 8 + length
        if length == 0xFFFFFFFF:
            break
    return found


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(0, len(data))]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(128, len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_length(data: bytes, rng: random.Random, value: Callable[[int], int]) -> bytes:
    elements = _elements(data)
    if not elements:
        return flip_bytes(data, rng)
    _, at, width = rng.choice(elements)
    out = bytearray(data)
    if width == 2:
        struct.pack_into("<H", out, at, value(0xFFFF) & 0xFFFF)
    else:
        struct.pack_into("<I", out, at, value(0xFFFFFFFF) & 0xFFFFFFFF)
    return bytes(out)


def corrupt_length(data: bytes, rng: random.Random) -> bytes:
    return _set_length(data, rng, lambda top: rng.randrange(0, min(top, len(data) * 2)))


def undefined_length(data: bytes, rng: random.Random) -> bytes:
    return _set_length(data, rng, lambda top: 0xFFFFFFFF if top > 0xFFFF else 0xFFFF)


def huge_length(data: bytes, rng: random.Random) -> bytes:
    return _set_length(data, rng, lambda top: top - rng.randrange(0, 16))


def wrong_vr(data: bytes, rng: random.Random) -> bytes:
    elements = _elements(data)
    if not elements:
        return flip_bytes(data, rng)
    at, _, _ = rng.choice(elements)
    out = bytearray(data)
    out[at : at + 2] = rng.choice(_VRS)
    return bytes(out)


def bad_uid(data: bytes, rng: random.Random) -> bytes:
    """A UID value with a letter or a control character (issue 14 defect 11)."""
    marker = b"1.2.826.0.1.3680043"
    at = data.find(marker, 132 + 200)
    if at < 0:
        return flip_bytes(data, rng)
    out = bytearray(data)
    out[at + rng.randrange(2, len(marker))] = rng.choice([ord("A"), 0x03, ord(" ")])
    return bytes(out)


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncate": truncate,
    "flip_bytes": flip_bytes,
    "corrupt_length": corrupt_length,
    "undefined_length": undefined_length,
    "huge_length": huge_length,
    "wrong_vr": wrong_vr,
}


def seeds() -> list[bytes]:
    """The files mutated: synthetic instances and a few of pydicom's bundled ones."""
    from pydicom.data import get_testdata_file

    files = [make_instance(rows=16, columns=16, sop_uid=uid()) for _ in range(3)]
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_gdcm.dcm", "rtplan.dcm"):
        path = get_testdata_file(name, download=False)
        if path is not None:
            files.append(Path(path).read_bytes())
    return files


def mutated(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` (mutation name, mutated file) pairs. The seed files keep their UIDs, so
    mutants of one seed arrive as duplicates of each other, sometimes with a flipped
    study or series UID: the archive's overwrite path is fuzzed too."""
    bases = seeds()
    names = list(MUTATIONS)
    for _ in range(count):
        name = rng.choice(names)
        base = rng.choice(bases)
        yield name, MUTATIONS[name](base, rng)


def bad_multipart(rng: random.Random, part: bytes) -> tuple[str, bytes, str]:
    """(what, body, content type) of a malformed multipart/related request."""
    boundary = "fz" + str(rng.randrange(10**6))
    good_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    opening = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    closing = f"\r\n--{boundary}--\r\n".encode()
    cases = [
        ("no closing delimiter", opening + part, good_type),
        ("no opening delimiter", part + closing, good_type),
        ("wrong boundary", opening + part + closing, good_type.replace(boundary, "other")),
        ("no boundary parameter", opening + part + closing, 'multipart/related; type="application/dicom"'),
        ("garbage headers", f"--{boundary}\r\n\x00\xff: \r\nbroken\r\n\r\n".encode("latin-1") + part + closing, good_type),
        ("empty body", b"", good_type),
        ("only delimiters", f"--{boundary}\r\n--{boundary}--\r\n".encode(), good_type),
        ("part type json", opening.replace(b"application/dicom", b"application/json") + b"{}" + closing, good_type),
        ("random bytes", rng.randbytes(rng.randrange(1, 4096)), good_type),
        ("cut mid-part", (opening + part + closing)[: rng.randrange(1, len(opening) + len(part))], good_type),
        ("boundary too long", opening + part + closing, good_type.replace(boundary, "x" * 300)),
        ("bad media type", opening + part + closing, "multipart/related; type=\"application/dicom\"; boundary=\"unterminated"),
    ]  # fmt: skip
    return rng.choice(cases)


_QUERY_KEYS = ["StudyDate", "StudyTime", "PatientName", "PatientID", "StudyInstanceUID",
               "00100010", "ModalitiesInStudy", "limit", "offset", "includefield",
               "fuzzymatching", "orderby", "AccessionNumber", "0020000D", "SeriesNumber"]  # fmt: skip
_QUERY_VALUES = ["", "*", "?", "\\", "%00", "-", "--", "20241399", "2024-", "abc", "1.2.3.A",
                 "-1", "99999999999999999999", "'; DROP TABLE studies; --", "\u00e9\u00e8", "\x00",
                 "*" * 300, "1" * 5000, "20240101-20231231", "true", "all", "^^^^", "=", "&"]  # fmt: skip


def bad_query(rng: random.Random) -> list[tuple[str, str]]:
    params = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(_QUERY_KEYS + [rng.randbytes(4).hex(), "x" * rng.randrange(1, 80)])
        value = rng.choice(_QUERY_VALUES + [rng.randbytes(6).decode("latin-1")])
        params.append((key, value))
    return params
