"""Acknowledged = on disk (``storage.fsync = "always"``, the default): the order of the
real server's system calls, traced with strace, for every instance stored.

A power cut loses whatever the page cache held, so the model checked is the order of
the calls that end a write's exposure to it. For each stored instance (its blob key
read from the index afterwards):

1. the blob's data synced (``fdatasync``/``fsync`` of the temporary file, or of the
   blob after its rename into place) and its folder synced after the rename, both
   finished; or, for a blob appended to a pack (``storage.packs``, the default), the
   pack's file and folder synced after the pack was created and an ``fdatasync`` of
   the pack that started after the record's write finished
2. before the first write of its index row into the SQLite WAL starts (so the row can
   never reach the disk before the blob it points at, not even by the kernel's own
   write-back), and
3. that WAL was synced (``fdatasync``/``fsync`` started after the row's write) before
   the C-STORE response naming the instance is sent (PS3.4 B.2.3: Success only once
   stored).

One association and three concurrent ones (group commit: several blobs per sync
round, one index commit per batch), with one DIMSE process and with two (the default
``dimse.workers = "auto"`` on two CPUs: each process is traced on its own, since
descriptors are per process, and each instance is checked in the trace of the process
that acknowledged it). The response carries the Affected SOP Instance
UID (PS3.7 9.3.1.2), the WAL pages the UID as text, so both are found by the UID.
"""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

from tests.conftest import BIN, free_port
from tests.factory import make_dataset, uid
from tests.test_dimse_support import process_tree

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (make deps)"),
]

LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")
RESULT = re.compile(r"=\s+(-?\d+)")


@dataclass
class Call:
    name: str
    start: int  # line index of its first appearance
    end: int  # line index of its result
    args: str
    result: int
    path: str = ""  # the file a descriptor named, for fdatasync / fsync / pwrite64


@dataclass
class Trace:
    calls: list[Call] = field(default_factory=list)


def parse(text: str) -> Trace:
    """strace -f output to calls with start and end positions (line order: a call that
    another thread's event interrupted is printed ``<unfinished ...>`` at its start)."""
    trace = Trace()
    open_calls: dict[tuple[str, str], Call] = {}
    fds: dict[int, str] = {}
    for index, line in enumerate(text.splitlines()):
        match = LINE.match(line)
        if not match:
            continue
        pid, resumed, name, rest = match.groups()
        if resumed:
            call = open_calls.pop((pid, resumed), None)
            if call is None:
                continue
            call.args += rest
            done = RESULT.search(rest)
            call.end = index
            call.result = int(done.group(1)) if done else -1
        else:
            call = Call(name, index, index, rest, -1)
            if rest.endswith("<unfinished ...>"):
                open_calls[(pid, name)] = call
                trace.calls.append(call)
                continue
            done = RESULT.search(rest.rsplit(")", 1)[-1])
            call.result = int(done.group(1)) if done else -1
        if call not in trace.calls:
            trace.calls.append(call)
        if call.name == "openat" and call.result >= 0:
            fds[call.result] = call.args.split('"')[1]
        elif call.name in ("fdatasync", "fsync", "pwrite64", "pwritev", "pwritev2"):
            fd = re.match(r"\s*(\d+)", call.args)
            call.path = fds.get(int(fd.group(1)), "") if fd else ""
    return trace


def store(port: int, datasets: list[object]) -> None:
    ae = AE(ae_title="ORDER")
    ae.add_requested_context(SecondaryCaptureImageStorage)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="NOCTIS")
    assert assoc.is_established
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            assert status.Status == 0x0000
    finally:
        assoc.release()


