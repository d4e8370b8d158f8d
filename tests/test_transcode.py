"""The one transfer syntax converter (noctis_pacs/core/transcode.py), as a property over
every pair of native syntaxes and every bundled pydicom test file (PS3.5 A.1-A.5)."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from noctis_pacs.core.transcode import (
    NATIVE_SYNTAXES,
    ConversionError,
    can_convert,
    choose_syntax,
    convert_bytes,
    load_converted,
)
from tests.factory import bundled_dicom_files, uid

_BINARY_VRS = frozenset({"OB", "OW", "OL", "OF", "OD", "OV", "UN", "OB or OW", "US or OW"})


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def _normalised(ds: Dataset) -> list[tuple[int, Any]]:
    """Every element's value, binary values by length (their byte order follows the
    syntax), sequences item by item; Pixel Data, group 0002 and group lengths left out."""
    out: list[tuple[int, Any]] = []
    for elem in ds:
        if elem.tag == 0x7FE00010 or elem.tag.group == 0x0002 or elem.tag.element == 0:
            continue  # group lengths are retired (PS3.5 7.2): the writer leaves them out
        if elem.VR == "SQ":
            out.append((int(elem.tag), [_normalised(item) for item in elem.value]))
        elif elem.tag.is_private:
            # Implicit VR has no VR for an unknown private element: it reads back as UN
            # bytes, so private values compare by their padded length.
            out.append((int(elem.tag), _encoded_length(elem.value, str(elem.VR), elem.VM)))
        elif elem.VR in _BINARY_VRS or isinstance(elem.value, bytes):
            out.append((int(elem.tag), len(elem.value or b"")))
        else:
            out.append((int(elem.tag), "" if elem.value is None else str(elem.value)))
    return out


_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4}


def _encoded_length(value: Any, vr: str, vm: int) -> int:
    if isinstance(value, bytes):
        return len(value) + len(value) % 2
    if vr in _NUMBER_SIZES:
        return vm * _NUMBER_SIZES[vr]
    size = len(str("" if value is None else value).encode())
    return size + size % 2


def _pixels(ds: Dataset) -> np.ndarray | None:
    if "PixelData" not in ds:
        return None
    try:
        return ds.pixel_array
    except Exception:  # noqa: BLE001 - a file pydicom itself cannot decode
        return None


def _synthetic(syntax: str) -> bytes:
    """A CT instance with what byte order and VR encoding touch: signed 16-bit pixels,
    US/SS values, an OW LUT and an FD value in a sequence, a private element, odd text."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid(), uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]  # (0008,0008): the element of issue 14
    ds.PatientName = "Synthetic^Odd"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 4, 6
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SmallestImagePixelValue = -1024
    ds.ImagePositionPatient = [-12.5, 3.25, 100.0]
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 16]
    lut.LUTData = np.array([1, 256, 4096, 65535], dtype="<u2").tobytes()
    lut.SingleCollimationWidth = -2.25  # FD in an item
    ds.VOILUTSequence = Sequence([lut])
    ds.add_new(0x00091010, "LO", "private value")
    ds.add_new(0x00090010, "LO", "NOCTIS TEST")
    ds.PixelData = np.arange(-12, 12, dtype="<i2").reshape(4, 6).tobytes()
    ds["PixelData"].VR = "OW"
    buffer = io.BytesIO()
    syntax_uid = UID(syntax)
    ds.file_meta.TransferSyntaxUID = syntax_uid
    if not syntax_uid.is_little_endian:
        ds.PixelData = np.arange(-12, 12, dtype=">i2").tobytes()
        lut.LUTData = np.array([1, 256, 4096, 65535], dtype=">u2").tobytes()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("source", NATIVE_SYNTAXES)
