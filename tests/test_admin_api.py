"""The admin REST API (statistics, deletes, remote AEs at run time, send jobs) and
DICOMweb DELETE, over the wire on both index backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelMove as StudyRootMove,
)
from pynetdicom.sop_class import Verification

from dicomweb.auth import required_permission
from noctis_pacs.core.auth import Permission
from tests.conftest import BACKENDS, RunningServer, db_url_for, free_port, start_server
from tests.factory import ct_series, to_bytes, uid
from tests.test_dimse_support import associate, server_archive, storescp

CONFIG = "[jobs]\nretry_initial_seconds = 0.5\nretry_max_seconds = 1.0\npoll_interval_seconds = 0.2\ntimeout_seconds = 5.0\n"


@pytest.fixture(scope="module", params=BACKENDS)
def admin_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp(f"admin-{request.param}")
    server = start_server(
        base / "data", db_url_for(str(request.param), base / "data"), config=CONFIG
    )
    yield server
    server.stop()


def _store_series(server: RunningServer, slices: int = 4) -> tuple[str, str, list[str]]:
    from storage.ingest import Origin

    study, series = uid(), uid()
    datasets = list(ct_series(slices, 32, study_uid=study, series_uid=series))
    with server_archive(server) as archive:
        for ds in datasets:
            assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    return study, series, [str(ds.SOPInstanceUID) for ds in datasets]


def _audit(server: RunningServer, action: str) -> list[Any]:
    """The server's audit records of ``action`` (the trail is in the shared index)."""
    with server_archive(server) as archive:
        return list(archive.audit_records(action=action))


def _qido_count(server: RunningServer, path: str) -> int:
    answer = httpx.get(f"{server.dicomweb_url}{path}", timeout=10)
    if answer.status_code == 204:
        return 0
    assert answer.status_code == 200, answer.text
    return len(answer.json())


# -- OpenAPI and permissions --------------------------------------------------------------


def test_every_api_route_is_described_in_the_openapi_document(admin_server: RunningServer) -> None:
    from dicomweb.admin_api import AdminApi, admin_routes

    document = httpx.get(f"{admin_server.http_url}/api/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    described = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    routed = set()
    from dicomweb.tokens_api import token_routes

    for route in [
        *admin_routes(AdminApi(archive=None)),  # type: ignore[arg-type]
        *token_routes(archive=None),  # type: ignore[arg-type]
    ]:
        for method in route.methods or ():  # type: ignore[attr-defined]
            if method != "HEAD":
                routed.add((route.path, method))  # type: ignore[attr-defined]
    assert routed and routed == described


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("GET", "/api/statistics", Permission.ADMIN),
        ("POST", "/api/remotes", Permission.ADMIN),
        ("DELETE", "/api/studies/1.2.3", Permission.ADMIN),
        ("GET", "/api/jobs", Permission.ADMIN),
        ("GET", "/api/openapi.json", Permission.ADMIN),
        ("DELETE", "/dicom-web/studies/1.2.3", Permission.DELETE),
        ("DELETE", "/dicom-web/studies/1.2/series/3.4/instances/5.6", Permission.DELETE),
    ],
)
def test_admin_routes_need_their_permission(method: str, path: str, permission: Permission) -> None:
    assert required_permission(method, path) == permission


# -- statistics and delete ------------------------------------------------------------------


def test_statistics_counts_bytes_free_space_and_rates(admin_server: RunningServer) -> None:
    _store_series(admin_server, 3)
    stats = httpx.get(f"{admin_server.http_url}/api/statistics", timeout=10).json()
    for key in ("patients", "studies", "series", "instances", "bytes", "free_bytes"):
        assert isinstance(stats[key], int)
    assert stats["instances"] >= 3 and stats["studies"] >= 1
    assert stats["free_bytes"] > 0 and stats["bytes"] > 0
    assert stats["received_last_minute"] >= 3


