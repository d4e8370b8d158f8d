"""Grayscale pipeline maths: native decoding, Modality LUT, VOI, MONOCHROME1."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydicom.dataset import Dataset

from noctis_pacs.rendering import (
    BadRenderParameter,
    NotRenderable,
    Window,
    apply_modality_lut,
    apply_voi,
    decode_frame,
    render_frame,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"


def header(**values: object) -> Dataset:
    ds = Dataset()
    ds.Rows = 2
    ds.Columns = 3
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def reference_linear(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.2.1 written as in the standard, one value at a time."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 255.0
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0


def reference_linear_exact(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.3.2."""
    if x <= c - w / 2:
        return 0.0
    if x > c + w / 2:
        return 255.0
    return ((x - c) / w + 0.5) * 255.0


def reference_sigmoid(x: float, c: float, w: float) -> float:
    """PS3.3 C.11.2.1.3.1."""
    return 255.0 / (1 + math.exp(-4 * (x - c) / w))


REFERENCES = {
    "LINEAR": reference_linear,
    "LINEAR_EXACT": reference_linear_exact,
    "SIGMOID": reference_sigmoid,
}


@pytest.mark.parametrize("function", sorted(REFERENCES))
@pytest.mark.parametrize(("center", "width"), [(40.0, 400.0), (-600.0, 1500.0), (0.5, 2.0)])
def test_window_matches_the_standard_formula(function: str, center: float, width: float) -> None:
    x = np.linspace(center - width, center + width, 2001, dtype=np.float32)
    x = np.concatenate([x, np.float32([center, center - 0.5, center + width / 2])])
    got = apply_voi(x, Dataset(), Window(center, width, function))  # type: ignore[arg-type]
    expected = np.array([REFERENCES[function](float(v), center, width) for v in x])
    assert got.dtype == np.uint8
    assert np.max(np.abs(got.astype(float) - np.clip(np.rint(expected), 0, 255))) <= 1


def test_instance_window_and_function_are_used() -> None:
    ds = header(WindowCenter=["100", "0"], WindowWidth=["50", "10"], VOILUTFunction="SIGMOID")
    x = np.array([75.0, 100.0, 125.0], dtype=np.float32)
    assert apply_voi(x, ds).tolist() == [
        round(reference_sigmoid(v, 100, 50)) for v in (75.0, 100.0, 125.0)
    ]


def test_request_window_wins_over_instance_window() -> None:
    ds = header(WindowCenter="100", WindowWidth="50")
    x = np.array([0.0, 10.0], dtype=np.float32)
    assert apply_voi(x, ds, Window(5, 10, "LINEAR_EXACT")).tolist() == [0, 255]


def test_voi_lut_sequence_then_min_max() -> None:
    item = Dataset()
    item.LUTDescriptor = [4, 10, 8]
    item.LUTData = [0, 51, 102, 255]
    ds = header()
    ds.VOILUTSequence = [item]
    x = np.array([0.0, 10.0, 11.0, 12.0, 13.0, 99.0], dtype=np.float32)
    assert apply_voi(x, ds).tolist() == [0, 0, 51, 102, 255, 255]
    assert apply_voi(np.array([-5.0, 0.0, 5.0]), header()).tolist() == [0, 128, 255]
    assert apply_voi(np.full(4, 7.0), header()).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("40,400", Window(40, 400)),
        ("-600, 1500, sigmoid", Window(-600, 1500, "SIGMOID")),
        ("1,0.5,LINEAR_EXACT", Window(1, 0.5, "LINEAR_EXACT")),
    ],
)
def test_window_parse(text: str, window: Window) -> None:
    assert Window.parse(text) == window


@pytest.mark.parametrize(
    "text", ["40", "a,b", "40,0", "40,0.5", "1,2,cubic", "nan,4", "1,-3,SIGMOID"]
)
def test_window_parse_rejects(text: str) -> None:
    with pytest.raises(BadRenderParameter):
        Window.parse(text)


