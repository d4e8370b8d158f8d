"""`http.workers` > 1: several HTTP processes share the port and the archive."""

from __future__ import annotations

import os
import signal
import time

import httpx

from tests.factory import make_instance


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan may wait for a reaper that never comes here)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_two_http_workers_serve_one_archive(server_factory: object) -> None:
    srv = server_factory(env={"NOCTIS_HTTP_WORKERS": "2"})  # type: ignore[operator]
    assert len(_children(srv.process.pid)) >= 2
    with httpx.Client(timeout=30) as client:
        studies = set()
        for n in range(12):
            data = make_instance(patient_id=f"W{n}")
            response = client.post(
                f"{srv.dicomweb_url}/studies",
                content=data,
                headers={"Content-Type": "application/dicom"},
            )
            assert response.status_code == 200, response.text
            studies.add(response.json()["00081190"]["Value"][0].rsplit("/", 1)[1])
        for _ in range(6):  # whichever worker answers sees every study
            found = client.get(f"{srv.dicomweb_url}/studies", params={"PatientID": "W*"}).json()
            assert {s["0020000D"]["Value"][0] for s in found} == studies
    workers = _children(srv.process.pid)
    srv.process.send_signal(signal.SIGTERM)
    srv.process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if _running(pid)]
