"""Fault trial: the disk fills up under ingest (issue 14).

The blob store root (and, with SQLite, the index) sit on an 8 MiB tmpfs the test
mounts (root required; ``storage.min_free_mb = 0`` so the real ``ENOSPC`` is met,
not the configured reserve). A filler file leaves a few hundred KiB; then C-STORE
must answer 0xA700 (PS3.4 B.2.3, Out of Resources), STOW-RS 409 or 507 with a
FailedSOPSequence item whose FailureReason is 0xA700 (PS3.18 10.5.3) and never a
200 that lists nothing; nothing is half-stored; once the filler is removed, ingest
resumes without a restart.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from noctis_pacs.core.settings import Settings
from tests.conftest import db_url_for, make_settings, start_server
from tests.factory import make_instance, uid
from tests.fault_support import Ingest, check_acknowledged, dataset_bytes, multipart
from tests.test_dimse_support import associate

OUT_OF_RESOURCES = 0xA700


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(mount_point: Path, leave: int) -> Path:
    filler = mount_point / "filler"
    free = os.statvfs(mount_point).f_bavail * os.statvfs(mount_point).f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return filler


def _stow_failure_reasons(response: httpx.Response) -> list[int]:
    items = response.json().get("00081198", {}).get("Value", [])
    return [item["00081197"]["Value"][0] for item in items]


@pytest.mark.slow
def test_disk_full_refuses_honestly_and_recovers(small_fs: Path, backend: str) -> None:
    data_dir = small_fs / "data"
    url = db_url_for(backend, data_dir)
    # The real ENOSPC, not the configured free-space reserve.
    server = start_server(data_dir, url, env={"NOCTIS_STORAGE_MIN_FREE_MB": "0"})
    try:
        ingest = Ingest(study_uid=uid())
        filler = _fill(small_fs, leave=300 * 1024)
        big = dict(rows=256, columns=256)  # 128 KiB of pixels each
        assoc = associate(
            server.dimse_port,
            [build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)],
        )
        assert assoc.is_established
        dimse_codes = []
        for n in range(12):
            sop = uid()
            data = make_instance(study_uid=ingest.study_uid, sop_uid=sop, instance_number=n, **big)
            path = small_fs.parent / f"send-{sop}.dcm"
            path.write_bytes(data)
            code = int(assoc.send_c_store(path).Status)
            path.unlink()
            dimse_codes.append(code)
            if code == 0:
                ingest.ack(sop, "dimse", dataset_bytes(data))
        assoc.release()
        assert OUT_OF_RESOURCES in dimse_codes, [hex(c) for c in dimse_codes]
        assert set(dimse_codes) <= {0, OUT_OF_RESOURCES}, [hex(c) for c in dimse_codes]

        stow_statuses = []
        for _ in range(4):
            batch = [
                (sop, make_instance(study_uid=ingest.study_uid, sop_uid=sop, **big))
                for sop in (uid(), uid())
            ]
            body, headers = multipart(*(data for _, data in batch))
            response = httpx.post(
                f"{server.dicomweb_url}/studies", content=body, headers=headers, timeout=60
            )
            stow_statuses.append(response.status_code)
            assert response.status_code in (200, 202, 409, 507), response.text
            reasons = _stow_failure_reasons(response)
            if response.status_code in (409, 507):
                assert reasons and set(reasons) == {OUT_OF_RESOURCES}, response.text
            listed = {
                item["00081155"]["Value"][0]
                for item in response.json().get("00081199", {}).get("Value", [])
            }
            assert listed or reasons, "a response that lists nothing"
            for sop, data in batch:
                if sop in listed:
                    ingest.ack(sop, "stow", data)
        assert set(stow_statuses) & {409, 507}, stow_statuses

        assert check_acknowledged(server, ingest) == []
        leftovers = list((server.data_dir / "tmp").rglob("*.part"))
        assert leftovers == [], "half-written temporary files left behind"

        filler.unlink()  # space returns: ingest resumes without a restart
        sop = uid()
        body, headers = multipart(make_instance(study_uid=ingest.study_uid, sop_uid=sop, **big))
        resumed = httpx.post(
            f"{server.dicomweb_url}/studies", content=body, headers=headers, timeout=60
        )
        assert resumed.status_code == 200, resumed.text
        assoc = associate(
            server.dimse_port,
            [build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)],
        )
        path = small_fs.parent / "resume.dcm"
        path.write_bytes(make_instance(study_uid=ingest.study_uid, **big))
        assert assoc.send_c_store(path).Status == 0
        assoc.release()
        assert server.alive()
    finally:
        server.stop()
    from storage.archive import Archive

    archive = Archive(_settings(data_dir, url))
    try:
        report = archive.verify()
    finally:
        archive.close()
    assert report["missing"] == [] and report["corrupt"] == [], report


def _settings(data_dir: Path, url: str) -> Settings:
    return make_settings(data_dir, url, storage={"min_free_mb": 0, "fsync": "never"})
