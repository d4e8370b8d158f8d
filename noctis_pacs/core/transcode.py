"""Transfer syntax conversion: the one converter both protocols use.

C-MOVE / C-GET sub-operations (PS3.4 C.4.2.3.1, C.4.3.3.1) and WADO-RS / WADO-URI
retrieval (PS3.18 8.7.3.5) send an instance in its stored transfer syntax when the
peer accepts it, and otherwise convert it here to one of the native syntaxes every
pair of which converts both ways:

- Implicit VR Little Endian, Explicit VR Little Endian, Deflated Explicit VR Little
  Endian and Explicit VR Big Endian (PS3.5 A.1, A.2, A.5, A.3);
- any compressed syntax a pixel decoder is installed for (pylibjpeg, openjpeg, RLE)
  decodes to native pixel data first (compressed -> native only; the archive never
  re-compresses).

Pure pydicom work on bytes and datasets: no I/O beyond the file object handed in.

Encodings change through pydicom's writer, which turns every raw element into a
typed element when the target encoding differs from the one the data set was read
in (implicit elements carry no VR: they must not be copied as they lie). pydicom
writes other-binary values (OB, OW, OL, OF, OD, OV) as their bytes, so a change of
byte order swaps them here: by their VR's word size (PS3.5 7.3), and native Pixel
Data by Bits Allocated, the unit pydicom reads big-endian pixel data in (a 32-bit
dose grid decodes to the same values before and after).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

#: The native syntaxes, in the order a converter prefers them when free to choose
#: (explicit keeps the VRs of private elements; big endian is retired, PS3.5 A.3).
NATIVE_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)

#: Bytes per word of each other-binary VR whose values follow the byte order.
_WORD_SIZE = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}
_PIXEL_DATA = 0x7FE00010


class ConversionError(ValueError):
    """The instance cannot be produced in the requested transfer syntax; the message
    says why (it goes into Error Comments and HTTP reasons)."""


def is_native(syntax: str) -> bool:
    return syntax in NATIVE_SYNTAXES


def can_decode(syntax: str) -> bool:
    """Whether pixel data stored in ``syntax`` can be made native here."""
    if is_native(syntax):
        return True
    try:
        from pydicom.pixels.decoders.base import get_decoder

        return bool(get_decoder(UID(syntax)).is_available)
    except (NotImplementedError, ValueError):
        return False


def can_convert(stored: str, target: str) -> bool:
    """Whether an instance stored as ``stored`` can be sent as ``target``."""
    return stored == target or (is_native(target) and can_decode(stored))


def choose_syntax(stored: str, accepted: Collection[str]) -> str | None:
    """The syntax to send in among ``accepted``: as stored when accepted, else the first
    native syntax the instance converts to, else ``None``."""
    if stored in accepted:
        return stored
    for candidate in NATIVE_SYNTAXES:
        if candidate in accepted and can_convert(stored, candidate):
            return candidate
    return None


def convert_dataset(ds: Dataset, target: str) -> Dataset:
    """``ds`` (as ``dcmread`` returned it, its original encoding intact) made ready to be
    written in ``target``: decoded when compressed, other-binary values in the target
    byte order, the File Meta naming ``target``. Raises ``ConversionError``."""
    meta = getattr(ds, "file_meta", None)
    stored = UID(str(getattr(meta, "TransferSyntaxUID", "") or ""))
    wanted = UID(target)
    if not is_native(wanted):
        raise ConversionError(f"cannot convert to {_name(wanted)}: not a native syntax")
    if stored == wanted:
        return ds
    try:
        if stored.is_compressed and not stored.is_deflated:
            if "PixelData" not in ds:
                raise ConversionError(f"{_name(stored)} without Pixel Data")
            if not can_decode(stored):
                raise ConversionError(f"no decoder installed for {_name(stored)}")
            ds.decompress(generate_instance_uid=False)
        little = ds.original_encoding[1]
        if little is None:
            little = stored.is_little_endian if stored.is_transfer_syntax else True
        swap = bool(little) != bool(wanted.is_little_endian)
        _settle(ds, swap=swap, from_big=not little)
    except ConversionError:
        raise
    except Exception as exc:  # pydicom and the decoders raise many types
        raise ConversionError(
            f"converting {_name(stored)} to {_name(wanted)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    ds.file_meta.TransferSyntaxUID = wanted
    return ds


def convert_bytes(source: Path | BinaryIO | bytes, target: str) -> bytes:
    """The Part 10 file ``source`` re-encoded in ``target`` (every UID kept)."""
    ds = _read(source)
    convert_dataset(ds, target)
    buffer = io.BytesIO()
    try:
        # dcmwrite, not save_as: save_as refuses a change of byte order (swapped above).
        dcmwrite(buffer, ds, enforce_file_format=True)
    except Exception as exc:
        raise ConversionError(
            f"writing {_name(UID(target))} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return buffer.getvalue()


def load_converted(source: Path | BinaryIO | bytes, target: str) -> Dataset:
    """The instance as a data set whose elements are already encoded in ``target`` (so a
    DIMSE send copies them as they are): converted, written, read back."""
    return dcmread(io.BytesIO(convert_bytes(source, target)))


def decode_frame(source: Path | BinaryIO, number: int) -> bytes:
    """One frame (1-based) decoded to native little-endian pixel bytes."""
    from pydicom.pixels.utils import pixel_array

    try:
        array = pixel_array(source, index=number - 1, raw=True)
    except Exception as exc:
        raise ConversionError(f"decoding frame {number} failed: {type(exc).__name__}") from exc
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return bytes(array.tobytes())


def _read(source: Path | BinaryIO | bytes) -> Dataset:
    try:
        return dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:
        raise ConversionError(f"the stored file is unreadable: {type(exc).__name__}") from exc


def _name(syntax: UID) -> str:
    return syntax.name if syntax.is_transfer_syntax else f"transfer syntax {str(syntax)[:64]}"


def _settle(ds: Dataset, *, swap: bool, from_big: bool) -> None:
    """Turn every raw element of ``ds`` and its items into a typed one (an implicit
    element carries no VR: copied as it lies it cannot be written explicit), settle
    native Pixel Data's VR (OW above 8 bits, else OB: PS3.5 A.2) and, with ``swap``,
    reverse the byte order of every other-binary value."""
    for elem in _elements(ds):
        if elem.VR == "SQ":
            for item in elem.value or ():
                _settle(item, swap=swap, from_big=from_big)
            continue
        value = elem.value
        if elem.tag == _PIXEL_DATA and "BitsAllocated" in ds and not elem.is_undefined_length:
            bits = int(ds.BitsAllocated or 8)
            if bits > 8:
                unit = bits // 8 if bits in (16, 32, 64) else 2
            else:  # 8-bit data in OW words on the big-endian side is swapped by word
                unit = 2 if from_big and elem.VR == "OW" else 1
            elem.VR = "OW" if bits > 8 else "OB"
        elif elem.tag == _PIXEL_DATA:
            continue  # encapsulated: a byte stream in either order
        else:
            unit = _WORD_SIZE.get(str(elem.VR), 1)
        if swap and unit > 1 and isinstance(value, bytes | bytearray) and value:
            elem.value = _swapped(bytes(value), unit)


def _elements(ds: Dataset) -> Iterator[DataElement]:
    for tag in list(ds.keys()):
        yield ds[tag]  # converts a raw element (the VR is looked up for implicit ones)


def _swapped(value: bytes, size: int) -> bytes:
    if size == 2 and len(value) % 2:
        value += b"\x00"  # the padding byte belongs to the last word (PS3.5 7.1.1)
    whole = len(value) - len(value) % size
    words = np.frombuffer(value, dtype=f">u{size}", count=whole // size)
    return bytes(words.astype(f"<u{size}").tobytes()) + value[whole:]
