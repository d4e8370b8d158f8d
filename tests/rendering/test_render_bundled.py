"""Every pydicom test file with Pixel Data renders, or is refused with a reason."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.dataset import FileDataset

from noctis_pacs.rendering import (
    NotRenderable,
    decode_frame,
    encode_jpeg,
    encode_png,
    iter_frames,
    render_frame,
    transfer_syntax_of,
)


def _with_pixels() -> list[str]:
    paths = []
    for path in sorted(get_testdata_files()):
        try:
            ds = dcmread(path, specific_tags=["PixelData"])
        except Exception:  # not DICOM at all: nothing to render
            continue
        if "PixelData" in ds:
            paths.append(path)
    return paths


PATHS = _with_pixels()


def test_corpus_is_large() -> None:
    assert len(PATHS) >= 80


@pytest.mark.parametrize("path", PATHS, ids=[Path(path).name for path in PATHS])
def test_bundled_file_renders_or_is_refused(path: str) -> None:
    warnings.simplefilter("ignore")
    full: FileDataset = dcmread(path)
    header = dcmread(path, stop_before_pixels=True)
    try:
        uid = transfer_syntax_of(full)
        frame = next(iter_frames(full))
        vr = full["PixelData"].VR
        stored = decode_frame(header, frame, uid, pixel_vr=vr)
        image = render_frame(header, frame, uid, pixel_vr=vr)
    except NotRenderable as exc:
        assert exc.reason
        return
    assert image.dtype == np.uint8
    assert image.shape[:2] == (int(header.Rows), int(header.Columns))
    assert image.ndim == 2 or image.shape[2] == 3
    assert encode_png(image)[:8] == b"\x89PNG\r\n\x1a\n"
    assert encode_jpeg(image, 80)[:2] == b"\xff\xd8"
    try:
        reference = full.pixel_array
    except Exception:  # pydicom cannot decode it either: nothing to compare with
        return
    if int(full.get("NumberOfFrames", 1) or 1) > 1:
        reference = reference[0]
    assert stored.shape == reference.shape
    assert np.array_equal(stored.astype(np.int64), reference.astype(np.int64))
