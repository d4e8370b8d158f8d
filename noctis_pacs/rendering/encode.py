"""Viewport scaling and image encoding for rendered resources (PS3.18 8.3.5).

Pillow is the encoder (JPEG via libjpeg-turbo, PNG via zlib) and does the
resampling; the arrays handled here are the uint8 output of rendering.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from noctis_pacs.rendering.errors import BadRenderParameter

#: Largest viewport side accepted; bounds memory per request.
MAX_VIEWPORT = 8192
#: zlib level for PNG: 1 encodes CT images faster than Pillow's default 6, smooth
#: images most (figures: docs/performance.md, "Measurements behind the code").
PNG_COMPRESS_LEVEL = 1

Region = tuple[float, float, float, float]


@dataclass(frozen=True)
class Viewport:
    """The PS3.18 8.3.5.1.3 ``viewport`` parameter: vw,vh[,sx,sy,sw,sh]."""

    width: int
    height: int
    region: Region | None = None

    @classmethod
    def parse(cls, text: str) -> Viewport:
        """Parse ``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` (empty source values default)."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) not in (2, 6):
            raise BadRenderParameter("viewport must be vw,vh or vw,vh,sx,sy,sw,sh")
        try:
            width, height = int(parts[0]), int(parts[1])
            source = [float(part) if part else math.nan for part in parts[2:]]
        except ValueError:
            raise BadRenderParameter(f"viewport values are not numbers: {text!r}") from None
        _check_size(width, height)
        region = None if not source else (source[0], source[1], source[2], source[3])
        return cls(width, height, region)


def _check_size(width: int, height: int) -> None:
    if not (1 <= width <= MAX_VIEWPORT and 1 <= height <= MAX_VIEWPORT):
        raise BadRenderParameter(f"viewport sides must be within 1..{MAX_VIEWPORT}")


def _source_box(arr: np.ndarray, region: Region | None) -> tuple[float, float, float, float]:
    """Return (sx, sy, sw, sh) with PS3.18 defaults filled in and checked.

    sx, sy default to 0; sw, sh to the rest of the image. Negative sw or sh
    select the region leftwards or upwards of sx, sy and flip the output.
    """
    height, width = arr.shape[:2]
    if region is None:
        return 0.0, 0.0, float(width), float(height)
    sx, sy, sw, sh = region
    sx = 0.0 if math.isnan(sx) else sx
    sy = 0.0 if math.isnan(sy) else sy
    sw = width - sx if math.isnan(sw) else sw
    sh = height - sy if math.isnan(sh) else sh
    values = (sx, sy, sw, sh)
    if not all(math.isfinite(value) for value in values) or sw == 0 or sh == 0:
        raise BadRenderParameter("viewport source region is empty")
    left, right = sorted((sx, sx + sw))
    top, bottom = sorted((sy, sy + sh))
    if left < 0 or top < 0 or right > width or bottom > height:
        raise BadRenderParameter(f"viewport source region is outside the {width}x{height} image")
    return sx, sy, sw, sh


def fit_viewport(
    arr: np.ndarray, width: int, height: int, region: Region | None = None
) -> np.ndarray:
    """Crop ``region`` (sx, sy, sw, sh) and scale it to fit ``width`` x ``height``.

    The aspect ratio is kept (PS3.18 8.3.5.1.3), so the result may be smaller
    than the viewport along one side; it is never padded.
    """
    _check_size(width, height)
    sx, sy, sw, sh = _source_box(arr, region)
    scale = min(width / abs(sw), height / abs(sh))
    out_w = max(1, min(width, round(abs(sw) * scale)))
    out_h = max(1, min(height, round(abs(sh) * scale)))
    box = (min(sx, sx + sw), min(sy, sy + sh), max(sx, sx + sw), max(sy, sy + sh))
    image = Image.fromarray(np.ascontiguousarray(arr))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    resized = image.resize((out_w, out_h), resample=resample, box=box)
    if sw < 0:
        resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sh < 0:
        resized = resized.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return np.asarray(resized)


def _image(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise BadRenderParameter("only uint8 grayscale or RGB images can be encoded")
    return Image.fromarray(np.ascontiguousarray(arr))


def encode_png(arr: np.ndarray, *, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode a uint8 grayscale or RGB image as PNG."""
    buffer = io.BytesIO()
    _image(arr).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def encode_jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    """Encode a uint8 grayscale or RGB image as baseline JPEG.

    ``quality`` is the PS3.18 8.3.5.1.2 ``quality`` parameter, 1..100.
    """
    if not 1 <= quality <= 100:
        raise BadRenderParameter("quality must be within 1..100")
    buffer = io.BytesIO()
    _image(arr).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
