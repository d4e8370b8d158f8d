"""Fault trial: fuzzed input (issue 14). Mutated Part 10 files (truncation, flipped
bytes, corrupt, undefined and huge lengths, wrong VRs) through STOW-RS and raw
C-STORE, malformed multipart bodies and query strings, from a fixed seed: no crash,
no hang (every C-STORE answered or the association aborted within seconds), no 5xx,
nothing stored that does not read back. bench/fault_fuzz.py runs longer.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

from tests.conftest import RunningServer
from tests.fuzz_support import bad_multipart, bad_query, bad_uid, mutated, seeds
from tests.test_dimse_support import associate, server_archive

SEED = 1414
#: Seconds a C-STORE may take before the trial calls it a hang.
ANSWER_WITHIN = 10.0


def _post(server: RunningServer, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(
        f"{server.dicomweb_url}/studies",
        content=body,
        headers={"Content-Type": content_type},
        timeout=60,
    )


def _referenced(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        value = response.json().get("00081199", {}).get("Value", [])
    except ValueError:
        return []
    return list(value)


def _well_formed(uid: str) -> bool:
    return 0 < len(uid) <= 64 and all(c in "0123456789." for c in uid)


def stow_fuzz(server: RunningServer, rng: random.Random, count: int) -> list[str]:
    problems = []
    for name, data in mutated(rng, count):
        boundary = "fuzz"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        response = _post(
            server, body, f'multipart/related; type="application/dicom"; boundary={boundary}'
        )
        if response.status_code >= 500:
            problems.append(f"STOW-RS {name}: {response.status_code} {response.text[:200]}")
            continue
        for item in _referenced(response):
            if not all(_well_formed(u) for u in _acknowledged_uids(item)):
                continue  # defect 11: test_malformed_uids_are_never_acknowledged
            problems += _read_back(item, f"STOW-RS {name}")
    return problems


def _acknowledged_uids(item: dict[str, Any]) -> list[str]:
    """Study, series and SOP Instance UIDs of a ReferencedSOPSequence item (from its
    Retrieve URL, PS3.18 10.5.3)."""
    url = item.get("00081190", {}).get("Value", [""])[0]
    path = url.split("/studies/", 1)[-1]
    parts = path.replace("/series/", "/").replace("/instances/", "/").split("/")
    return [*parts, item.get("00081155", {}).get("Value", [""])[0]]


def _read_back(item: dict[str, Any], what: str) -> list[str]:
    """Problems retrieving an acknowledged instance by its Retrieve URL."""
    url = item.get("00081190", {}).get("Value", [""])[0]
    try:
        got = httpx.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    except httpx.InvalidURL:
        return [f"{what}: acknowledged with a Retrieve URL no client can request"]
    except httpx.TransportError as exc:
        return [f"{what}: acknowledged, WADO-RS dropped the connection ({exc})"]
    if got.status_code != 200:
        return [f"{what}: acknowledged, WADO-RS {got.status_code}"]
    return []


def cstore_fuzz(server: RunningServer, rng: random.Random, count: int, folder: Path) -> list[str]:
    problems = []
    contexts = [
        build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian),
        build_context(CTImageStorage),
    ]
    assoc = None
    folder.mkdir(parents=True, exist_ok=True)
    for n, (name, data) in enumerate(mutated(rng, count)):
        if assoc is None or not assoc.is_established:
            assoc = associate(server.dimse_port, contexts)
            assert assoc.is_established, "the server stopped accepting associations"
        path = folder / f"{n}.dcm"
        path.write_bytes(data)
        started = time.monotonic()
        try:
            status = assoc.send_c_store(path)
        except Exception:  # noqa: BLE001 - pynetdicom refuses to send the file at all
            continue
        took = time.monotonic() - started
        if took > ANSWER_WITHIN:
            problems.append(f"C-STORE {name}: {took:.1f} s to answer or abort")
        code = getattr(status, "Status", None)
        if code is None and assoc.is_established:
            problems.append(f"C-STORE {name}: no answer on a live association")
    if assoc is not None and assoc.is_established:
        assoc.release()
    return problems


def everything_reads_back(server: RunningServer) -> tuple[list[str], list[str]]:
    """(problems, malformed-UID instances): every indexed instance must be listed by
    QIDO-RS by its UIDs and retrieved by WADO-RS."""
    from noctis_pacs.core.model import Level, Query

    problems, malformed = [], []
    with server_archive(server) as archive:
        locations = archive.locate(Query(level=Level.IMAGE, matches=()))
    for loc in locations:
        uids = (loc.study_uid, loc.series_uid, loc.sop_uid)
        if not all(_well_formed(u) for u in uids):
            malformed.append(repr(uids))
            continue
        url = f"{server.dicomweb_url}/studies/{loc.study_uid}/series/{loc.series_uid}/instances/{loc.sop_uid}"
        got = httpx.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
        if got.status_code != 200 or len(got.content) != loc.size:
            problems.append(f"stored {loc.sop_uid}: WADO-RS {got.status_code}")
    return problems, malformed


@pytest.mark.slow
def test_fuzzed_part10_files_over_stow_and_cstore(server: RunningServer, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    problems = stow_fuzz(server, rng, 120)
    problems += cstore_fuzz(server, rng, 60, tmp_path / "cstore")
    assert server.alive()
    stored_problems, malformed = everything_reads_back(server)
    assert problems + stored_problems == [], problems + stored_problems
    assert httpx.get(f"{server.http_url}/readyz").status_code == 200


def test_malformed_multipart_bodies_get_4xx(server: RunningServer) -> None:
    rng = random.Random(SEED)
    part = seeds()[0]
    for _ in range(40):
        what, body, content_type = bad_multipart(rng, part)
        response = _post(server, body, content_type)
        assert response.status_code < 500, (what, response.status_code, response.text)
        if response.status_code in (200, 202):
            assert _referenced(response), (what, "a success that lists nothing")
        else:
            assert 400 <= response.status_code < 500, (what, response.status_code)
    assert server.alive()


def test_malformed_query_strings_get_4xx_or_answers(server: RunningServer) -> None:
    rng = random.Random(SEED)
    for _ in range(80):
        params = bad_query(rng)
        level = rng.choice(["studies", "series", "instances"])
        response = httpx.get(f"{server.dicomweb_url}/{level}", params=params, timeout=30)
        assert response.status_code < 500, (params, response.status_code, response.text)
        if response.status_code == 200:
            assert isinstance(response.json(), list)
    assert server.alive()


def test_malformed_uids_are_never_acknowledged(server: RunningServer, tmp_path: Path) -> None:
    """Issue 14 defect 11: an instance whose UIDs carry a letter or a control character
    is refused, or stored and served; never acknowledged and then unreadable."""
    rng = random.Random(SEED)
    problems = []
    for _ in range(10):
        data = bad_uid(seeds()[0], rng)
        body = b"--u\r\nContent-Type: application/dicom\r\n\r\n" + data + b"\r\n--u--\r\n"
        response = _post(server, body, 'multipart/related; type="application/dicom"; boundary=u')
        for item in _referenced(response):
            problems += _read_back(item, "STOW-RS bad UID")
    _, malformed = everything_reads_back(server)
    assert problems == [] and malformed == [], (problems, malformed)


def test_value_list_of_empty_values_is_a_universal_match(server: RunningServer) -> None:
    """Found by the query fuzzing: ``SeriesNumber=\\`` (a list of two zero-length values)
    compiled to ``IN ()``, a syntax error on PostgreSQL (500). Each zero-length value is
    a universal match (PS3.4 C.2.2.2.3)."""
    for level in ("studies", "series", "instances"):
        response = httpx.get(
            f"{server.dicomweb_url}/{level}", params={"SeriesNumber": "\\", "limit": "1"}
        )
        assert response.status_code in (200, 204), response.text


def test_unknown_transfer_syntax_is_refused_as_not_understood(server: RunningServer) -> None:
    """Found by bench/fault_fuzz.py: a flipped byte in (0002,0010) made the header parse
    raise pydicom's ValueError, answered as a processing failure (0x0110) with a
    traceback in the log. It is input the archive cannot understand: 0xC000 with the
    reason (PS3.18 10.5.3, Table 10.5.3-3 "Cannot understand")."""
    data = seeds()[0]
    at = data.find(b"1.2.840.10008.1.2.1\x00")
    assert at > 0
    bad = data[:at] + b"1.2.840.10008.1.3\x00\x00\x00" + data[at + 20 :]
    body = b"--t\r\nContent-Type: application/dicom\r\n\r\n" + bad + b"\r\n--t--\r\n"
    response = _post(server, body, 'multipart/related; type="application/dicom"; boundary=t')
    assert response.status_code == 409, response.text
    failed = response.json()["00081198"]["Value"]
    assert failed[0]["00081197"]["Value"] == [0xC000]
    assert "not a known transfer syntax" in response.headers["Warning"]


def test_warning_header_never_carries_a_control_character() -> None:
    """Found by bench/fault_fuzz.py: a reason with a control character (from a fuzzed
    UID) made the Warning header invalid, and uvicorn dropped the connection."""
    from dicomweb.errors import warning_value

    value = warning_value("".join(chr(c) for c in range(32)) + "\x7f reason")
    assert all(" " <= c != "\x7f" for c in value), repr(value)
    assert value.endswith('reason"')


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_pdu_claiming_a_huge_length_costs_no_memory(server: RunningServer) -> None:
    """PS3.8 9.3.1: a PDU's length is the peer's claim. Three connections, each a 6-byte
    A-ASSOCIATE-RQ header claiming 1 GiB and 100 bytes: the server's memory grows by no
    more than what arrived (not 3 GiB), and it goes on answering a C-ECHO."""
    import socket
    import struct

    before = _rss_kib(server.process.pid)
    peers = []
    for _ in range(3):
        peer = socket.create_connection(("127.0.0.1", server.dimse_port), timeout=10)
        peer.sendall(struct.pack(">BBI", 0x01, 0, 1 << 30) + b"x" * 100)
        peers.append(peer)
    try:
        time.sleep(1.0)
        grown = _rss_kib(server.process.pid) - before
        assoc = associate(server.dimse_port)
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        for peer in peers:
            peer.close()
    assert grown < 200 * 1024, f"the server grew by {grown} KiB"
