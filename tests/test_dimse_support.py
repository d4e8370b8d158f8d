"""Helpers shared by the DIMSE tests (no tests here): dcmtk runners, SCU helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_context
from pynetdicom.sop_class import Verification

from noctis_pacs.core.settings import Settings
from tests.conftest import FAST, RunningServer, make_settings
from tests.factory import to_bytes

#: Whether the servers the tests start run the DIMSE fast path (``make test-stock-dimse``
#: runs the DIMSE tests again with ``NOCTIS_DIMSE_FAST_PATH=0``: stock pynetdicom).
FAST_PATH = os.environ.get("NOCTIS_DIMSE_FAST_PATH", "1").strip().lower() not in (
    "0", "false", "no", "off",
)  # fmt: skip

#: dcmtk honours TCP_NODELAY from the environment (no 40 ms Nagle stalls on loopback).
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def _require_dcmtk_marker() -> None:
    if FAST:
        pytest.fail("this test runs a dcmtk tool: mark it @pytest.mark.dcmtk")


def dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run one of dcmtk's command-line tools (tests calling it carry the ``dcmtk`` marker)."""
    _require_dcmtk_marker()
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV
    )


def write_files(folder: Path, datasets: Iterable[Dataset]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:04d}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def server_settings(server: RunningServer) -> Settings:
    return make_settings(server.data_dir, server.db_url, storage={"fsync": "never"})


@contextmanager
def server_archive(server: RunningServer) -> Iterator[Any]:
    """The running server's archive opened beside it (the index is shared)."""
    from storage.archive import Archive

    archive = Archive(server_settings(server))
    try:
        yield archive
    finally:
        archive.close()


def associate(
    port: int,
    contexts: list[Any] | None = None,
    *,
    ae_title: str = "TESTSCU",
    called: str = "NOCTIS",
    **kwargs: Any,
) -> Any:
    ae = AE(ae_title=ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for cx in contexts or [build_context(Verification)]:
        ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
    return ae.associate("127.0.0.1", port, ae_title=called, **kwargs)


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def storescp(port: int, folder: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """dcmtk storescp accepting every transfer syntax, writing into ``folder``."""
    _require_dcmtk_marker()
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        ["storescp", "-aet", "DEST", "+xa", "-od", str(folder), *args, str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def read_responses(folder: Path) -> list[Dataset]:
    from pydicom import dcmread

    return [dcmread(p, force=True) for p in sorted(folder.glob("rsp*.dcm"))]


def process_tree(pid: int) -> set[int]:
    """``pid`` and every live process below it (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found = {pid}
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def connections_by_process(pids: Iterable[int], port: int) -> dict[int, int]:
    """Established TCP connections accepted on ``port`` that each of ``pids`` holds
    (from /proc/net/tcp and the processes' descriptors)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
                    inodes.add(fields[9])
    counts: dict[int, int] = {}
    for pid in pids:
        held = 0
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        counts[pid] = held
    return counts


@contextmanager
def in_process_dimse(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """A DimseServer on a free port in this process (SQLite under ``tmp_path``), so a
    test can look at the associations it accepts: ``(server, archive)``."""
    from dimse.server import DimseServer
    from noctis_pacs.core.metrics import build_metrics
    from storage.archive import Archive
    from tests.conftest import db_url_for

    settings = make_settings(
        tmp_path / "data",
        db_url_for("sqlite", tmp_path / "data"),
        dimse={"port": 0, "host": "127.0.0.1"},
    )
    archive = Archive(settings)
    server = DimseServer(settings=settings, archive=archive, metrics=build_metrics())
    server.start()
    try:
        yield server, archive
    finally:
        server.stop()
        archive.close()


def scraped_metric(server: RunningServer, name: str, **labels: str) -> float:
    """The value of sample ``name`` with exactly ``labels`` on the server's /metrics
    (0 when it has no such sample yet)."""
    import httpx

    text = httpx.get(f"{server.http_url}/metrics", timeout=30).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            metric, _, value = line.rpartition(" ")
            found = metric[len(name) + 1 : -1].split(",")
            if ",".join(sorted(found)) == wanted:
                return float(value)
    return 0.0
