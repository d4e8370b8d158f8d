"""Transfer syntax conversion for retrieval: only towards Explicit VR Little Endian.

PS3.18 8.7.3.5.2 makes Explicit VR Little Endian the default transfer syntax
of ``application/dicom`` and of uncompressed frames; anything stored
compressed is decoded with pydicom's pixel decoders (pylibjpeg, its plugins)
when a client asks for it.  Everything else is served as stored.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.uid import UID

from dicomweb.media import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
)

_REENCODE_ONLY = frozenset(
    {IMPLICIT_VR_LITTLE_ENDIAN, DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN}
)


def can_decode(transfer_syntax_uid: str) -> bool:
    """Whether an instance stored in this syntax can be produced uncompressed."""
    if transfer_syntax_uid == EXPLICIT_VR_LITTLE_ENDIAN or transfer_syntax_uid in _REENCODE_ONLY:
        return True
    try:
        from pydicom.pixels.decoders.base import get_decoder

        return bool(get_decoder(UID(transfer_syntax_uid)).is_available)
    except (NotImplementedError, ValueError):
        return False


def to_explicit_little_endian(source: Path | BinaryIO) -> bytes:
    """The instance re-encoded as Explicit VR Little Endian (decoded when compressed).

    Keeps every UID: only the encoding changes (``generate_instance_uid=False``).
    """
    ds = dcmread(source)
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    if ts.is_compressed:
        ds.decompress(generate_instance_uid=False)
    elif ts == EXPLICIT_VR_BIG_ENDIAN and "PixelData" in ds and ds["PixelData"].VR == "OW":
        raw = np.frombuffer(ds.PixelData, dtype=">u2")
        ds.PixelData = raw.astype("<u2").tobytes()
    ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def decode_frame(source: Path | BinaryIO, number: int) -> bytes:
    """One frame (1-based) decoded to native little-endian pixel bytes."""
    array = _pixel_array(source, number - 1)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array.tobytes()


def _pixel_array(source: Path | BinaryIO, index: int) -> np.ndarray:
    from pydicom.pixels.utils import pixel_array

    return pixel_array(source, index=index, raw=True)
