"""Rendered resources, thumbnails, WADO-URI images and MPR/MIP against the real server."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image

from tests.conftest import RunningServer
from tests.dicomweb_support import BUNDLED, fresh_bundled, split_multipart
from tests.factory import ct_series, make_dataset, to_bytes, uid


def stow(server: RunningServer, data: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.dicomweb_url}/studies",
        content=data,
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
        timeout=60,
    )


def _image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_dicomweb_client_rendered_instance_and_series(server: RunningServer) -> None:
    """PS3.18 10.4.1.1.3: rendered instance and series, through dicomweb-client."""
    study, series = uid(), uid()
    sops = []
    for n in range(3):
        ds = make_dataset(
            study_uid=study, series_uid=series, rows=40, columns=50, instance_number=n
        )
        sops.append(ds.SOPInstanceUID)
        assert stow(server, to_bytes(ds)).status_code == 200
    client = DICOMwebClient(url=server.dicomweb_url)
    jpeg = client.retrieve_instance_rendered(study, series, sops[0], media_types=("image/jpeg",))
    assert _image(jpeg).size == (50, 40) and _image(jpeg).format == "JPEG"
    png = client.retrieve_series_rendered(study, series, media_types=("image/png",))
    assert _image(png).format == "PNG"


def test_series_rendered_multipart_has_every_instance(server: RunningServer) -> None:
    """PS3.18 10.4.1.1.3: a rendered series as multipart/related; one part per instance."""
    study, series = uid(), uid()
    for n in range(3):
        stow(server, to_bytes(make_dataset(study_uid=study, series_uid=series, instance_number=n)))
    response = httpx.get(
        f"{server.dicomweb_url}/studies/{study}/series/{series}/rendered",
        headers={"Accept": 'multipart/related; type="image/png"'},
        timeout=30,
    )
    assert response.status_code == 200
    parts = split_multipart(response.content, response.headers["content-type"])
    assert len(parts) == 3
    assert all(_image(body).format == "PNG" for _, body in parts)


@pytest.mark.parametrize(
    ("query", "accept", "status"),
    [
        ("", "text/html", 406),
        ("?window=40,0", "image/jpeg", 400),
        ("?viewport=abc", "image/jpeg", 400),
        ("?quality=500", "image/jpeg", 400),
        ("?viewport=20,20", "image/png", 200),
    ],
)
def test_rendered_errors_are_4xx_with_reasons(
    server: RunningServer, query: str, accept: str, status: int
) -> None:
    """PS3.18 8.3.5.1: rendering parameters; a bad one is a 400 that says which."""
    ds = make_dataset()
    stow(server, to_bytes(ds))
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/rendered{query}"
    )
    response = httpx.get(url, headers={"Accept": accept}, timeout=30)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.json()["detail"]
    else:
        assert max(_image(response.content).size) == 20


def test_every_bundled_image_renders_or_gets_a_4xx(server: RunningServer) -> None:
    """Every bundled file with pixel data: a valid image of the right size, or a 4xx; never 500."""
    from pydicom import dcmread

    rendered = refused = 0
    for path in sorted(BUNDLED.glob("*.dcm")):
        try:
            ds = dcmread(path, stop_before_pixels=True)
            if "Rows" not in ds or "SOPInstanceUID" not in ds or "PixelData" not in dcmread(path):
                continue
            data = fresh_bundled(path.name)
        except Exception:
            continue
        stored = stow(server, data)
        if stored.status_code != 200:
            continue
        meta = dcmread(io.BytesIO(data), stop_before_pixels=True)
        url = (
            f"{server.dicomweb_url}/studies/{meta.StudyInstanceUID}/series/"
            f"{meta.SeriesInstanceUID}/instances/{meta.SOPInstanceUID}/rendered"
        )
        response = httpx.get(url, headers={"Accept": "image/png"}, timeout=60)
        assert response.status_code < 500, (path.name, response.text)
        if response.status_code == 200:
            assert _image(response.content).size == (int(meta.Columns), int(meta.Rows)), path.name
            rendered += 1
        else:
            assert response.json()["detail"], path.name
            refused += 1
    assert rendered > 50
    assert server.alive()


def test_thumbnail_is_small_and_cached(server: RunningServer) -> None:
    ds = make_dataset(rows=300, columns=200)
    stow(server, to_bytes(ds))
    url = f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/thumbnail"
    first = httpx.get(url, headers={"Accept": "image/jpeg"}, timeout=30)
    second = httpx.get(url, headers={"Accept": "image/jpeg"}, timeout=30)
    assert first.status_code == 200 and first.content == second.content
    assert max(_image(first.content).size) <= 128


def test_wado_uri_jpeg_and_png(server: RunningServer) -> None:
    """PS3.18 9.1.2.2: contentType image/jpeg (the default) and image/png; rows/columns."""
    ds = make_dataset(rows=64, columns=64)
    stow(server, to_bytes(ds))
    base = (
        f"{server.http_url}/wado?requestType=WADO&studyUID={ds.StudyInstanceUID}"
        f"&seriesUID={ds.SeriesInstanceUID}&objectUID={ds.SOPInstanceUID}"
    )
    default = httpx.get(base, timeout=30)
    assert default.status_code == 200 and default.headers["content-type"] == "image/jpeg"
    png = httpx.get(
        base + "&contentType=image/png&windowCenter=2048&windowWidth=4096&rows=32", timeout=30
    )
    assert png.status_code == 200 and _image(png.content).size == (32, 32)
    half = httpx.get(base + "&contentType=image/png&windowCenter=2048", timeout=30)
    assert half.status_code == 400 and "windowWidth" in half.json()["detail"]


def test_mpr_and_mip_geometry_headers(server: RunningServer) -> None:
    """Beyond the standard: MPR/MIP with Noctis-* geometry headers and float32 output."""
    study, series = uid(), uid()
    for ds in ct_series(10, 32, study_uid=study, series_uid=series):
        assert stow(server, to_bytes(ds)).status_code == 200
    base = f"{server.dicomweb_url}/studies/{study}/series/{series}"
    plane = httpx.get(
        f"{base}/mpr?plane=sagittal", headers={"Accept": "application/octet-stream"}, timeout=60
    )
    assert plane.status_code == 200
    rows, columns = int(plane.headers["noctis-rows"]), int(plane.headers["noctis-columns"])
    values = np.frombuffer(plane.content, dtype="<f4")
    assert values.size == rows * columns
    assert plane.headers["noctis-image-orientation-patient"] == "0\\1\\0\\0\\0\\-1"
    assert len(plane.headers["noctis-pixel-spacing"].split("\\")) == 2
    mip = httpx.get(f"{base}/mip?plane=axial&thickness=3&mode=max", timeout=60)
    assert mip.status_code == 200 and mip.headers["content-type"] == "image/jpeg"
    bad = httpx.get(f"{base}/mip?mode=median", timeout=30)
    assert bad.status_code == 400 and "mode" in bad.json()["detail"]
    single_study, single_series = uid(), uid()
    stow(server, to_bytes(next(ct_series(1, 16, study_uid=single_study, series_uid=single_series))))
    refused = httpx.get(
        f"{server.dicomweb_url}/studies/{single_study}/series/{single_series}/mpr", timeout=30
    )
    assert refused.status_code == 422 and refused.json()["detail"]
