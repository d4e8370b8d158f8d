"""The lookup-table path of render_pixels gives exactly the direct pipeline's output."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from noctis_pacs.rendering import Window, render_pixels
from noctis_pacs.rendering.render import _grayscale


def _header(photometric: str = "MONOCHROME2", **extra: object) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.PixelRepresentation = 1
    ds.Rows = 512
    ds.Columns = 512
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


@pytest.mark.parametrize(
    ("header", "window"),
    [
        (_header(RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400), None),
        (_header(RescaleSlope=0.5, RescaleIntercept=3), Window(100, 50, "SIGMOID")),
        (_header(), None),  # min/max of the frame
        (
            _header("MONOCHROME1", WindowCenter=0, WindowWidth=1000, VOILUTFunction="LINEAR_EXACT"),
            None,
        ),
    ],
)
def test_lut_path_equals_the_direct_pipeline(header: Dataset, window: Window | None) -> None:
    rng = np.random.default_rng(7)  # 512 x 512 > the LUT threshold: the LUT path runs
    stored = rng.integers(-2000, 3000, size=(512, 512), dtype=np.int16)
    assert np.array_equal(
        render_pixels(stored, header, window=window), _grayscale(stored, header, window)
    )
