"""Grayscale transforms: Modality LUT, VOI LUT / window, MONOCHROME1.

Each is a pure function ``(arr, ds) -> arr`` applied in the order of
PS3.3 C.11 (Modality LUT, then VOI LUT, then presentation). The VOI output is
the 0..255 range of an 8-bit display, as rendered resources need
(PS3.18 8.3.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from noctis_pacs.rendering.errors import BadRenderParameter

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]
VOI_FUNCTIONS: tuple[VoiFunction, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
Y_MIN = 0.0
Y_MAX = 255.0


@dataclass(frozen=True)
class Window:
    """A VOI window: Window Center, Window Width and VOI LUT Function.

    PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, LINEAR_EXACT and
    SIGMOID a width above 0; anything else raises :class:`BadRenderParameter`.
    """

    center: float
    width: float
    function: VoiFunction = "LINEAR"

    def __post_init__(self) -> None:
        if self.function not in VOI_FUNCTIONS:
            raise BadRenderParameter(f"unknown VOI LUT Function {self.function!r}")
        if not (math.isfinite(self.center) and math.isfinite(self.width)):
            raise BadRenderParameter("window center and width must be finite numbers")
        if self.function == "LINEAR" and self.width < 1:
            raise BadRenderParameter("window width must be >= 1 for LINEAR")
        if self.width <= 0:
            raise BadRenderParameter(f"window width must be > 0 for {self.function}")

    @classmethod
    def parse(cls, text: str) -> Window:
        """Parse ``center,width[,function]`` (the PS3.18 8.3.5.1.4 ``window``)."""
        parts = [part.strip() for part in text.split(",")]
        if len(parts) not in (2, 3):
            raise BadRenderParameter("window must be center,width[,function]")
        try:
            center, width = float(parts[0]), float(parts[1])
        except ValueError:
            raise BadRenderParameter(f"window values are not numbers: {text!r}") from None
        function = parts[2].upper() if len(parts) == 3 else "LINEAR"
        if function not in VOI_FUNCTIONS:
            raise BadRenderParameter(f"unknown VOI LUT Function {parts[2]!r}")
        return cls(center, width, function)


def lut_values(item: Dataset) -> tuple[int, np.ndarray, int]:
    """Return (first mapped value, LUT entries, bits per entry) of a LUT item.

    Reads LUT Descriptor and LUT Data as PS3.3 C.11.1.1.1 defines them: a
    descriptor number of entries of 0 means 65536; the first mapped value is
    signed when the input is (it is stored as US or SS, so may come as
    unsigned 16-bit and is reinterpreted here when above 32767 for a signed
    input would make it so).
    """
    descriptor = [int(value) for value in item.LUTDescriptor]
    if len(descriptor) != 3:
        raise ValueError("LUT Descriptor must have 3 values")
    entries = descriptor[0] or 65536
    first, bits = descriptor[1], descriptor[2]
    data: Any = item.LUTData
    if isinstance(data, bytes | bytearray):
        dtype = "<u1" if bits <= 8 and len(data) == entries else "<u2"
        values = np.frombuffer(data, dtype=dtype)
    else:
        values = np.asarray(
            list(data) if isinstance(data, MultiValue | list | tuple) else [data], dtype=np.int64
        )
    if values.size < entries:
        raise ValueError(f"LUT Data has {values.size} entries, descriptor says {entries}")
    return first, values[:entries].astype(np.float32), bits


def _apply_lut(arr: np.ndarray, first: int, values: np.ndarray) -> np.ndarray:
    index = np.clip(arr.astype(np.int64) - first, 0, values.size - 1)
    return np.asarray(values[index])


def apply_modality_lut(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values to modality values, float32 (PS3.3 C.11.1).

    Uses the Modality LUT Sequence when present, else Rescale Slope and
    Rescale Intercept (defaults 1 and 0).
    """
    sequence: Any = ds.get("ModalityLUTSequence", None)
    if sequence:
        try:
            first, values, _bits = lut_values(sequence[0])
        except (AttributeError, ValueError, TypeError):
            pass
        else:
            return _apply_lut(arr, first, values)
    slope = _float(ds, "RescaleSlope", 1.0)
    intercept = _float(ds, "RescaleIntercept", 0.0)
    values = arr.astype(np.float32)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def linear_rescale(ds: Dataset) -> tuple[float, float] | None:
    """(Rescale Slope, Rescale Intercept) when the Modality LUT of ``ds`` is that line.

    None when a usable Modality LUT Sequence applies instead (PS3.3 C.11.1):
    the same choice :func:`apply_modality_lut` makes.
    """
    sequence: Any = ds.get("ModalityLUTSequence", None)
    if sequence:
        try:
            lut_values(sequence[0])
        except (AttributeError, ValueError, TypeError):
            pass
        else:
            return None
    return _float(ds, "RescaleSlope", 1.0), _float(ds, "RescaleIntercept", 0.0)


