"""Render one frame to an 8-bit display image (PS3.18 8.3.5 rendered resources).

Composes decode (PS3.3 C.7.6.3), Modality LUT (C.11.1), VOI LUT / window
(C.11.2) and the photometric presentation (C.7.6.3.1.2) for grayscale;
the palette lookup (C.7.6.3.1.5) for PALETTE COLOR; a scale to 8 bits for
true colour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from noctis_pacs.rendering.decode import decode_frame
from noctis_pacs.rendering.errors import NotRenderable
from noctis_pacs.rendering.lut import (
    Window,
    apply_modality_lut,
    apply_monochrome1,
    apply_voi,
    apply_window,
    to_uint8,
)
from noctis_pacs.rendering.pixels import PALETTE, describe_pixels


def render_frame(
    ds: Dataset,
    frame_bytes: bytes,
    transfer_syntax_uid: str,
    *,
    window: Window | None = None,
    pixel_vr: str = "OB",
) -> np.ndarray:
    """Decode and render one frame: uint8, rows x columns (x 3 for colour)."""
    stored = decode_frame(ds, frame_bytes, transfer_syntax_uid, pixel_vr=pixel_vr)
    return render_pixels(stored, ds, window=window)


def render_pixels(arr: np.ndarray, ds: Dataset, *, window: Window | None = None) -> np.ndarray:
    """Render decoded pixels of ``ds`` (as :func:`decode_frame` returns them).

    Grayscale: Modality LUT, VOI, then MONOCHROME1 inversion.
    Colour images have no VOI in the standard (C.11.2 applies to grayscale);
    when a ``window`` is requested explicitly it is applied to each channel,
    so a user can still stretch a dim colour image.
    """
    desc = describe_pixels(ds)
    if desc.photometric_interpretation == PALETTE:
        return apply_palette(arr, ds)
    if arr.ndim == 3:
        if window is not None:
            return to_uint8(apply_window(arr.astype(np.float32), window))
        return scale_to_uint8(arr, desc.bits_stored)
    if arr.dtype.kind in "iu" and arr.size > _LUT_DOMAIN:
        low, high = int(arr.min()), int(arr.max())
        if high - low < _LUT_DOMAIN:
            # The same pipeline applied once to each stored value present, then looked
            # up: identical output, far fewer passes over a large frame.
            domain = np.arange(low, high + 1, dtype=np.int64)
            lut = _grayscale(domain, ds, window)
            return np.asarray(lut[np.subtract(arr, low, dtype=np.int64)])
    return _grayscale(arr, ds, window)


#: Stored-value ranges up to this size are rendered through a lookup table.
_LUT_DOMAIN = 1 << 16


def _grayscale(arr: np.ndarray, ds: Dataset, window: Window | None) -> np.ndarray:
    """Modality LUT, VOI, then MONOCHROME1 inversion (PS3.3 C.11, C.7.6.3.1.2)."""
    values = apply_modality_lut(arr, ds)
    return apply_monochrome1(apply_voi(values, ds, window), ds)


def scale_to_uint8(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """Scale unsigned samples of ``bits_stored`` bits to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    top = float(2**bits_stored - 1)
    return to_uint8(arr.astype(np.float64) * (255.0 / top))


def apply_palette(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """PALETTE COLOR indices to 8-bit RGB through the palette LUTs (C.7.6.3.1.5)."""
    try:
        rgb = apply_color_lut(arr, ds)
        descriptor: Any = ds.RedPaletteColorLookupTableDescriptor
        bits = int(descriptor[2])
    except Exception as exc:  # pydicom raises several types for malformed palettes
        raise NotRenderable(f"cannot apply the palette: {exc}") from exc
    if bits not in (8, 16):
        raise NotRenderable(f"palette entries of {bits} bits are not allowed (8 or 16)")
    if rgb.dtype != np.uint8 and bits == 8 and rgb.max(initial=0) <= 255:
        return rgb.astype(np.uint8)
    return scale_to_uint8(rgb, bits)
