"""C-FIND response identifiers handed to pynetdicom as bytes already encoded.

pynetdicom encodes each pending C-FIND response's identifier with pydicom's data set
writer (``pynetdicom.dsutils.encode``), element by element, even when every value is
already bytes, for every match. An identifier whose
every element could be written directly (``dimse.identifier``) is an
:class:`EncodedIdentifier`, which carries its encoding for the presentation context's
transfer syntax; pynetdicom's service classes take those bytes as they are
(:func:`install`), and encode everything else as before.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from typing import Any

import pynetdicom.service_class
from pydicom.dataset import Dataset

from noctis_pacs.core.wire import LONG_VRS

#: The name under which pynetdicom's service classes import the encoder.
_ENCODE = "encode"


class EncodedIdentifier(Dataset):
    """An identifier known only by its encoding (Little Endian, implicit or explicit VR).
    It has no elements of its own: only pynetdicom's encoding of it reads it."""

    def __init__(self, encoded: bytes, *, implicit_vr: bool) -> None:
        super().__init__()
        object.__setattr__(self, "noctis_encoded", (encoded, implicit_vr))


def encode_elements(elements: list[tuple[int, str, bytes]], *, implicit_vr: bool) -> bytes | None:
    """``(tag, VR, value bytes)`` in tag order as a Little Endian data set (PS3.5 7.1), or
    None when a value is too long for its explicit VR's 2-byte length."""
    out = bytearray()
    for tag, vr, value in elements:
        group, element = tag >> 16, tag & 0xFFFF
        if implicit_vr:
            out += struct.pack("<HHI", group, element, len(value))
        elif vr in LONG_VRS:
            out += struct.pack("<HH2s2xI", group, element, vr.encode("ascii"), len(value))
        elif len(value) <= 0xFFFF:
            out += struct.pack("<HH2sH", group, element, vr.encode("ascii"), len(value))
        else:
            return None
        out += value
    return bytes(out)


def _encoder(encode: Callable[..., Any]) -> Callable[..., Any]:
    def encode_identifier(
        ds: Any, is_implicit_vr: bool, is_little_endian: bool, deflated: bool = False
    ) -> Any:
        known = getattr(ds, "noctis_encoded", None)
        if known is not None and known[1] == is_implicit_vr and is_little_endian and not deflated:
            return known[0]
        return encode(ds, is_implicit_vr, is_little_endian, deflated)

    encode_identifier.noctis_original = encode  # type: ignore[attr-defined]
    return encode_identifier


def installed() -> bool:
    """Whether pynetdicom's service classes take an ``EncodedIdentifier``'s bytes (with
    the fast path off they would encode it as the empty data set it is)."""
    return hasattr(getattr(pynetdicom.service_class, _ENCODE), "noctis_original")


_install_lock = threading.Lock()


def install() -> None:
    """Let pynetdicom's service classes take an ``EncodedIdentifier``'s bytes (once)."""
    with _install_lock:
        current = getattr(pynetdicom.service_class, _ENCODE)
        if not hasattr(current, "noctis_original"):
            setattr(pynetdicom.service_class, _ENCODE, _encoder(current))
