"""Encoding and PS3.18 8.3.5.1.3 viewport handling."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from noctis_pacs.rendering import (
    BadRenderParameter,
    Viewport,
    encode_jpeg,
    encode_png,
    fit_viewport,
)


def gradient(height: int, width: int) -> np.ndarray:
    return (np.arange(height * width) % 256).astype(np.uint8).reshape(height, width)


def test_png_is_lossless_and_jpeg_decodes() -> None:
    image = gradient(40, 60)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(image)))), image)
    rgb = np.stack([image, 255 - image, image // 2], axis=-1)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(encode_png(rgb)))), rgb)
    decoded = Image.open(io.BytesIO(encode_jpeg(rgb, 95)))
    assert decoded.size == (60, 40) and decoded.mode == "RGB"
    assert len(encode_jpeg(image, 10)) < len(encode_jpeg(image, 100))
    with pytest.raises(BadRenderParameter):
        encode_jpeg(image, 0)
    with pytest.raises(BadRenderParameter):
        encode_png(image.astype(np.uint16))


def test_viewport_keeps_aspect_ratio() -> None:
    image = gradient(100, 200)
    assert fit_viewport(image, 50, 50).shape == (25, 50)
    assert fit_viewport(image, 400, 1000).shape == (200, 400)
    rgb = np.zeros((100, 200, 3), dtype=np.uint8)
    assert fit_viewport(rgb, 64, 64).shape == (32, 64, 3)


def test_viewport_source_region_crops_and_flips() -> None:
    image = np.zeros((100, 200), dtype=np.uint8)
    image[10:20, 30:50] = 255
    crop = fit_viewport(image, 20, 10, (30, 10, 20, 10))
    assert crop.shape == (10, 20) and (crop == 255).all()
    image[10:20, 30:40] = 100
    flipped = fit_viewport(image, 20, 10, (50, 10, -20, 10))
    assert flipped[:, 0].tolist() == [255] * 10 and flipped[:, -1].tolist() == [100] * 10
    with pytest.raises(BadRenderParameter):
        fit_viewport(image, 20, 10, (150, 0, 100, 10))
    with pytest.raises(BadRenderParameter):
        fit_viewport(image, 0, 10)


def test_viewport_parse() -> None:
    assert Viewport.parse("512,256") == Viewport(512, 256)
    parsed = Viewport.parse("64,64,10,20,30,40")
    assert parsed.region == (10.0, 20.0, 30.0, 40.0)
    for text in ("64", "a,b", "0,5", "99999,5", "1,2,3"):
        with pytest.raises(BadRenderParameter):
            Viewport.parse(text)