@pytest.mark.parametrize("root", ["/api", "/dicom-web"])
def test_delete_instance_series_study(admin_server: RunningServer, root: str) -> None:
    """DELETE on the instance, series and study resources: 204, gone from QIDO, 404 after;
    every act audited."""
    study, series, sops = _store_series(admin_server, 4)
    base = f"{admin_server.http_url}{root}/studies/{study}"
    answer = httpx.delete(f"{base}/series/{series}/instances/{sops[0]}", timeout=10)
    assert answer.status_code == 204, answer.text
    assert _qido_count(admin_server, f"/studies/{study}/instances") == 3
    again = httpx.delete(f"{base}/series/{series}/instances/{sops[0]}", timeout=10)
    assert again.status_code == 404 and "not in the archive" in again.json()["detail"]
    # A series under another study is not that study's: nothing is deleted.
    wrong = httpx.delete(
        f"{admin_server.http_url}{root}/studies/{uid()}/series/{series}", timeout=10
    )
    assert wrong.status_code == 404
    assert _qido_count(admin_server, f"/studies/{study}/instances") == 3
    assert httpx.delete(f"{base}/series/{series}", timeout=10).status_code == 204
    assert _qido_count(admin_server, f"/studies/{study}/instances") == 0
    study2, _, _ = _store_series(admin_server, 2)
    assert (
        httpx.delete(f"{admin_server.http_url}{root}/studies/{study2}", timeout=10).status_code
        == 204
    )
    assert _qido_count(admin_server, f"/studies?StudyInstanceUID={study2}") == 0
    records = _audit(admin_server, "delete")
    mine = [r for r in records if study in r.study_uids]
    assert {r.outcome for r in mine} == {"success", "failure"}
    assert any('"not found"' in r.detail for r in mine)
    assert all(r.principal == "anonymous" for r in mine)


def test_delete_with_a_malformed_uid_is_400_and_changes_nothing(
    admin_server: RunningServer,
) -> None:
    study, _, _ = _store_series(admin_server, 1)
    answer = httpx.delete(f"{admin_server.http_url}/api/studies/{study}x", timeout=10)
    assert answer.status_code == 400 and "not a valid UID" in answer.json()["detail"]
    assert _qido_count(admin_server, f"/studies?StudyInstanceUID={study}") == 1


# -- remotes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"name": "x", "host": "127.0.0.1", "port": 104}, "ae_title is required"),
        ({"name": "x", "ae_title": "A" * 17, "host": "h", "port": 104}, "longer than 16"),
        ({"name": "x", "ae_title": "A\\B", "host": "h", "port": 104}, "backslash"),
        ({"name": "x", "ae_title": "A", "host": "h", "port": 70000}, "port must be"),
        ({"name": "x", "ae_title": "A", "host": "h", "port": 104, "colour": 1}, "unknown field"),
        ({"name": "bad name", "ae_title": "A", "host": "h", "port": 104}, "name must be"),
        (
            {"name": "x", "ae_title": "A", "host": "h", "port": 1, "permissions": ["all"]},
            "permissions",
        ),
        ({"name": "x", "kind": "dicomweb", "url": "ftp://x"}, "url must be"),
        ([1, 2], "JSON object"),
    ],
)
def test_a_malformed_remote_is_refused_with_its_reason(
    admin_server: RunningServer, body: Any, reason: str
) -> None:
    before = httpx.get(f"{admin_server.http_url}/api/remotes", timeout=10).json()
    answer = httpx.post(f"{admin_server.http_url}/api/remotes", json=body, timeout=10)
    assert answer.status_code == 400 and reason in answer.json()["detail"], answer.text
    assert httpx.get(f"{admin_server.http_url}/api/remotes", timeout=10).json() == before


