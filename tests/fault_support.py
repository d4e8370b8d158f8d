"""Fault trials shared by the suite (tests/test_fault_*.py) and the longer bench runs
(bench/fault_*.py): concurrent ingest over C-STORE and STOW-RS against a real
``noctis-pacs serve``, and the checks that whatever was acknowledged is there."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.sop_class import SecondaryCaptureImageStorage

from tests.conftest import RunningServer, start_server
from tests.factory import make_instance, uid
from tests.test_dimse_support import associate


def dataset_bytes(part10: bytes) -> bytes:
    """The data set of a Part 10 file: what a C-STORE carries and the blob ends with."""
    from io import BytesIO

    ds = dcmread(BytesIO(part10), stop_before_pixels=True)
    meta_len = int(ds.file_meta.FileMetaInformationGroupLength)
    return part10[128 + 4 + 12 + meta_len :]


def multipart(*parts: bytes, boundary: str = "b") -> tuple[bytes, dict[str, str]]:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
        for part in parts
    )
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    return body + f"--{boundary}--\r\n".encode(), headers


@dataclass
class Ingest:
    """Acknowledged instances by SOP Instance UID: the bytes the archive must give back
    (the whole file for STOW-RS, the data set for C-STORE, which the archive stores
    behind File Meta it writes itself)."""

    study_uid: str
    acknowledged: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def ack(self, sop: str, how: str, data: bytes) -> None:
        with self.lock:
            self.acknowledged[sop] = (how, data)

    def refuse(self, what: str) -> None:
        with self.lock:
            self.refused[what] = self.refused.get(what, 0) + 1


def _instance(study_uid: str, n: int) -> tuple[str, bytes]:
    sop = uid()
    return sop, make_instance(
        study_uid=study_uid, sop_uid=sop, rows=32, columns=32, instance_number=n
    )


def cstore_loop(server: RunningServer, ingest: Ingest, folder: Path) -> None:
    """Send instances over C-STORE (from files, as dcmtk's storescu does) until stopped
    or the association fails; record each acknowledged one."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    while not ingest.stop.is_set():
        try:
            assoc = associate(
                server.dimse_port,
                [build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)],
            )
        except Exception:  # noqa: BLE001 - the server is gone
            return
        if not assoc.is_established:
            return
        try:
            while not ingest.stop.is_set() and assoc.is_established:
                n += 1
                sop, data = _instance(ingest.study_uid, n)
                path = folder / f"{sop}.dcm"
                path.write_bytes(data)
                status = assoc.send_c_store(path)
                code = getattr(status, "Status", None)
                if code == 0x0000:
                    ingest.ack(sop, "dimse", dataset_bytes(data))
                elif code is not None:
                    ingest.refuse(f"C-STORE 0x{code:04X}")
        except Exception:  # noqa: BLE001 - killed mid-association
            return
        finally:
            if assoc.is_established:
                assoc.release()


def stow_loop(server: RunningServer, ingest: Ingest, parts: int = 2) -> None:
    """POST multipart STOW-RS requests of ``parts`` instances until stopped or the
    server is gone; record the instances a 200/202 response lists as stored."""
    n = 0
    with httpx.Client(timeout=30) as client:
        while not ingest.stop.is_set():
            batch = []
            for _ in range(parts):
                n += 1
                batch.append(_instance(ingest.study_uid, 100000 + n))
            body, headers = multipart(*(data for _, data in batch))
            try:
                response = client.post(
                    f"{server.dicomweb_url}/studies", content=body, headers=headers
                )
            except httpx.HTTPError:
                return
            if response.status_code == 202:
                ingest.refuse(f"STOW-RS 202{_failure_reasons(response)}")
            if response.status_code in (200, 202):
                stored = {
                    item["00081155"]["Value"][0]
                    for item in response.json().get("00081199", {}).get("Value", [])
                }
                for sop, data in batch:
                    if sop in stored:
                        ingest.ack(sop, "stow", data)
            else:
                ingest.refuse(f"STOW-RS {response.status_code}{_failure_reasons(response)}")


