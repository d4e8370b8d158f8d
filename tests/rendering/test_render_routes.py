"""The rendered/thumbnail/MPR/MIP routes against a real archive (both backends)."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.data import get_testdata_file
from starlette.applications import Starlette
from starlette.testclient import TestClient

from dicomweb.errors import EXCEPTION_HANDLERS
from dicomweb.rendered import Renderer, rendered_routes
from noctis_pacs.rendering import VolumeCache
from storage.ingest import Origin


@pytest.fixture
def client(archive: Any) -> TestClient:
    archive.store_path(get_testdata_file("CT_small.dcm"), Origin("test"))
    renderer = Renderer(archive=archive, cache=VolumeCache(1 << 26))
    app = Starlette(
        routes=rendered_routes(renderer=renderer), exception_handlers=EXCEPTION_HANDLERS
    )
    return TestClient(app)


def test_instance_rendered_and_thumbnail(client: TestClient) -> None:
    from pydicom import dcmread

    ds = dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    base = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
    url = f"{base}/instances/{ds.SOPInstanceUID}"
    jpeg = client.get(f"{url}/rendered", headers={"accept": "image/jpeg"})
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    png = client.get(
        f"{url}/frames/1/rendered?window=40,400&viewport=32,32", headers={"accept": "image/png"}
    )
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert client.get(f"{url}/rendered", headers={"accept": "text/html"}).status_code == 406
    assert client.get(f"{url}/rendered?window=40,0").status_code == 400
    assert client.get(f"{base}/thumbnail").status_code == 200
    assert client.get(f"{base}/instances/1.2.3/rendered").status_code == 404
    # A single slice is not a volume: a reason, not a crash.
    refused = client.get(f"{base}/mpr?plane=coronal")
    assert refused.status_code == 422 and "2 slices" in refused.text


def series_client(archive: Any, max_bytes: int) -> tuple[TestClient, VolumeCache, str, str]:
    from tests.factory import ct_series, to_bytes

    datasets = list(ct_series(12, 32))
    for ds in datasets:
        archive.store_bytes(to_bytes(ds), Origin("test"))
    cache = VolumeCache(max_bytes)
    renderer = Renderer(archive=archive, cache=cache)
    app = Starlette(
        routes=rendered_routes(renderer=renderer), exception_handlers=EXCEPTION_HANDLERS
    )
    series = str(datasets[0].SeriesInstanceUID)
    base = f"/studies/{datasets[0].StudyInstanceUID}/series/{series}"
    return TestClient(app), cache, base, f"{series}:{len(datasets)}"


def test_volume_gets_its_column_copy_after_the_first_response(archive: Any) -> None:
    client, cache, base, key = series_client(archive, 1 << 26)
    octets = {"accept": "application/octet-stream"}
    first = client.get(f"{base}/mpr?plane=sagittal", headers=octets)
    assert first.status_code == 200
    volume = cache.get(key)
    assert volume is not None and volume.voxels.dtype.kind == "i"
    assert volume.by_column is not None  # the background task ran after the response
    assert cache.nbytes == volume.nbytes == 2 * volume.voxels.nbytes
    again = client.get(f"{base}/mpr?plane=sagittal", headers=octets)
    assert again.content == first.content and again.headers == first.headers


def test_volume_too_large_for_the_bound_with_its_copy_is_served_not_cached(archive: Any) -> None:
    voxels = 12 * 32 * 32 * 2
    client, cache, base, _ = series_client(archive, voxels + voxels // 2)
    response = client.get(f"{base}/mip?plane=coronal")
    assert response.status_code == 200 and response.content[:2] == b"\xff\xd8"
    assert len(cache) == 0 and cache.nbytes == 0