def _float(ds: Dataset, keyword: str, default: float) -> float:
    value: Any = ds.get(keyword, None)
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    try:
        result = float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def window_linear(x: np.ndarray, window: Window) -> np.ndarray:
    """LINEAR window (PS3.3 C.11.2.1.2.1), output 0..255 float32.

    Between the two thresholds the standard's line runs from Y_MIN to Y_MAX, so the
    piecewise definition equals the line clipped to [Y_MIN, Y_MAX] (one pass, in place).
    """
    c, w = window.center, window.width
    if w <= 1.0:
        return np.where(x <= c - 0.5, np.float32(Y_MIN), np.float32(Y_MAX)).astype(np.float32)
    scale = (Y_MAX - Y_MIN) / (w - 1.0)
    offset = (0.5 - (c - 0.5) / (w - 1.0)) * (Y_MAX - Y_MIN) + Y_MIN
    y: np.ndarray = np.multiply(x, np.float32(scale), dtype=np.float32)
    y += np.float32(offset)
    np.clip(y, Y_MIN, Y_MAX, out=y)
    return y


def window_linear_exact(x: np.ndarray, window: Window) -> np.ndarray:
    """LINEAR_EXACT window (PS3.3 C.11.2.1.3.2), output 0..255 float32."""
    c, w = window.center, window.width
    y = ((x - c) / w + 0.5) * (Y_MAX - Y_MIN) + Y_MIN
    return np.asarray(np.clip(y, Y_MIN, Y_MAX), dtype=np.float32)


def window_sigmoid(x: np.ndarray, window: Window) -> np.ndarray:
    """SIGMOID window (PS3.3 C.11.2.1.3.1), output 0..255 float32."""
    c, w = window.center, window.width
    with np.errstate(over="ignore"):
        y = (Y_MAX - Y_MIN) / (1.0 + np.exp(-4.0 * (x - c) / w)) + Y_MIN
    return np.asarray(y, dtype=np.float32)


def apply_window(x: np.ndarray, window: Window) -> np.ndarray:
    """Apply ``window`` with its VOI LUT Function; 0..255 float32."""
    if window.function == "LINEAR_EXACT":
        return window_linear_exact(x, window)
    if window.function == "SIGMOID":
        return window_sigmoid(x, window)
    return window_linear(x, window)


def instance_window(ds: Dataset) -> Window | None:
    """The first Window Center/Width of ``ds`` with its VOI LUT Function, if valid."""
    center = _float(ds, "WindowCenter", math.nan)
    width = _float(ds, "WindowWidth", math.nan)
    if math.isnan(center) or math.isnan(width):
        return None
    function = str(ds.get("VOILUTFunction", "") or "LINEAR").strip().upper()
    try:
        return Window(center, width, cast(VoiFunction, function))
    except BadRenderParameter:
        return None


def to_uint8(y: np.ndarray) -> np.ndarray:
    """Round and clip a 0..255 float image to uint8."""
    rounded: np.ndarray = np.rint(y)
    np.clip(rounded, Y_MIN, Y_MAX, out=rounded)
    return rounded.astype(np.uint8)


def apply_voi(arr: np.ndarray, ds: Dataset, window: Window | None = None) -> np.ndarray:
    """Modality values to 0..255 uint8 (PS3.3 C.11.2).

    Uses, in this order: ``window`` from the request; the instance's first
    Window Center/Width with its VOI LUT Function; the first item of the VOI
    LUT Sequence (output scaled from its LUT Descriptor bit depth); else the
    frame's own minimum and maximum mapped linearly.
    """
    chosen = window or instance_window(ds)
    if chosen is not None:
        return to_uint8(apply_window(arr, chosen))
    sequence: Any = ds.get("VOILUTSequence", None)
    if sequence:
        try:
            first, values, bits = lut_values(sequence[0])
        except (AttributeError, ValueError, TypeError):
            pass
        else:
            top = max(float(2**bits - 1), float(values.max(initial=0.0)), 1.0)
            return to_uint8(_apply_lut(arr, first, values) * np.float32(Y_MAX / top))
    return to_uint8(min_max_scale(arr))


def min_max_scale(arr: np.ndarray) -> np.ndarray:
    """Map the array's minimum to 0 and maximum to 255 (0 where constant)."""
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    if finite.size == 0:
        return np.zeros(arr.shape, dtype=np.float32)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(arr.shape, dtype=np.float32)
    scaled = (arr.astype(np.float32) - np.float32(low)) * np.float32(Y_MAX / (high - low))
    return np.asarray(np.nan_to_num(scaled, nan=0.0))


def apply_monochrome1(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Invert a 0..255 image when Photometric Interpretation is MONOCHROME1.

    PS3.3 C.7.6.3.1.2: in MONOCHROME1 the minimum sample value is displayed
    as white. A Presentation LUT Shape of INVERSE on such an image describes
    the same inversion (PS3.3 C.8.11.6), so it is not applied twice.
    """
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if photometric == "MONOCHROME1":
        return np.asarray(np.uint8(255) - arr)
    return arr