@pytest.mark.parametrize(("workers", "packs"), [(1, True), (2, True), (1, False)])
def test_blob_then_index_then_response(tmp_path: Path, workers: int, packs: bool) -> None:
    data = tmp_path / "data"
    port = free_port()
    config = tmp_path / "noctis.toml"
    config.write_text(  # storage.fsync left at its default
        f'[storage]\ndata_dir = "{data}"\npacks = {str(packs).lower()}\n'
        f'[dimse]\nhost = "127.0.0.1"\nport = {port}\nae_title = "NOCTIS"\n'
        f"workers = {workers}\n"
        '[logging]\nlevel = "WARNING"\n'
    )
    server = subprocess.Popen(
        [str(BIN / "noctis-pacs"), "serve", "--dimse-only", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tracers: list[subprocess.Popen[bytes]] = []
    trace_paths: list[Path] = []
    try:
        _wait(port, server)
        processes = process_tree(server.pid)
        assert len(processes) >= workers, "a DIMSE worker process is missing"
        for pid in sorted(processes):
            trace_paths.append(tmp_path / f"trace-{pid}.txt")
            tracers.append(subprocess.Popen(
                ["strace", "-f", "-qq", "-s", "6000", "-o", str(trace_paths[-1]), "-p", str(pid),
                 "-e", "trace=openat,rename,fsync,fdatasync,pwrite64,pwritev,pwritev2,sendto"],
                stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        time.sleep(1.5)  # attached to every thread
        study = uid()
        one = [make_dataset(study_uid=study, instance_number=n) for n in range(6)]
        store(port, one)
        groups = [
            [make_dataset(study_uid=study, instance_number=100 * g + n) for n in range(5)]
            for g in range(3)
        ]
        threads = [threading.Thread(target=store, args=(port, g)) for g in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(0.5)
    finally:
        for tracer in tracers:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)
    sop_uids = [str(ds.SOPInstanceUID) for ds in one + [d for g in groups for d in g]]
    with sqlite3.connect(data / "index.sqlite3") as db:
        keys = dict(db.execute("SELECT sop_uid, blob_key FROM instances"))  # noqa: S608
    assert set(sop_uids) <= set(keys)
    assert all(keys[sop].startswith("p") == packs for sop in sop_uids), "storage.packs ignored"
    traces = [parse(path.read_text(errors="replace")) for path in trace_paths]
    wal = str(data / "index.sqlite3-wal")
    acknowledging: set[int] = set()
    for sop_uid in sop_uids:
        # The process that sent the response stored the instance.
        found = [
            number
            for number, trace in enumerate(traces)
            if any(c.name == "sendto" and sop_uid in c.args for c in trace.calls)
        ]
        assert len(found) == 1, f"{sop_uid}: acknowledged by {len(found)} processes"
        acknowledging.add(found[0])
        _check_instance(traces[found[0]], sop_uid, keys[sop_uid], data, wal)
    # Four associations, three at once: with two processes both stored some.
    assert len(acknowledging) == workers


def _wait(port: int, server: subprocess.Popen[bytes]) -> None:
    ae = AE(ae_title="ORDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "server exited"
        assoc = ae.associate("127.0.0.1", port, ae_title="NOCTIS")
        if assoc.is_established:
            assoc.release()
            return
        time.sleep(0.2)
    raise AssertionError("server not serving")


def _check_instance(trace: Trace, sop_uid: str, key: str, data: Path, wal: str) -> None:
    calls = trace.calls
    row = next(c for c in calls if c.name == "pwrite64" and c.path == wal and sop_uid in c.args)
    if key.startswith("p"):
        _check_packed(calls, sop_uid, key, data, row)
    else:
        _check_file(calls, sop_uid, key, data, row)
    response = next(c for c in calls if c.name == "sendto" and sop_uid in c.args)
    wal_synced = [
        c
        for c in calls
        if c.name in ("fdatasync", "fsync") and c.path == wal and c.start > row.start
    ]
    assert wal_synced, f"{sop_uid}: WAL never synced after the row was written"
    assert wal_synced[0].end < response.start, f"{sop_uid}: acknowledged before the commit sync"


def _check_packed(calls: list[Call], sop_uid: str, key: str, data: Path, row: Call) -> None:
    """A packed blob: its pack durable under its name (file and folder synced after the
    pack was created), then the record written at the offset its key names, then an
    ``fdatasync`` of the pack begun after that write ended, all before the row."""
    folder = str(data / "packs")
    pack = f"{folder}/{key[1:33]}.pack"
    created = next(c for c in calls if c.name == "openat" and f'"{pack}"' in c.args)
    assert "O_CREAT" in created.args, f"{key}: the pack was not created by this process"
    for path, what in ((pack, "pack file"), (folder, "packs folder")):
        synced = [
            c for c in calls if c.name == "fsync" and c.path == path and c.start > created.end
        ]
        assert synced, f"{key}: {what} never synced after the pack was created"
        assert synced[0].end < row.start, f"{sop_uid}: index row written before the {what} sync"
    offset = int(key[33:45], 16) - 64  # the record's header
    record = next(
        c
        for c in calls
        if c.name.startswith("pwritev")
        and c.path == pack
        and sop_uid in c.args
        and re.search(rf"\],\s*\d+,\s*{offset}\b", c.args)
    )
    data_synced = [
        c
        for c in calls
        if c.name == "fdatasync" and c.path == pack and c.result == 0 and c.start > record.end
    ]
    assert data_synced, f"{key}: the record was never synced after its write"
    assert data_synced[0].end < row.start, f"{sop_uid}: index row written before its record synced"


def _check_file(calls: list[Call], sop_uid: str, key: str, data: Path, row: Call) -> None:
    blob = str(data / "blobs" / key[:3] / f"{key}.dcm")
    folder = str(data / "blobs" / key[:3])
    renamed = next(c for c in calls if c.name == "rename" and f'"{blob}"' in c.args)
    temporary = renamed.args.split('"')[1]
    # The data: synced as the temporary file, or as the blob after its rename.
    data_synced = [
        c
        for c in calls
        if c.name in ("fdatasync", "fsync")
        and c.result == 0
        and (c.path == temporary or (c.path == blob and c.start > renamed.end))
    ]
    assert data_synced, f"{key}: blob data never synced"
    assert data_synced[0].end < row.start, f"{sop_uid}: index row written before its blob synced"
    # The name: its folder synced after the rename.
    folder_synced = [
        c for c in calls if c.name == "fsync" and c.path == folder and c.start > renamed.end
    ]
    assert folder_synced, f"{key}: folder never synced after the rename"
    assert folder_synced[0].end < row.start, f"{sop_uid}: index row written before its name"
