"""WADO-RS / WADO-URI retrieval of instances that need converting (issue 14, defect 4).

A study holding implicit, explicit, big-endian, deflated and JPEG instances is
retrieved in the media type's default syntax and in others (PS3.18 8.7.3.5.2); a
study with an instance that cannot be converted is refused with 406 and its reason
before any byte is sent, never a ``200`` cut short.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from tests.conftest import RunningServer
from tests.dicomweb_support import (
    multipart_body,
    new_boundary,
    split_multipart,
    stow_headers,
)
from tests.factory import ct_series, mixed_syntax_study, to_bytes, uid

DICOM_PARTS = 'multipart/related; type="application/dicom"'


def _stow(server: RunningServer, parts: list[bytes]) -> None:
    boundary = new_boundary()
    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=multipart_body(parts, boundary),
        headers=stow_headers(boundary),
        timeout=60,
    )
    assert response.status_code == 200, response.text


def _retrieve(server: RunningServer, study: str, accept: str) -> httpx.Response:
    return httpx.get(
        f"{server.dicomweb_url}/studies/{study}", headers={"Accept": accept}, timeout=120
    )


def _undecodable_jpeg(study: str) -> bytes:
    """A JPEG Baseline instance whose single fragment is no JPEG stream: stored as
    received (ingest never decodes pixels), it cannot be converted to a native syntax."""
    ds = dcmread(pydicom.data.get_testdata_file("SC_rgb_dcmtk_+eb+cr.dcm"))
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid()
    ds.PixelData = encapsulate([b"\xff\xd8" + b"\x00" * 64 + b"\xff\xd9"])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "syntax",
    [
        None,
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    ],
)
def test_study_of_mixed_syntaxes_converts_every_part(
    server: RunningServer, syntax: str | None
) -> None:
    """PS3.18 8.7.3.5.2: without a transfer-syntax parameter every part is Explicit VR
    Little Endian; with one, every part is in it. The big-endian instance (the issue's
    mid-stream ValueError), the deflated and the JPEG ones are converted, the body is
    whole (Content-Length known before the first byte) and each part has its pixels."""
    study = uid()
    originals = mixed_syntax_study(study)
    _stow(server, originals)
    pixels = {}
    for data in originals:
        ds = dcmread(io.BytesIO(data))
        pixels[str(ds.SOPInstanceUID)] = ds.pixel_array
    accept = DICOM_PARTS + (f"; transfer-syntax={syntax}" if syntax else "")
    response = _retrieve(server, study, accept)
    assert response.status_code == 200, response.text
    assert int(response.headers["content-length"]) == len(response.content)
    parts = split_multipart(response.content, response.headers["content-type"])
    assert len(parts) == len(originals)
    wanted = syntax or ExplicitVRLittleEndian
    for headers, payload in parts:
        assert f"transfer-syntax={wanted}" in headers["content-type"]
        ds = dcmread(io.BytesIO(payload))
        assert ds.file_meta.TransferSyntaxUID == wanted
        assert np.array_equal(ds.pixel_array, pixels[str(ds.SOPInstanceUID)])


def _scratch_files(server: RunningServer) -> list[Path]:
    return sorted((server.data_dir / "blobs" / "tmp").glob("*/*.part"))


def test_converted_parts_leave_no_scratch_file(server: RunningServer) -> None:
    """Converted parts are spooled to scratch files before the first byte (the body's
    length is known) and sent from a worker thread in batches (``resources.gathered``):
    the files are gone once the body is sent, and when the client leaves after its first
    bytes of a body far larger than the socket buffers (32 CT slices, 16 MiB converted)."""
    study = uid()
    _stow(server, mixed_syntax_study(study))
    accept = DICOM_PARTS + f"; transfer-syntax={ExplicitVRBigEndian}"
    whole = _retrieve(server, study, accept)
    assert whole.status_code == 200
    assert int(whole.headers["content-length"]) == len(whole.content)
    assert _scratch_files(server) == []
    big = uid()
    _stow(server, [to_bytes(ds) for ds in ct_series(32, 512, study_uid=big)])
    with httpx.stream(
        "GET", f"{server.dicomweb_url}/studies/{big}", headers={"Accept": accept}, timeout=60
    ) as response:
        assert response.status_code == 200
        assert int(response.headers["content-length"]) > 16 << 20
        next(response.iter_raw(1024))
    deadline = time.monotonic() + 10
    while _scratch_files(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _scratch_files(server) == []


def test_a_part_that_cannot_be_converted_is_406_before_any_byte(server: RunningServer) -> None:
    """Issue 14 defect 4: one instance whose conversion fails made the study retrieve end
    mid-stream after 200. Every part is produced before the first byte now: the answer
    is 406 naming the instance and the reason; ``transfer-syntax=*`` still gets the whole
    study as stored (PS3.18 8.7.3.5.2), and the server goes on serving."""
    study = uid()
    good = mixed_syntax_study(study)
    bad = _undecodable_jpeg(study)
    bad_uid = str(dcmread(io.BytesIO(bad)).SOPInstanceUID)
    _stow(server, [*good, bad])
    response = _retrieve(server, study, DICOM_PARTS)
    assert response.status_code == 406, response.text
    assert bad_uid in response.text
    assert "transfer-syntax=*" in response.text
    whole = _retrieve(server, study, DICOM_PARTS + "; transfer-syntax=*")
    assert whole.status_code == 200
    parts = split_multipart(whole.content, whole.headers["content-type"])
    assert len(parts) == len(good) + 1
    single = httpx.get(
        f"{server.dicomweb_url}/studies/{study}/series/"
        f"{dcmread(io.BytesIO(bad)).SeriesInstanceUID}/instances/{bad_uid}",
        headers={"Accept": "application/dicom"},
        timeout=60,
    )
    assert single.status_code == 406
    assert bad_uid in single.text
    frame = httpx.get(
        f"{server.dicomweb_url}/studies/{study}/series/"
        f"{dcmread(io.BytesIO(bad)).SeriesInstanceUID}/instances/{bad_uid}/frames/1",
        headers={"Accept": "application/octet-stream"},
        timeout=60,
    )
    assert frame.status_code == 406, frame.text  # decoding asked for, and it fails
    assert httpx.get(f"{server.http_url}/healthz", timeout=10).status_code == 200


def test_wado_uri_converts_big_endian(server: RunningServer) -> None:
    """PS3.18 9.1.2.2.3: WADO-URI's default transfer syntax is Explicit VR Little Endian;
    a big-endian instance is converted (it failed in the old WADO converter)."""
    study = uid()
    originals = mixed_syntax_study(study)
    _stow(server, originals)
    big = dcmread(io.BytesIO(originals[2]))
    assert big.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    response = httpx.get(
        f"{server.http_url}/wado",
        params={
            "requestType": "WADO",
            "studyUID": study,
            "seriesUID": str(big.SeriesInstanceUID),
            "objectUID": str(big.SOPInstanceUID),
            "contentType": "application/dicom",
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    ds = dcmread(io.BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, big.pixel_array)
