"""The fast DICOM JSON writer gives exactly pydicom's DICOM JSON (PS3.18 F.2)."""

from __future__ import annotations

import warnings

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from storage.dicomjson import dataset_json
from tests.factory import bundled_files, make_dataset


def _bulk(tag: int) -> str:
    return f"bulk/{tag:08X}"


def _pydicom(ds: Dataset) -> dict[str, object]:
    return ds.to_json_dict(
        bulk_data_threshold=1024, bulk_data_element_handler=lambda e: _bulk(int(e.tag))
    )


def _readable() -> list[object]:
    out = []
    for path in bundled_files():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(path, stop_before_pixels=True)
                _pydicom(dcmread(path, stop_before_pixels=True))
        except Exception:
            continue
        if len(ds) > 0:
            out.append(path)
    return out


@pytest.mark.parametrize("path", _readable(), ids=lambda p: p.name)
def test_same_json_as_pydicom_for_every_bundled_file(path: object) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = dataset_json(dcmread(path, stop_before_pixels=True), _bulk)
        theirs = _pydicom(dcmread(path, stop_before_pixels=True))
    assert ours == theirs


def test_synthetic_values_and_sequences() -> None:
    ds = make_dataset(
        patient_name="Müller^Jürgen=ミュラー^ユルゲン", SpecificCharacterSet="ISO_IR 192"
    )
    item = Dataset()
    item.CodeValue = "123"
    item.CodeMeaning = "Ärger \\ no split"
    ds.ProcedureCodeSequence = Sequence([item])
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PixelSpacing = [0.5, "1.25"]
    ds.WindowCenter = ["40", "-600"]
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    ours = dataset_json(dcmread(buffer, stop_before_pixels=True), _bulk)
    buffer.seek(0)
    assert ours == _pydicom(dcmread(buffer, stop_before_pixels=True))
    assert ours["00100010"]["Value"][0]["Ideographic"] == "ミュラー^ユルゲン"
    assert ours["00280030"]["Value"] == [0.5, 1.25]
