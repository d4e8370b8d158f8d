"""Decode one frame of pixel data into stored values.

The caller hands over a header-only dataset (no Pixel Data) and the bytes of
one frame: for native transfer syntaxes the frame's slice of the Pixel Data
value, for encapsulated ones the frame's fragments concatenated (PS3.5 A.4).
Nothing here ever needs the other frames.

The result holds *stored values* for MONOCHROME1/2 and PALETTE COLOR
(rows x columns, sign-extended per Pixel Representation) and RGB for colour
images (rows x columns x 3): YBR_FULL and YBR_FULL_422 are converted with the
equations of PS3.3 C.7.6.3.1.2, JPEG 2000 YBR_ICT/YBR_RCT come out of the
decoder already converted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder

from noctis_pacs.rendering.errors import NotRenderable
from noctis_pacs.rendering.pixels import PixelDescription, describe_pixels

#: Transfer syntaxes whose frames are native (uncompressed) little endian
#: pixel data (PS3.5 A.1, A.2, A.5; deflate applies to the whole data set, so
#: a deflated file's Pixel Data value is already inflated when it is read;
#: 1.2.840.10008.1.2.1.98 is Encapsulated Uncompressed Explicit VR Little
#: Endian, whose single fragment per frame is native data).
NATIVE_LITTLE_ENDIAN = frozenset(
    {
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.1.98",
    }
)
#: Explicit VR Big Endian (retired, PS3.5 A.3).
NATIVE_BIG_ENDIAN = "1.2.840.10008.1.2.2"


def decode_frame(
    ds: Dataset, frame_bytes: bytes, transfer_syntax_uid: str, *, pixel_vr: str = "OB"
) -> np.ndarray:
    """Return one decoded frame of ``ds`` (stored values, or RGB for colour).

    ``ds`` carries the Image Pixel module (PS3.3 C.7.6.3) but no Pixel Data;
    ``frame_bytes`` are the frame's bytes in ``transfer_syntax_uid``.
    ``pixel_vr`` matters only for 8-bit Explicit VR Big Endian data: an OW
    value has its bytes swapped in 16-bit words (PS3.5 A.3).
    Raises :class:`NotRenderable` with a reason for anything it cannot decode.
    """
    desc = describe_pixels(ds)
    uid = str(transfer_syntax_uid).strip()
    if uid == NATIVE_BIG_ENDIAN and desc.bits_allocated == 8 and pixel_vr == "OW":
        frame_bytes = _swap_words(frame_bytes)
    if uid in NATIVE_LITTLE_ENDIAN or uid == NATIVE_BIG_ENDIAN:
        arr = decode_native(desc, frame_bytes, big_endian=uid == NATIVE_BIG_ENDIAN)
        if desc.photometric_interpretation in ("YBR_FULL", "YBR_FULL_422"):
            arr = ybr_full_to_rgb(arr, desc.bits_stored)
        return arr
    return _decode_encapsulated(desc, frame_bytes, uid)


def _swap_words(data: bytes) -> bytes:
    """Undo the 16-bit word byte order of an OW value written big endian."""
    padded = data + b"\0" if len(data) % 2 else data
    return np.frombuffer(padded, dtype=">u2").astype("<u2").tobytes()


def decode_native(desc: PixelDescription, data: bytes, *, big_endian: bool) -> np.ndarray:
    """Return the stored values of one natively encoded frame (PS3.5 8.1.1).

    Applies High Bit / Bits Stored masking, sign extension for Pixel
    Representation 1, Planar Configuration (PS3.3 C.7.6.3.1.3) and removes
    YBR_FULL_422 horizontal subsampling (samples stay YBR).
    """
    needed = (desc.native_frame_bits + 7) // 8
    if len(data) < needed:
        raise NotRenderable(f"frame is truncated: {len(data)} bytes, {needed} expected")
    rows, columns = desc.rows, desc.columns
    if desc.bits_allocated == 1:
        bits = np.unpackbits(np.frombuffer(data, np.uint8, count=needed), bitorder="little")
        return bits[: desc.pixels_per_frame].reshape(rows, columns)
    itemsize = desc.bits_allocated // 8
    dtype = np.dtype(f"{'>' if big_endian else '<'}u{itemsize}")
    raw = np.frombuffer(data, dtype=dtype, count=needed // itemsize)
    stored = _stored_values(raw.astype(f"=u{itemsize}", copy=big_endian), desc)
    if desc.photometric_interpretation == "YBR_FULL_422":
        if columns % 2:
            raise NotRenderable("YBR_FULL_422 needs an even number of columns")
        quads = stored.reshape(rows, columns // 2, 4)
        out = np.empty((rows, columns, 3), dtype=stored.dtype)
        out[..., 0] = quads[..., :2].reshape(rows, columns)
        out[..., 1] = np.repeat(quads[..., 2], 2, axis=1)
        out[..., 2] = np.repeat(quads[..., 3], 2, axis=1)
        return out
    if desc.samples_per_pixel == 1:
        return stored.reshape(rows, columns)
    if desc.planar_configuration == 1:
        return stored.reshape(desc.samples_per_pixel, rows, columns).transpose(1, 2, 0)
    return stored.reshape(rows, columns, desc.samples_per_pixel)


def _stored_values(raw: np.ndarray, desc: PixelDescription) -> np.ndarray:
    """Keep the Bits Stored bits ending at High Bit; sign-extend if signed."""
    shift = desc.high_bit + 1 - desc.bits_stored
    bits = desc.bits_allocated
    values = raw
    if shift:
        values = values >> shift
    if desc.bits_stored < bits:
        values = values & np.array((1 << desc.bits_stored) - 1, dtype=values.dtype)
    if desc.pixel_representation == 0:
        return values
    signed = values.view(f"=i{bits // 8}")
    unused = bits - desc.bits_stored
    if unused:
        signed = (signed << unused) >> unused
    return signed


def ybr_full_to_rgb(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """Convert YBR_FULL samples to RGB with the equations of PS3.3 C.7.6.3.1.2."""
    top = float((1 << bits_stored) - 1)
    half = float(1 << (bits_stored - 1))
    ybr = arr.astype(np.float32)
    luma, blue, red = ybr[..., 0], ybr[..., 1] - half, ybr[..., 2] - half
    rgb = np.empty(arr.shape, dtype=np.float32)
    rgb[..., 0] = luma + 1.402 * red
    rgb[..., 1] = luma - 0.344136 * blue - 0.714136 * red
    rgb[..., 2] = luma + 1.772 * blue
    return np.clip(np.rint(rgb), 0, top).astype(arr.dtype)


def _decode_encapsulated(desc: PixelDescription, data: bytes, uid: str) -> np.ndarray:
    """Decode one compressed frame with pydicom's decoders (pylibjpeg plugins).

    The frame is wrapped as the only frame of an encapsulated value so the
    decoder never sees, nor needs, the other frames.
    """
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise NotRenderable(f"no decoder for transfer syntax {uid}") from None
    if not decoder.is_available:
        raise NotRenderable(f"the decoder plugin for transfer syntax {uid} is not installed")
    if not data:
        raise NotRenderable("frame is empty")
    options: dict[str, Any] = {
        "rows": desc.rows,
        "columns": desc.columns,
        "samples_per_pixel": desc.samples_per_pixel,
        "bits_allocated": desc.bits_allocated,
        "bits_stored": desc.bits_stored,
        "pixel_representation": desc.pixel_representation,
        "photometric_interpretation": desc.photometric_interpretation,
        "planar_configuration": desc.planar_configuration,
        "number_of_frames": 1,
        "pixel_keyword": "PixelData",
    }
    try:
        arr, properties = decoder.as_array(encapsulate([bytes(data)]), index=0, **options)
    except Exception as exc:  # third-party plugins raise anything; all mean "cannot decode"
        raise NotRenderable(f"cannot decode frame ({uid}): {exc}") from exc
    expected: tuple[int, ...] = (desc.rows, desc.columns)
    if desc.samples_per_pixel > 1:
        expected = (desc.rows, desc.columns, desc.samples_per_pixel)
    if arr.shape != expected:
        raise NotRenderable(f"decoded frame has shape {arr.shape}, expected {expected}")
    photometric = str(properties.get("photometric_interpretation", ""))
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        arr = ybr_full_to_rgb(arr, desc.bits_stored)
    return arr
