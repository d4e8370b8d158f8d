"""A ~1 GB STOW-RS upload keeps the server's memory flat (parts are spooled to disk)."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
from pydicom.dataset import Dataset

from tests.conftest import RunningServer
from tests.dicomweb_support import new_boundary, stow_headers
from tests.factory import make_dataset, uid

FRAMES = 64
ROWS = COLUMNS = 512
PIXEL_BYTES = ROWS * COLUMNS * 2 * FRAMES  # 32 MiB per instance
INSTANCES = 32  # 1 GiB in all
CHUNK = 1 << 20


def _rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _header(study_uid: str) -> bytes:
    """A Part 10 file up to (and including) the Pixel Data element header."""
    ds: Dataset = make_dataset(study_uid=study_uid, rows=ROWS, columns=COLUMNS)
    del ds.PixelData
    ds.NumberOfFrames = FRAMES
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", PIXEL_BYTES)


def _body(boundary: str, study_uid: str) -> Iterator[bytes]:
    block = bytes(range(256)) * (CHUNK // 256)
    for _ in range(INSTANCES):
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield _header(study_uid)
        for _ in range(PIXEL_BYTES // CHUNK):
            yield block
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


@pytest.mark.slow
def test_one_gigabyte_stow_keeps_memory_flat(server: RunningServer) -> None:
    """PS3.18 10.5: a large multipart upload is parsed as a stream; the server's peak RSS
    grows by far less than the body (which the test itself generates as a stream)."""
    pid = server.process.pid
    httpx.get(f"{server.dicomweb_url}/studies", params={"limit": "1"})  # warm the code paths
    before = _rss_kib(pid, "VmRSS")
    peak_before = _rss_kib(pid, "VmHWM")
    boundary = new_boundary()
    study_uid = uid()
    started = time.monotonic()
    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=_body(boundary, study_uid),
        headers=stow_headers(boundary),
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["00081199"]["Value"]) == INSTANCES
    peak = _rss_kib(pid, "VmHWM")
    growth_mib = (max(peak, peak_before) - before) / 1024
    print(
        f"1 GiB STOW-RS in {elapsed:.1f} s; RSS {before / 1024:.0f} MiB, peak +{growth_mib:.0f} MiB"
    )
    assert growth_mib < 150, f"server RSS grew by {growth_mib:.0f} MiB during a 1 GiB upload"
    found = httpx.get(f"{server.dicomweb_url}/studies/{study_uid}/instances").json()
    assert len(found) == INSTANCES