def _failure_reasons(response: httpx.Response) -> str:
    """`` 0xA700`` etc.: the FailureReason values of a STOW-RS response's failed items."""
    try:
        items = response.json().get("00081198", {}).get("Value", [])
    except ValueError:
        return ""
    codes = sorted({item.get("00081197", {}).get("Value", [0])[0] for item in items})
    return "".join(f" 0x{code:04X}" for code in codes)


def start_ingest(server: RunningServer, ingest: Ingest, folder: Path) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=cstore_loop, args=(server, ingest, folder), daemon=True),
        threading.Thread(target=stow_loop, args=(server, ingest), daemon=True),
    ]
    for thread in threads:
        thread.start()
    return threads


def check_acknowledged(server: RunningServer, ingest: Ingest) -> list[str]:
    """Problems found: an acknowledged instance missing or not byte-identical, a QIDO
    result without a retrievable blob."""
    problems = []
    base = f"{server.dicomweb_url}/studies/{ingest.study_uid}"
    with httpx.Client(timeout=60) as client:
        listed = client.get(f"{base}/instances", params={"limit": 100000})
        rows = listed.json() if listed.status_code == 200 else []
        listed_sops = {row["00080018"]["Value"][0]: row for row in rows}
        for sop, (how, _) in ingest.acknowledged.items():
            if sop not in listed_sops:
                problems.append(f"{how} {sop}: acknowledged, not listed by QIDO-RS")
        for sop, row in listed_sops.items():
            series = row["0020000E"]["Value"][0]
            got = client.get(
                f"{base}/series/{series}/instances/{sop}",
                headers={"Accept": "application/dicom; transfer-syntax=*"},
            )
            if got.status_code != 200:
                problems.append(f"{sop}: listed by QIDO-RS, WADO-RS {got.status_code}")
                continue
            if sop in ingest.acknowledged:
                how, data = ingest.acknowledged[sop]
                same = got.content == data if how == "stow" else got.content.endswith(data)
                if not same:
                    problems.append(f"{how} {sop}: retrieved bytes differ from those sent")
    return problems


@dataclass
class KillTrial:
    acknowledged: int
    refused: dict[str, int]
    restart_seconds: float
    problems: list[str]
    verify: dict[str, Any]


def compile_bytecode() -> None:
    """The project's bytecode, as an installed server has it (``make bytecode``): the
    restart time measures the server's start, not the compiling of its ~130 modules an
    editable checkout under ``PYTHONDONTWRITEBYTECODE=1`` would pay at every start."""
    import compileall

    root = Path(__file__).resolve().parent.parent
    for package in ("noctis_pacs", "dimse", "dicomweb", "storage"):
        compileall.compile_dir(root / package, quiet=1)


def kill9_trial(
    base: Path,
    db_url: str,
    *,
    trial: int,
    rng: random.Random,
    ingest_seconds: tuple[float, float] = (0.3, 1.2),
) -> KillTrial:
    """One trial: start the server (on the archive of earlier trials), ingest over both
    protocols, ``kill -9`` it at a random moment, restart it, check."""
    from storage.archive import Archive
    from tests.conftest import make_settings

    data_dir = base / "data"
    compile_bytecode()
    server = start_server(data_dir, db_url)
    ingest = Ingest(study_uid=uid())
    threads = start_ingest(server, ingest, base / f"send{trial}")
    deadline = time.monotonic() + 20
    while len(ingest.acknowledged) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(*ingest_seconds))
    server.kill()
    ingest.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    started = time.monotonic()
    restarted = start_server(data_dir, db_url)
    restart_seconds = time.monotonic() - started
    try:
        problems = check_acknowledged(restarted, ingest)
        archive = Archive(make_settings(data_dir, db_url))
        try:
            report = archive.verify()
        finally:
            archive.close()
        if report["missing"] or report["corrupt"]:
            problems.append(
                f"index rows without a good blob: {report['missing']} {report['corrupt']}"
            )
    finally:
        restarted.stop()
    return KillTrial(
        acknowledged=len(ingest.acknowledged),
        refused=dict(ingest.refused),
        restart_seconds=restart_seconds,
        problems=problems,
        verify={k: len(v) for k, v in report.items() if isinstance(v, list)},
    )
