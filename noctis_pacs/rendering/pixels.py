"""The Image Pixel module description a frame decoder needs.

Reads and checks the attributes of PS3.3 C.7.6.3 (Image Pixel Module) from a
header-only dataset, so that every later step can rely on them and a
malformed header becomes a :class:`NotRenderable` with a reason instead of an
``AttributeError`` deep inside a decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from noctis_pacs.rendering.errors import NotRenderable

#: Photometric interpretations this package renders (PS3.3 C.7.6.3.1.2).
MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"})
PALETTE = "PALETTE COLOR"


@dataclass(frozen=True)
class PixelDescription:
    """Image Pixel module values of one frame (PS3.3 C.7.6.3)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int

    @property
    def pixels_per_frame(self) -> int:
        """Number of samples in one frame (rows x columns x samples per pixel)."""
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def native_frame_bits(self) -> int:
        """Length in bits of one natively encoded frame (PS3.5 8.1.1)."""
        if self.photometric_interpretation == "YBR_FULL_422":
            # Two luminance and two chrominance samples per pair of pixels
            # (PS3.3 C.7.6.3.1.2).
            return self.rows * self.columns * 2 * self.bits_allocated
        return self.pixels_per_frame * self.bits_allocated


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value: Any = ds.get(keyword, None)
    if value is None or value == "":
        if default is None:
            raise NotRenderable(f"missing required attribute {keyword}")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotRenderable(f"{keyword} is not an integer: {value!r}") from None


def describe_pixels(ds: Dataset) -> PixelDescription:
    """Return the checked Image Pixel module description of ``ds``.

    Raises :class:`NotRenderable` when a required attribute is missing or the
    combination is one the standard does not allow (PS3.3 C.7.6.3.1).
    """
    rows = _int(ds, "Rows")
    columns = _int(ds, "Columns")
    samples = _int(ds, "SamplesPerPixel", 1)
    bits_allocated = _int(ds, "BitsAllocated")
    bits_stored = _int(ds, "BitsStored", bits_allocated)
    high_bit = _int(ds, "HighBit", bits_stored - 1)
    representation = _int(ds, "PixelRepresentation", 0)
    planar = _int(ds, "PlanarConfiguration", 0)
    raw_frames: Any = ds.get("NumberOfFrames", None)
    frames = 1 if raw_frames in (None, "") else _int(ds, "NumberOfFrames")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric:
        photometric = "MONOCHROME2" if samples == 1 else "RGB"
    if rows < 1 or columns < 1:
        raise NotRenderable(f"image has no pixels: Rows={rows} Columns={columns}")
    if bits_allocated not in (1, 8, 16, 32):
        raise NotRenderable(f"unsupported Bits Allocated {bits_allocated}")
    if not 1 <= bits_stored <= bits_allocated:
        raise NotRenderable(f"Bits Stored {bits_stored} outside 1..{bits_allocated}")
    if not bits_stored - 1 <= high_bit <= bits_allocated - 1:
        raise NotRenderable(f"High Bit {high_bit} inconsistent with Bits Stored {bits_stored}")
    if representation not in (0, 1):
        raise NotRenderable(f"invalid Pixel Representation {representation}")
    if frames < 1:
        raise NotRenderable(f"invalid Number of Frames {frames}")
    if photometric in MONOCHROME or photometric == PALETTE:
        if samples != 1:
            raise NotRenderable(f"{photometric} needs 1 sample per pixel, not {samples}")
    elif photometric in COLOR:
        if samples != 3:
            raise NotRenderable(f"{photometric} needs 3 samples per pixel, not {samples}")
    else:
        raise NotRenderable(f"unsupported Photometric Interpretation {photometric!r}")
    if planar not in (0, 1):
        raise NotRenderable(f"invalid Planar Configuration {planar}")
    return PixelDescription(
        rows=rows,
        columns=columns,
        samples_per_pixel=samples,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        high_bit=high_bit,
        pixel_representation=representation,
        photometric_interpretation=photometric,
        planar_configuration=planar,
        number_of_frames=frames,
    )