def test_invalid_json_is_400(admin_server: RunningServer) -> None:
    answer = httpx.post(
        f"{admin_server.http_url}/api/remotes",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["detail"]


@dataclass
class Received:
    datasets: list[Dataset] = field(default_factory=list)


def _storage_scp(ae_title: str, port: int, received: Received, *, verification: bool = True) -> Any:
    ae = AE(ae_title=ae_title)
    for cx in StoragePresentationContexts:
        ae.add_supported_context(
            cx.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
    if verification:
        ae.add_supported_context(Verification)

    def handle(event: Any) -> int:
        received.datasets.append(event.dataset)
        return 0x0000

    return ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
    )


def test_remote_added_by_rest_answers_a_c_move_at_once(admin_server: RunningServer) -> None:
    """PS3.4 C.4.2.1.4.1: the Move Destination is resolved at the time of the C-MOVE, so
    a remote added a moment before through the API is used without a restart."""
    study, series, sops = _store_series(admin_server, 3)
    port, received = free_port(), Received()
    name, title = f"mv{uid()[-8:]}", f"MV{uid()[-8:]}"
    scp = _storage_scp(title, port, received)
    try:
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study
        identifier.SeriesInstanceUID = series

        def move() -> int:
            assoc = associate(admin_server.dimse_port, [build_context(StudyRootMove)])
            assert assoc.is_established
            try:
                responses = list(assoc.send_c_move(identifier, title, StudyRootMove))
            finally:
                assoc.release()
            return int(responses[-1][0].Status)

        assert move() == 0xA801  # Move Destination unknown (PS3.4 C.4.2.1.5)
        added = httpx.post(
            f"{admin_server.http_url}/api/remotes",
            json={"name": name, "ae_title": title, "host": "127.0.0.1", "port": port},
            timeout=10,
        )
        assert added.status_code == 201, added.text
        assert added.json()["source"] == "index"
        assert move() == 0x0000
        assert sorted(str(ds.SOPInstanceUID) for ds in received.datasets) == sorted(sops)
        echo = httpx.post(f"{admin_server.http_url}/api/remotes/{name}/echo", timeout=10).json()
        assert echo["ok"] is True
        duplicate = httpx.post(
            f"{admin_server.http_url}/api/remotes",
            json={"name": name, "ae_title": title, "host": "127.0.0.1", "port": port},
            timeout=10,
        )
        assert duplicate.status_code == 409
        assert (
            httpx.delete(f"{admin_server.http_url}/api/remotes/{name}", timeout=10).status_code
            == 204
        )
        assert move() == 0xA801
        assert (
            httpx.delete(f"{admin_server.http_url}/api/remotes/{name}", timeout=10).status_code
            == 404
        )
    finally:
        scp.shutdown()
    added = [r for r in _audit(admin_server, "admin.remote.add") if name in r.detail]
    assert [r.outcome for r in added] == ["success", "failure"]


def test_echo_says_why_it_failed(admin_server: RunningServer) -> None:
    """refused (nothing listens), rejected (called AE title), no common context."""
    closed = free_port()
    port, received = free_port(), Received()
    scp = _storage_scp("NOVERIFY", port, received, verification=False)
    cases = {
        "refused": ({"ae_title": "X", "port": closed}, "connection refused"),
        "nocx": ({"ae_title": "NOVERIFY", "port": port}, "no common presentation context"),
    }
    try:
        for label, (fields, reason) in cases.items():
            name = f"e{label}{uid()[-6:]}"
            body = {"name": name, "host": "127.0.0.1", **fields}
            assert (
                httpx.post(
                    f"{admin_server.http_url}/api/remotes", json=body, timeout=10
                ).status_code
                == 201
            )
            echo = httpx.post(f"{admin_server.http_url}/api/remotes/{name}/echo", timeout=20).json()
            assert echo["ok"] is False and reason in echo["reason"], echo
    finally:
        scp.shutdown()


def test_allow_list_admits_a_remote_added_at_run_time(tmp_path: Path, backend: str) -> None:
    """dimse.access_control = allow_list: an unknown calling AE is rejected (PS3.8 9.3.4);
    once added with the CLI it associates at once, without a restart."""
    import subprocess
    import sys

    server = start_server(
        tmp_path / "data",
        db_url_for(backend, tmp_path / "data"),
        dimse_extra='access_control = "allow_list"',
    )
    try:
        refused = associate(server.dimse_port, ae_title="LATECOMER")
        assert refused.is_rejected
        cli = Path(sys.executable).parent / "noctis-pacs"
        added = subprocess.run(
            [str(cli), "remote", "add", "late", "--ae-title", "LATECOMER", "--host", "127.0.0.1",
             "--port", "11112", "--config", str(server.config_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        listed = subprocess.run(
            [str(cli), "remote", "list", "--json", "--config", str(server.config_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert any(r["ae_title"] == "LATECOMER" for r in __import__("json").loads(listed.stdout))
        admitted = associate(server.dimse_port, ae_title="LATECOMER")
        assert admitted.is_established
        assert int(admitted.send_c_echo().Status) == 0
        admitted.release()
        removed = subprocess.run(
            [str(cli), "remote", "remove", "late", "--config", str(server.config_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert removed.returncode == 0, removed.stderr
        assert associate(server.dimse_port, ae_title="LATECOMER").is_rejected
        echo = subprocess.run(
            [str(cli), "remote", "echo", "nosuch", "--config", str(server.config_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert echo.returncode == 1 and "no DICOM remote" in echo.stderr
    finally:
        server.stop()


# -- send jobs ------------------------------------------------------------------------------


def _wait_job(
    server: RunningServer, job_id: int, states: set[str], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.http_url}/api/jobs/{job_id}", timeout=10).json()
        if job["state"] in states:
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {states}: {job}")


@pytest.mark.dcmtk
def test_send_to_a_storescp_that_is_down_then_up_completes_by_retry(
    admin_server: RunningServer, tmp_path: Path
) -> None:
    """A send job fails while the destination is down, is retried with backoff, and
    completes once storescp is up: every instance arrives, each outcome recorded."""
    study, _, sops = _store_series(admin_server, 5)
    port = free_port()
    name = f"dest{uid()[-8:]}"
    body = {"name": name, "ae_title": "DEST", "host": "127.0.0.1", "port": port}
    assert (
        httpx.post(f"{admin_server.http_url}/api/remotes", json=body, timeout=10).status_code == 201
    )
    answer = httpx.post(
        f"{admin_server.http_url}/api/jobs/send",
        json={"destination": name, "study": study, "max_attempts": 50},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = httpx.get(f"{admin_server.http_url}/api/jobs/{job_id}", timeout=10).json()
        if job["attempts"] >= 1 and job["state"] == "queued":
            break
        time.sleep(0.1)
    assert "connection refused" in job["error"], job
    with storescp(port, tmp_path / "dest"):
        job = _wait_job(admin_server, job_id, {"succeeded", "failed"})
    assert job["state"] == "succeeded", job
    assert job["done"] == 5 and job["failed"] == 0 and job["attempts"] >= 2
    assert {item["state"] for item in job["items"]} == {"sent"}
    received = list((tmp_path / "dest").iterdir())
    assert len(received) == len(sops)
    listed = httpx.get(f"{admin_server.http_url}/api/jobs?state=succeeded", timeout=10).json()
    assert job_id in [j["id"] for j in listed]


def test_cancel_and_retry_a_job(admin_server: RunningServer) -> None:
    study, _, _ = _store_series(admin_server, 2)
    name = f"down{uid()[-8:]}"
    body = {"name": name, "ae_title": "DOWN", "host": "127.0.0.1", "port": free_port()}
    assert (
        httpx.post(f"{admin_server.http_url}/api/remotes", json=body, timeout=10).status_code == 201
    )
    job_id = httpx.post(
        f"{admin_server.http_url}/api/jobs/send",
        json={"destination": name, "study": study, "max_attempts": 100},
        timeout=10,
    ).json()["id"]
    cancelled = httpx.post(f"{admin_server.http_url}/api/jobs/{job_id}/cancel", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = httpx.post(f"{admin_server.http_url}/api/jobs/{job_id}/cancel", timeout=10)
    assert again.status_code == 409
    retried = httpx.post(f"{admin_server.http_url}/api/jobs/{job_id}/retry", timeout=10)
    assert retried.status_code == 200 and retried.json()["state"] in ("queued", "running")
    assert (
        httpx.post(f"{admin_server.http_url}/api/jobs/{job_id}/cancel", timeout=10).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"destination": "nosuch", "study": "1.2.3"}, 404, "no remote"),
        ({"study": "1.2.3"}, 400, "destination"),
        ({"destination": "x", "study": 5}, 400, "UID string"),
        ({"destination": "x", "instances": []}, 400, "non-empty list"),
        ({"destination": "x", "study": "1.2.3", "max_attempts": 0}, 400, "max_attempts"),
        ({"destination": "x", "bogus": 1}, 400, "unknown field"),
    ],
)
def test_a_malformed_send_is_refused_and_queues_nothing(
    admin_server: RunningServer, body: dict[str, Any], status: int, reason: str
) -> None:
    remote = {"name": "x", "ae_title": "X", "host": "127.0.0.1", "port": 1}
    httpx.post(f"{admin_server.http_url}/api/remotes", json=remote, timeout=10)
    before = len(httpx.get(f"{admin_server.http_url}/api/jobs?limit=1000", timeout=10).json())
    answer = httpx.post(f"{admin_server.http_url}/api/jobs/send", json=body, timeout=10)
    assert answer.status_code == status and reason in answer.json()["detail"], answer.text
    assert (
        len(httpx.get(f"{admin_server.http_url}/api/jobs?limit=1000", timeout=10).json()) == before
    )


def test_send_to_a_dicomweb_peer_by_stow_rs(admin_server: RunningServer, tmp_path: Path) -> None:
    """STOW-RS (PS3.18 10.5) to another Noctis: every instance lands there."""
    peer = start_server(tmp_path / "peer", f"sqlite:///{tmp_path / 'peer' / 'index.sqlite3'}")
    try:
        study, _, sops = _store_series(admin_server, 3)
        name = f"web{uid()[-8:]}"
        body = {
            "name": name,
            "kind": "dicomweb",
            "url": peer.dicomweb_url,
            "username": "u",
            "secret": "s3cret",
        }
        added = httpx.post(f"{admin_server.http_url}/api/remotes", json=body, timeout=10)
        assert added.status_code == 201 and "secret" not in added.json()
        assert added.json()["has_secret"] is True
        job_id = httpx.post(
            f"{admin_server.http_url}/api/jobs/send",
            json={"destination": name, "study": study},
            timeout=10,
        ).json()["id"]
        job = _wait_job(admin_server, job_id, {"succeeded", "failed"})
        assert job["state"] == "succeeded", job
        assert _qido_count(peer, f"/studies/{study}/instances") == len(sops)
        assert "s3cret" not in admin_server.log()
    finally:
        peer.stop()
