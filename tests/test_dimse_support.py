"""Helpers shared by the DIMSE tests (no tests here): dcmtk runners, SCU helpers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

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
#: A context proposed beside others keeps an association on pynetdicom's association
#: layer (``dimse.fastpath.direct`` serves only Verification and storage associations):
#: for tests of what that layer does.
ON_PYNETDICOM = StudyRootQueryRetrieveInformationModelFind


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
def threads_started() -> Iterator[list[str]]:
    """The names of the threads started inside the block (``Thread.start`` watched)."""
    started: list[str] = []
    original = threading.Thread.start

    def watching(thread: threading.Thread) -> None:
        started.append(thread.name)
        original(thread)

    threading.Thread.start = watching  # type: ignore[method-assign]
    try:
        yield started
    finally:
        threading.Thread.start = original  # type: ignore[method-assign]


@contextmanager
def in_process_dimse(tmp_path: Path, **dimse: object) -> Iterator[tuple[Any, Any]]:
    """A DimseServer on a free port in this process (SQLite under ``tmp_path``; ``dimse``:
    more ``[dimse]`` settings), so a test can look at the associations it accepts:
    ``(server, archive)``."""
    from dimse.server import DimseServer
    from noctis_pacs.core.metrics import build_metrics
    from storage.archive import Archive
    from tests.conftest import db_url_for

    settings = make_settings(
        tmp_path / "data",
        db_url_for("sqlite", tmp_path / "data"),
        dimse={"port": 0, "host": "127.0.0.1", **dimse},
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


def associate_request(
    contexts: list[tuple[int, str, list[str]]],
    calling: str,
    called: str,
    user: Iterable[Any] = (),
) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) as pynetdicom encodes it: the presentation
    contexts as (ID, abstract syntax, transfer syntaxes), a maximum length of 16 KiB, an
    implementation class UID and any other user information items."""
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        ImplementationClassUIDNotification,
        MaximumLengthNotification,
    )
    from pynetdicom.presentation import PresentationContext

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    for context_id, abstract, syntaxes in contexts:
        context = PresentationContext()
        context.context_id = context_id
        context.abstract_syntax = abstract
        for syntax in syntaxes:
            context.add_transfer_syntax(syntax)
        primitive.presentation_context_definition_list.append(context)
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.8.498.1"
    primitive.user_information = [length, implementation, *user]
    return A_ASSOCIATE_RQ(primitive).encode()


class RawEchoAssociation:
    """An association with one Verification context on a plain socket (PS3.8 9.3): the
    PDUs encoded by pynetdicom's PDU classes, no pynetdicom association threads. For tests
    that hold several associations open at once: a pynetdicom requestor whose process
    runs many association threads can lose a response to its own reactor (its pause
    check races with the response; "Received unexpected C-ECHO service message",
    pydicom/pynetdicom#875)."""

    def __init__(self, port: int, *, called: str = "NOCTIS", calling: str = "RAWSCU") -> None:
        request = associate_request([(1, Verification, ["1.2.840.10008.1.2"])], calling, called)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock.sendall(request)
        self.is_established = self._read_pdu()[0] == 0x02  # A-ASSOCIATE-AC
        self._message_id = 0

    def _read_pdu(self) -> bytes:
        from dimse.fastpath.pdu import read_exactly

        header = bytes(read_exactly(self.sock, 6))
        if len(header) < 6:
            raise ConnectionError("the server closed the connection")
        return header + bytes(read_exactly(self.sock, int.from_bytes(header[2:], "big")))

    def send_c_echo(self) -> int:
        """One C-ECHO-RQ (PS3.7 9.3.5.1); the Status of its response."""
        from dimse.fastpath.command import command_set, parse_command, read_us, uid, us

        self._message_id += 1
        command = command_set(
            [
                (0x0002, uid(Verification)),
                (0x0100, us(0x0030)),
                (0x0110, us(self._message_id)),
                (0x0800, us(0x0101)),
            ]
        )
        item = (len(command) + 2).to_bytes(4, "big") + b"\x01\x03" + command
        self.sock.sendall(b"\x04\x00" + len(item).to_bytes(4, "big") + item)
        pdu = self._read_pdu()
        if pdu[0] != 0x04:  # P-DATA-TF with the whole response command in one PDV
            raise ConnectionError(f"PDU type 0x{pdu[0]:02X} instead of the C-ECHO response")
        elements = parse_command(pdu[12:])
        assert read_us(elements, 0x0120) == self._message_id
        return read_us(elements, 0x0900)

    def release(self) -> None:
        """A-RELEASE-RQ, A-RELEASE-RP (PS3.8 9.3.6, 9.3.7)."""
        with self.sock:
            self.sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
            assert self._read_pdu()[0] == 0x06
