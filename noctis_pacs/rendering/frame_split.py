"""Split a full data set's Pixel Data into per-frame bytes.

The archive slices frames by offsets recorded at ingest; this helper serves
callers that hold a whole data set in memory (the CLI ``render`` verb, tests,
benchmarks). Native frames are byte slices (PS3.5 8.1.1); encapsulated
frames are their fragments concatenated, found through the Basic or Extended
Offset Table when there is one (PS3.5 A.4).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from noctis_pacs.rendering.decode import NATIVE_BIG_ENDIAN, NATIVE_LITTLE_ENDIAN
from noctis_pacs.rendering.errors import NotRenderable
from noctis_pacs.rendering.pixels import describe_pixels


def transfer_syntax_of(ds: Dataset) -> str:
    """Return the Transfer Syntax UID from ``ds.file_meta`` or raise NotRenderable."""
    meta = getattr(ds, "file_meta", None)
    uid = None if meta is None else meta.get("TransferSyntaxUID", None)
    if not uid:
        raise NotRenderable("the data set has no Transfer Syntax UID")
    return str(uid)


def iter_frames(ds: Dataset) -> Iterator[bytes]:
    """Yield the bytes of each frame of ``ds`` (which must hold Pixel Data)."""
    if "PixelData" not in ds:
        raise NotRenderable("the data set has no Pixel Data")
    uid = transfer_syntax_of(ds)
    desc = describe_pixels(ds)
    value = ds.PixelData
    if uid in NATIVE_LITTLE_ENDIAN - {"1.2.840.10008.1.2.1.98"} or uid == NATIVE_BIG_ENDIAN:
        frame_bits = desc.native_frame_bits
        if frame_bits % 8 and desc.number_of_frames > 1:
            raise NotRenderable("bit-packed frames do not start on byte boundaries")
        if desc.number_of_frames == 1:
            # The whole value, trailing padding included: an 8-bit OW value
            # written big endian needs its last 16-bit word whole (PS3.5 A.3).
            yield bytes(value)
            return
        length = (frame_bits + 7) // 8
        for index in range(desc.number_of_frames):
            yield bytes(value[index * length : (index + 1) * length])
        return
    try:
        yield from generate_frames(value, number_of_frames=desc.number_of_frames)
    except (ValueError, StopIteration) as exc:
        raise NotRenderable(f"cannot split encapsulated Pixel Data: {exc}") from exc
