"""The C-STORE SOP identity check reads the UIDs from the first bytes of the received file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ImplicitVRLittleEndian

from dimse.store import _identity_status, _uids_from_head
from tests.factory import bundled_dicom_files, make_dataset, to_bytes


@pytest.mark.parametrize("path", bundled_dicom_files(), ids=lambda p: Path(p).name)
def test_head_walk_agrees_with_pydicom(path: Path) -> None:
    data = Path(path).read_bytes()
    ds = dcmread(path, stop_before_pixels=True)
    found = _uids_from_head(data[:8192], str(ds.file_meta.TransferSyntaxUID))
    if found is None:
        return  # big endian, deflated, undefined lengths: pydicom reads them instead
    assert found == (
        str(ds.get("SOPClassUID", "") or "").strip("\x00 "),
        str(ds.get("SOPInstanceUID", "") or "").strip("\x00 "),
    )


def test_head_walk_implicit_and_mismatch() -> None:
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = to_bytes(ds)
    found = _uids_from_head(data[:8192], ImplicitVRLittleEndian)
    assert found == (str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    assert _identity_status(found, str(ds.SOPClassUID), str(ds.SOPInstanceUID)) is None
    wrong = _identity_status(found, str(ds.SOPClassUID), "1.2.3")
    assert wrong is not None and wrong.Status == 0xC002
    other = _identity_status(found, "1.2.3", str(ds.SOPInstanceUID))
    assert other is not None and other.Status == 0xA900