@pytest.mark.parametrize("target", NATIVE_SYNTAXES)
def test_every_pair_of_native_syntaxes_converts_both_ways(source: str, target: str) -> None:
    """PS3.5 A.1 (implicit LE), A.2 (explicit LE), A.3 (explicit BE), A.5 (deflated): an
    instance converts from each to each with every value kept, sequences, the OW LUT,
    the signed pixel values and the private element included; and back again."""
    _quiet()
    original = _synthetic(source)
    before = dcmread(io.BytesIO(original))
    converted = load_converted(original, target)
    assert converted.file_meta.TransferSyntaxUID == target
    assert _normalised(converted) == _normalised(before)
    assert np.array_equal(converted.pixel_array, before.pixel_array)
    lut = converted.VOILUTSequence[0]
    order = "<u2" if UID(target).is_little_endian else ">u2"
    assert np.frombuffer(lut.LUTData, order).tolist() == [1, 256, 4096, 65535]
    again = dcmread(io.BytesIO(convert_bytes(convert_bytes(original, target), source)))
    assert _normalised(again) == _normalised(before)
    assert again["PixelData"].value == before["PixelData"].value
    assert again.VOILUTSequence[0].LUTData == before.VOILUTSequence[0].LUTData


def test_implicit_to_explicit_keeps_the_elements_issue_14() -> None:
    """Issue 14 defect 1: Implicit VR Little Endian -> Explicit VR Little Endian failed on
    (0008,0008) ("encoding without a string argument"): the raw elements of an implicit
    data set carry no VR and must be typed before they are written explicit."""
    _quiet()
    converted = dcmread(
        io.BytesIO(convert_bytes(_synthetic(ImplicitVRLittleEndian), ExplicitVRLittleEndian))
    )
    assert converted.ImageType == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert converted["ImageType"].VR == "CS"


@pytest.mark.parametrize("target", NATIVE_SYNTAXES)
def test_every_bundled_file_converts_or_says_why(target: str) -> None:
    """Every bundled pydicom test file (native, deflated, big endian, JPEG, JPEG 2000,
    JPEG-LS, RLE) converts to ``target`` with the same attribute values and the same
    decoded pixels, and native sources convert back unchanged; a compressed file whose
    pixel data pydicom cannot decode raises ``ConversionError`` with a reason, nothing else."""
    _quiet()
    checked = 0
    for path in bundled_dicom_files():
        source = dcmread(path)
        stored = str(source.file_meta.TransferSyntaxUID)
        pixels = _pixels(source)
        # Native pixel data is re-encoded, never decoded: only compressed data must decode.
        undecodable = "PixelData" in source and pixels is None and stored not in NATIVE_SYNTAXES
        assert can_convert(stored, target) or not UID(stored).is_transfer_syntax, path.name
        if undecodable and stored != target:
            with pytest.raises(ConversionError) as caught:
                convert_bytes(path, target)
            assert str(caught.value), path.name
            continue
        data = convert_bytes(path, target)
        converted = dcmread(io.BytesIO(data))
        assert converted.file_meta.TransferSyntaxUID == target, path.name
        assert converted.SOPInstanceUID == source.SOPInstanceUID, path.name
        if pixels is not None:
            assert np.array_equal(converted.pixel_array, pixels), path.name
        if stored in NATIVE_SYNTAXES and stored != target:
            assert _normalised(converted) == _normalised(source), path.name
            back = dcmread(io.BytesIO(convert_bytes(data, stored)))
            assert _normalised(back) == _normalised(source), path.name
            if pixels is not None:
                assert np.array_equal(back.pixel_array, pixels), path.name
        checked += 1
    assert checked > 100


def test_choose_syntax_prefers_the_stored_then_native_order() -> None:
    jpeg = "1.2.840.10008.1.2.4.50"
    assert choose_syntax(jpeg, {jpeg, ExplicitVRLittleEndian}) == jpeg
    assert choose_syntax(jpeg, {ImplicitVRLittleEndian}) == ImplicitVRLittleEndian
    assert choose_syntax(ImplicitVRLittleEndian, {ExplicitVRBigEndian}) == ExplicitVRBigEndian
    assert (
        choose_syntax(ExplicitVRBigEndian, {DeflatedExplicitVRLittleEndian})
        == DeflatedExplicitVRLittleEndian
    )
    assert choose_syntax(ExplicitVRLittleEndian, {jpeg}) is None


def test_unreadable_source_is_a_conversion_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    with pytest.raises(ConversionError):
        convert_bytes(bad, ExplicitVRLittleEndian)
