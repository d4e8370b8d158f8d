"""WADO-RS retrieve as ``application/zip`` (PS3.18 8.7.3.1, Supplement 211) against a real
server in ``auth.mode = "token"``: the stored files byte for byte, by header or by the
``accept`` query parameter (PS3.18 8.3.3.1), study and series; retrieve permission,
facility scope and the audit trail as for any retrieve."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server
from tests.factory import make_dataset, to_bytes, uid
from tests.ui_support import stow_all


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base: Path = tmp_path_factory.mktemp("zip")
    srv = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config='[auth]\nmode = "token"\n' + NO_LIMITS,
    )
    admin = create_token(srv, "zip-admin", "admin")
    study, first, second = uid(), uid(), uid()
    files: dict[str, bytes] = {}
    for series, count in ((first, 3), (second, 2)):
        for n in range(count):
            ds = make_dataset(study_uid=study, series_uid=series, instance_number=n + 1)
            ds.InstitutionName = "North"
            files[f"{study}/{series}/{ds.SOPInstanceUID}.dcm"] = to_bytes(ds)
    stow_all(srv.http_url, list(files.values()), Authorization=f"Bearer {admin}")
    srv.extra.update(
        admin=admin,
        viewer=create_token(srv, "zip-viewer", "viewer"),
        uploader=create_token(srv, "zip-uploader", "uploader"),
        south=create_token(srv, "zip-south", "viewer", facilities=("South",)),
        study=study,
        series=first,
        files=files,
    )
    yield srv
    srv.stop()


def get(srv: RunningServer, path: str, who: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {srv.extra[who]}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.get(f"{srv.dicomweb_url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


def members(response: httpx.Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def test_study_and_series_as_zip_by_header_and_by_query(server: RunningServer) -> None:
    files: dict[str, bytes] = server.extra["files"]  # type: ignore[assignment]
    study, series = server.extra["study"], server.extra["series"]
    by_header = get(server, f"/studies/{study}", "viewer", headers={"Accept": "application/zip"})
    assert by_header.status_code == 200, by_header.text
    assert by_header.headers["content-type"] == "application/zip"
    assert f'filename="{study}.zip"' in by_header.headers["content-disposition"]
    assert members(by_header) == files  # the stored files, byte for byte

    by_query = get(server, f"/studies/{study}/series/{series}?accept=application/zip", "viewer")
    assert by_query.status_code == 200
    assert members(by_query) == {k: v for k, v in files.items() if f"/{series}/" in k}

    as_stored = get(
        server,
        f"/studies/{study}",
        "viewer",
        params={"accept": "application/zip; transfer-syntax=*"},
    )
    assert as_stored.status_code == 200 and len(members(as_stored)) == len(files)


def test_other_accepts_keep_the_multipart_retrieve(server: RunningServer) -> None:
    study = server.extra["study"]
    for accept in (
        "*/*",
        'multipart/related; type="application/dicom"',
        "application/zip;q=0, */*",
    ):
        answer = get(server, f"/studies/{study}", "viewer", headers={"Accept": accept})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("multipart/related"), accept


def test_refusals(server: RunningServer) -> None:
    study = server.extra["study"]
    converted = get(
        server,
        f"/studies/{study}",
        "viewer",
        headers={"Accept": "application/zip; transfer-syntax=1.2.840.10008.1.2"},
    )
    assert converted.status_code == 406 and "as stored" in converted.json()["detail"]
    assert get(server, f"/studies/{uid()}?accept=application/zip", "viewer").status_code == 404
    # The retrieve permission, and the principal's facilities (another's study is absent).
    assert get(server, f"/studies/{study}?accept=application/zip", "uploader").status_code == 403
    assert get(server, f"/studies/{study}?accept=application/zip", "south").status_code == 404
    anonymous = httpx.get(f"{server.dicomweb_url}/studies/{study}?accept=application/zip")
    assert anonymous.status_code == 401


def test_a_zip_download_is_on_the_audit_trail(server: RunningServer) -> None:
    study = server.extra["study"]
    assert get(server, f"/studies/{study}?accept=application/zip", "viewer").status_code == 200
    records = httpx.get(
        f"{server.http_url}/audit",
        params={"study": study, "principal": "zip-viewer"},
        headers={"Authorization": f"Bearer {server.extra['admin']}"},
        timeout=10,
    ).json()
    assert any(r["action"].startswith("wado") and r["outcome"] == "success" for r in records), (
        records
    )
