"""Study export as a zip: PS3.10 media with a DICOMDIR, or the stored files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
from pydicom import dcmread
from pydicom.fileset import FileSet

from tests.conftest import RunningServer
from tests.factory import ct_series, to_bytes, uid
from tests.test_dimse_support import server_archive


def _store(server: RunningServer, count: int) -> tuple[str, str, dict[str, bytes]]:
    from storage.ingest import Origin

    study, series = uid(), uid()
    stored: dict[str, bytes] = {}
    with server_archive(server) as archive:
        for ds in ct_series(count, 16, study_uid=study, series_uid=series):
            data = to_bytes(ds)
            assert archive.store_bytes(data, Origin("test")).ok
            stored[str(ds.SOPInstanceUID)] = data
    return study, series, stored


def test_export_as_ps3_10_media_with_a_dicomdir(server: RunningServer, tmp_path: Path) -> None:
    """PS3.10 8 / PS3.3 F: a DICOMDIR referencing every instance of the study, each file
    byte-identical to the stored one."""
    study, _, stored = _store(server, 3)
    answer = httpx.get(f"{server.http_url}/api/studies/{study}/export", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zf:
        zf.extractall(tmp_path)
        names = zf.namelist()
    assert "DICOMDIR" in names
    assert all(len(part) <= 8 for name in names for part in name.split("/"))
    fileset = FileSet(dcmread(tmp_path / "DICOMDIR"))
    instances = list(fileset)
    assert len(instances) == 3
    for instance in instances:
        path = Path(instance.path)
        ds = dcmread(path)
        assert str(ds.StudyInstanceUID) == study
        assert path.read_bytes() == stored[str(ds.SOPInstanceUID)]


def test_export_the_stored_files_of_a_series(server: RunningServer) -> None:
    study, series, stored = _store(server, 2)
    url = f"{server.http_url}/api/studies/{study}/series/{series}/export?dicomdir=false"
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zf:
        assert sorted(zf.namelist()) == sorted(f"{uid}.dcm" for uid in stored)
        for sop_uid, data in stored.items():
            assert zf.read(f"{sop_uid}.dcm") == data


def test_export_bad_requests_change_nothing(server: RunningServer) -> None:
    answer = httpx.get(f"{server.http_url}/api/studies/{uid()}/export", timeout=10)
    assert answer.status_code == 404
    study, _, _ = _store(server, 1)
    bad = httpx.get(f"{server.http_url}/api/studies/{study}/export?dicomdir=maybe", timeout=10)
    assert bad.status_code == 400 and "dicomdir" in bad.json()["detail"]
