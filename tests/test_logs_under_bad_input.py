"""The server's log under bad input (issue 14 defect 8): one line per failure with the
reason and the association or request id, no traceback for an expected failure, and
pydicom's warnings kept out of the INFO log.

The server runs as a user runs it (``noctis-pacs serve``, text log on stderr); the test
drives bad input over C-STORE, STOW-RS, C-MOVE to a peer that refuses the connection,
C-FIND and QIDO-RS, then reads the captured log.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import (
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from tests.conftest import RunningServer, free_port, start_server
from tests.factory import make_dataset, make_instance, to_bytes, uid
from tests.test_dimse_support import associate

#: The text log line: time, level, logger, [context id], message.
LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+) \[(?P<ctx>[^\]]*)\] (?P<msg>.*)$")


@pytest.fixture(scope="module")
def noisy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("logs")
    refused_port = free_port()  # nothing listens here: the peer refuses the connection
    srv = start_server(
        base / "data",
        f"sqlite:///{base / 'data' / 'index.sqlite3'}",
        dimse_extra="",
        config=(
            f'[dimse.remotes.down]\nae_title = "DOWN"\nhost = "127.0.0.1"\nport = {refused_port}\n'
        ),
    )
    yield srv
    srv.stop()


def _multipart(*parts: bytes) -> tuple[bytes, dict[str, str]]:
    body = b"".join(
        b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n" for part in parts
    )
    headers = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}
    return body + b"--b--\r\n", headers


def _lines(server: RunningServer, since: int) -> list[str]:
    return server.log().splitlines()[since:]


def _truncated(tmp_path: Path, name: str) -> Path:
    data = make_instance(rows=128, columns=128)
    path = tmp_path / name
    path.write_bytes(data[:-3000])
    return path


def _noisy_instance() -> bytes:
    """Valid enough to store, with values pydicom warns about when it reads them
    (a DA and a TM that are not dates and times, an IS with letters)."""
    ds = make_dataset(PatientBirthDate="notadate", StudyTime="25:99", SeriesNumber="1")
    ds.InstanceNumber = "1"
    raw = to_bytes(ds)
    return raw.replace(b"IS\x02\x001 ", b"IS\x02\x00x1", 1)


def test_bad_input_logs_one_line_per_failure_without_tracebacks(
    noisy_server: RunningServer, tmp_path: Path
) -> None:
    server = noisy_server
    start = len(server.log().splitlines())
    failures: list[tuple[str, str]] = []  # (what, a word of the reason the line must carry)

    # C-STORE of truncated files: each gets a failure status and one line with the reason.
    assoc = associate(server.dimse_port, [build_context(SecondaryCaptureImageStorage)])
    assert assoc.is_established
    for n in range(3):
        status = assoc.send_c_store(_truncated(tmp_path, f"cut{n}.dcm"))
        assert 0xA900 <= status.Status <= 0xCFFF or status.Status >= 0xA700, status
        failures.append(("C-STORE", "Pixel Data"))
    assert assoc.send_c_store(make_dataset()).Status == 0
    assoc.release()

    # STOW-RS: a truncated part, a non-DICOM part, with one good part between them.
    body, headers = _multipart(
        _truncated(tmp_path, "cut.dcm").read_bytes(), make_instance(), b"not dicom" * 40
    )
    stow = httpx.post(f"{server.dicomweb_url}/studies", content=body, headers=headers, timeout=30)
    assert stow.status_code == 202, stow.text
    failures += [("STOW-RS", "Pixel Data"), ("STOW-RS", "not a DICOM")]
    # Files pydicom warns about are stored without a word at INFO.
    body, headers = _multipart(*(_noisy_instance() for _ in range(5)))
    noisy = httpx.post(f"{server.dicomweb_url}/studies", content=body, headers=headers, timeout=30)
    assert noisy.status_code == 200, noisy.text

    # A bad QIDO date and a bad C-FIND level.
    bad_query = httpx.get(
        f"{server.dicomweb_url}/studies", params={"StudyDate": "2024-03-15"}, timeout=30
    )
    assert bad_query.status_code == 400
    failures.append(("GET /dicom-web/studies -> 400", "StudyDate"))
    find = associate(server.dimse_port, [build_context(StudyRootQueryRetrieveInformationModelFind)])
    query = Dataset()
    query.QueryRetrieveLevel = "FRAME"
    statuses = [
        s.Status
        for s, _ in find.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        if s
    ]
    find.release()
    assert statuses and statuses[-1] not in (0x0000, 0xFF00)
    failures.append(("C-FIND", "Query/Retrieve Level"))

    # C-MOVE to a destination whose host refuses the connection.
    study = uid()
    body, headers = _multipart(make_instance(study_uid=study))
    assert (
        httpx.post(
            f"{server.dicomweb_url}/studies", content=body, headers=headers, timeout=30
        ).status_code
        == 200
    )
    move = associate(server.dimse_port, [build_context(StudyRootQueryRetrieveInformationModelMove)])
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    results = [
        s.Status
        for s, _ in move.send_c_move(identifier, "DOWN", StudyRootQueryRetrieveInformationModelMove)
        if s
    ]
    move.release()
    assert results and results[-1] not in (0x0000,)
    failures.append(("C-MOVE", "Connection refused"))

    lines = _lines(server, start)
    text = "\n".join(lines)
    assert "Traceback" not in text, text
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    for match in parsed:
        assert match is not None
        assert match["logger"] not in ("py.warnings", "pydicom") or match["level"] == "DEBUG", (
            match.group(0)
        )
    problems = [m for m in parsed if m is not None and m["level"] in ("WARNING", "ERROR", "INFO")]
    for what, reason in failures:
        carrying = [m for m in problems if what in m["msg"] and reason in m["msg"]]
        assert carrying, f"no line for a {what} failure carrying {reason!r}:\n{text}"
        for m in carrying:
            assert m["ctx"] not in ("", "-"), f"no association/request id: {m.group(0)}"
    # One line per failure: the log grows with the failures, not with pydicom's chatter.
    assert len(lines) <= 2 * len(failures) + 12, text
