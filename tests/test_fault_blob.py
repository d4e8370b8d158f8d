"""Fault trial: one missing and one truncated blob (issue 14, fault trials).

QIDO-RS still lists the study; WADO of a damaged instance gets a clear error before
the first byte (never a 200 cut short); the rest of the study is served; ``verify``
names both instances.
"""

from __future__ import annotations

import json
import subprocess

import httpx

from tests.conftest import BIN
from tests.factory import make_instance, uid
from tests.test_dimse_support import server_archive


def _stow(url: str, *parts: bytes) -> httpx.Response:
    body = b"".join(
        b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n" for part in parts
    )
    return httpx.post(
        f"{url}/studies",
        content=body + b"--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        timeout=60,
    )


def test_missing_and_truncated_blob(server_factory: object) -> None:
    """Blobs as files of their own (a pack's faults: tests/test_storage_packs.py)."""
    srv = server_factory(env={"NOCTIS_STORAGE_PACKS": "false"})  # type: ignore[operator]
    study, series = uid(), uid()
    sops = [uid() for _ in range(3)]
    data = [
        make_instance(study_uid=study, series_uid=series, sop_uid=sop, instance_number=n)
        for n, sop in enumerate(sops, 1)
    ]
    assert _stow(srv.dicomweb_url, *data).status_code == 200
    missing, truncated, intact = sops
    with server_archive(srv) as archive:
        paths = {
            loc.sop_uid: archive.blobs.local_path(loc.blob_key)
            for loc in archive.locate_uids(study)
        }
    paths[missing].unlink()
    paths[truncated].write_bytes(paths[truncated].read_bytes()[:-1000])

    base = f"{srv.dicomweb_url}/studies/{study}"
    listed = httpx.get(f"{srv.dicomweb_url}/studies", params={"StudyInstanceUID": study})
    assert listed.status_code == 200 and len(listed.json()) == 1
    assert listed.json()[0]["00201208"]["Value"] == [3]
    assert len(httpx.get(f"{base}/instances", timeout=30).json()) == 3

    for sop in (missing, truncated):
        one = httpx.get(
            f"{base}/series/{series}/instances/{sop}",
            headers={"Accept": "application/dicom"},
            timeout=30,
        )
        assert one.status_code == 500, one.status_code
        assert "missing or damaged" in one.json()["detail"]
        assert "noctis-pacs verify" in one.json()["detail"]
        uri = httpx.get(
            f"{srv.http_url}/wado",
            params={
                "requestType": "WADO",
                "studyUID": study,
                "seriesUID": series,
                "objectUID": sop,
                "contentType": "application/dicom",
                "transferSyntax": "*",
            },
            timeout=30,
        )
        assert uri.status_code == 500 and "missing or damaged" in uri.text

    whole = httpx.get(base, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert whole.status_code == 500 and "missing or damaged" in whole.text

    served = httpx.get(
        f"{base}/series/{series}/instances/{intact}",
        headers={"Accept": "application/dicom; transfer-syntax=*"},
        timeout=30,
    )
    assert served.status_code == 200 and served.content == data[2]
    metadata = httpx.get(f"{base}/metadata", timeout=30)
    assert metadata.status_code == 200 and len(metadata.json()) == 3
    assert httpx.get(f"{srv.http_url}/healthz").status_code == 200

    verify = subprocess.run(
        [str(BIN / "noctis-pacs"), "verify", "--json", "--config", str(srv.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 1, verify.stderr
    report = json.loads(verify.stdout)
    assert report["missing"] == [missing] and report["corrupt"] == [truncated]
    text = subprocess.run(
        [str(BIN / "noctis-pacs"), "verify", "--config", str(srv.config_path)],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert f"missing blob for instance {missing}" in text
    assert f"hash mismatch for instance {truncated}" in text
