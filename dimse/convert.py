"""Choosing and producing the transfer syntax an instance is sent in.

An instance goes out as stored when the peer accepted that transfer syntax;
otherwise it is converted to Explicit (or Implicit) VR Little Endian, the
syntaxes every Storage SCP supports (PS3.5 10.1, PS3.4 B.4.1): compressed pixel
data is decoded through pydicom's pixel pipeline (pylibjpeg, openjpeg, RLE),
deflated and big-endian data are re-encoded.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

#: The fallbacks, in order of preference (explicit keeps VRs of private elements).
FALLBACKS: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class ConversionError(ValueError):
    """The instance cannot be produced in any transfer syntax the peer accepted."""


def choose_syntax(stored: str, accepted: Collection[str]) -> str | None:
    """The transfer syntax to send in: as stored if accepted, else a fallback."""
    if stored in accepted:
        return stored
    for candidate in FALLBACKS:
        if candidate in accepted:
            return candidate
    return None


def load_for(source: Path | BinaryIO, stored: str, target: str) -> Dataset:
    """Read the stored file and bring it to ``target`` (``stored`` or a fallback)."""
    ds = dcmread(source)
    if target == stored:
        return ds
    if target not in FALLBACKS:
        raise ConversionError(f"cannot convert {stored} to {target}")
    syntax = UID(stored)
    try:
        if syntax.is_compressed and syntax != DeflatedExplicitVRLittleEndian:
            if "PixelData" not in ds:
                raise ConversionError("compressed transfer syntax without Pixel Data")
            ds.decompress()
        elif syntax == ExplicitVRBigEndian and "PixelData" in ds:
            _swap_pixel_data(ds)
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"decoding {syntax.name} failed: {type(exc).__name__}") from exc
    ds.file_meta.TransferSyntaxUID = UID(target)
    ds.set_original_encoding(target == ImplicitVRLittleEndian, True)
    return ds


def _swap_pixel_data(ds: Dataset) -> None:
    """Big-endian native pixel data rewritten little endian (OB data needs no swap)."""
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if bits <= 8:
        return
    dtype = {16: "u2", 32: "u4", 64: "u8"}.get(bits)
    if dtype is None:
        raise ConversionError(f"cannot swap {bits}-bit pixel data")
    data = np.frombuffer(ds.PixelData, dtype=">" + dtype)
    ds.PixelData = data.astype("<" + dtype).tobytes()
    ds["PixelData"].VR = "OW"