def test_rescale_and_modality_lut_sequence() -> None:
    stored = np.array([[0, 1000, 2000]], dtype=np.int16)
    ds = header(RescaleSlope="2", RescaleIntercept="-1024")
    assert apply_modality_lut(stored, ds).tolist() == [[-1024.0, 976.0, 2976.0]]
    item = Dataset()
    item.LUTDescriptor = [3, 1000, 16]
    item.LUTData = [5, 6, 7]
    ds.ModalityLUTSequence = [item]
    assert apply_modality_lut(stored, ds).tolist() == [[5.0, 5.0, 7.0]]


def test_monochrome1_renders_inverted() -> None:
    values = np.array([[0, 100, 200], [300, 400, 500]], dtype="<u2")
    window = Window(250, 500, "LINEAR_EXACT")
    mono2 = render_frame(header(), values.tobytes(), EXPLICIT_LE, window=window)
    mono1 = render_frame(
        header(PhotometricInterpretation="MONOCHROME1"),
        values.tobytes(),
        EXPLICIT_LE,
        window=window,
    )
    assert mono2[0, 0] == 0 and mono2[1, 2] == 255
    assert (mono1.astype(int) + mono2.astype(int) == 255).all()


def test_native_signed_high_bit_and_big_endian() -> None:
    # 12 bits stored, signed, garbage in the 4 unused high bits (PS3.5 8.1.1).
    values = np.array([-2048, -1, 0, 1, 2047, -5], dtype=np.int16)
    raw = (values.astype(np.uint16) & 0x0FFF) | 0xA000
    ds = header(BitsStored=12, HighBit=11, PixelRepresentation=1)
    little = decode_frame(ds, raw.astype("<u2").tobytes(), EXPLICIT_LE)
    big = decode_frame(ds, raw.astype(">u2").tobytes(), EXPLICIT_BE)
    assert little.tolist() == values.reshape(2, 3).tolist()
    assert big.tolist() == values.reshape(2, 3).tolist()


def test_native_rgb_planar_configurations_and_32_bit() -> None:
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    ds = header(SamplesPerPixel=3, PhotometricInterpretation="RGB", BitsAllocated=8, BitsStored=8)
    ds.HighBit = 7
    ds.PlanarConfiguration = 0
    assert (decode_frame(ds, rgb.tobytes(), EXPLICIT_LE) == rgb).all()
    ds.PlanarConfiguration = 1
    planar = rgb.transpose(2, 0, 1).tobytes()
    assert (decode_frame(ds, planar, EXPLICIT_LE) == rgb).all()
    ds32 = header(BitsAllocated=32, BitsStored=32, HighBit=31)
    values = np.array([0, 1, 2**31, 2**32 - 1, 7, 8], dtype="<u4")
    assert decode_frame(ds32, values.tobytes(), EXPLICIT_LE).ravel().tolist() == values.tolist()


@pytest.mark.parametrize(
    ("changes", "data"),
    [
        ({}, b"\0" * 11),
        ({"BitsAllocated": 12}, b"\0" * 12),
        ({"PhotometricInterpretation": "HSV"}, b"\0" * 12),
        ({"BitsStored": 17}, b"\0" * 12),
        ({"SamplesPerPixel": 3}, b"\0" * 36),
    ],
)
def test_bad_headers_and_frames_are_not_renderable(changes: dict[str, object], data: bytes) -> None:
    with pytest.raises(NotRenderable):
        render_frame(header(**changes), data, EXPLICIT_LE)
    del_rows = header()
    del del_rows.Rows
    with pytest.raises(NotRenderable, match="Rows"):
        render_frame(del_rows, b"\0" * 12, EXPLICIT_LE)


def test_unknown_transfer_syntax_is_not_renderable() -> None:
    with pytest.raises(NotRenderable, match="1.2.3.4"):
        render_frame(header(), b"\0" * 12, "1.2.3.4")
    with pytest.raises(NotRenderable):
        render_frame(header(), b"not a jpeg", "1.2.840.10008.1.2.4.50")
