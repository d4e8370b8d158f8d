"""Verification and Storage SCP over real associations, on both index backends."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import _config, build_context
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset
from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage, Verification

from storage.part10 import data_set_offset
from tests.conftest import RunningServer
from tests.factory import bundled_dicom_files, ct_series, make_dataset, uid
from tests.test_dimse_support import FAST_PATH, associate, dcmtk, server_archive, write_files

#: storescu's option proposing each transfer syntax.
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-x=",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


SHARED_UID: set[Path] = set()


def _files_by_syntax() -> dict[str, list[Path]]:
    """Bundled files by transfer syntax; files whose SOP Instance UID no other file
    shares come first (several bundled files reuse one UID across syntaxes)."""
    by_syntax: dict[str, list[Path]] = {}
    uids: dict[Path, str] = {}
    for path in bundled_dicom_files():
        ds = dcmread(path, stop_before_pixels=True)
        meta_uid = str(ds.file_meta.get("MediaStorageSOPInstanceUID", ""))
        if meta_uid == ds.SOPInstanceUID:
            uids[path] = meta_uid
            by_syntax.setdefault(str(ds.file_meta.TransferSyntaxUID), []).append(path)
    counts = Counter(uids.values())
    SHARED_UID.update(p for p, u in uids.items() if counts[u] > 1)
    return {ts: sorted(paths, key=lambda p: counts[uids[p]] > 1) for ts, paths in by_syntax.items()}


@pytest.mark.dcmtk
def test_echoscu_and_pynetdicom_echo(server: RunningServer) -> None:
    """PS3.4 Annex A: C-ECHO answers Success (0000H)."""
    result = dcmtk("echoscu", "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port))
    assert result.returncode == 0, result.stderr
    assoc = associate(server.dimse_port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


@pytest.mark.dcmtk
def test_storescu_every_bundled_transfer_syntax_stored_as_received(
    server: RunningServer, tmp_path: Path
) -> None:
    """PS3.4 B.2.3 / DESIGN: each transfer syntax is accepted and the data set kept byte for byte."""
    files: dict[str, Path] = {}
    failures: dict[str, str] = {}
    for ts, candidates in _files_by_syntax().items():
        # Some bundled files are deliberately malformed; dcmtk refuses to send those.
        for path in candidates:
            result = dcmtk(
                "storescu",
                "-R",
                PROPOSE[ts],
                "-aec",
                server.ae_title,
                "127.0.0.1",
                str(server.dimse_port),
                str(path),
            )
            if result.returncode == 0:
                files[ts] = path
                break
            failures[ts] = result.stderr[-300:]
    assert len(files) == len(_files_by_syntax()) >= 10, failures
    with server_archive(server) as archive:
        for ts, path in files.items():
            sop_uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            located = archive.locate_uids(sop_uid=sop_uid)
            assert located, (ts, path.name)
            if path not in SHARED_UID:
                assert located[0].transfer_syntax_uid == ts


def test_stored_byte_for_byte_as_received(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN (stored as received, PS3.10): the data set bytes a peer sends are the bytes
    kept, whatever the transfer syntax (pynetdicom sends the file's bytes unparsed)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    for ts, candidates in _files_by_syntax().items():
        path = candidates[0]
        if path in SHARED_UID:
            continue  # another bundled file (another syntax) holds the same UID
        meta, sent_offset = split_dataset(path)
        sop_class = str(meta.MediaStorageSOPClassUID)
        assoc = associate(server.dimse_port, [build_context(sop_class, [ts])])
        assert assoc.is_established, ts
        status = assoc.send_c_store(path)
        assoc.release()
        if status.Status != 0x0000:
            continue  # malformed on purpose (e.g. no SOP Instance UID): tested elsewhere
        sop_uid = str(meta.MediaStorageSOPInstanceUID)
        with server_archive(server) as archive:
            located = archive.locate_uids(sop_uid=sop_uid)
            assert located and located[0].transfer_syntax_uid == ts
            with archive.open_blob(located[0]) as fh:
                stored = fh.read()
        stored_offset = data_set_offset(stored)
        assert stored_offset is not None, ts
        assert stored[stored_offset:] == path.read_bytes()[sent_offset:], ts


def test_serve_lays_out_the_blob_store_in_the_background(server: RunningServer) -> None:
    """A started server creates the store's 4,096 blob folders (so a fresh archive's
    stores do not pay a folder creation each) while it already answers."""
    blobs = server.data_dir / "blobs"
    deadline = time.monotonic() + 60
    while len(list(blobs.iterdir())) < 4096 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(blobs.iterdir())) == 4096


@pytest.mark.dcmtk
def test_storescu_folder_of_ct_series(server: RunningServer, tmp_path: Path) -> None:
    """PS3.4 B.2.3: a whole generated CT series stored over one association."""
    study, series = uid(), uid()
    write_files(tmp_path / "ct", ct_series(24, 128, study_uid=study, series_uid=series))
    result = dcmtk(
        "storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port),
        "+sd", str(tmp_path / "ct"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with server_archive(server) as archive:
        assert len(archive.locate_uids(study_uid=study, series_uid=series)) == 24


@pytest.mark.dcmtk
def test_four_concurrent_storing_associations(server: RunningServer, tmp_path: Path) -> None:
    """PS3.8: several associations store at once; every instance lands exactly once."""
    study = uid()
    folders = []
    for n in range(4):
        folder = tmp_path / f"f{n}"
        write_files(folder, ct_series(10, 64, study_uid=study))
        folders.append(folder)
    results: list[int] = []

    def run(folder: Path) -> None:
        out = dcmtk(
            "storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port),
            "+sd", str(folder),
        )  # fmt: skip
        results.append(out.returncode)

    threads = [threading.Thread(target=run, args=(f,)) for f in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [0, 0, 0, 0]
    with server_archive(server) as archive:
        assert len(archive.locate_uids(study_uid=study)) == 40


def _store(server: RunningServer, ds: object, *, context: object = None) -> int:
    cx = context or build_context(
        SecondaryCaptureImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    )
    assoc = associate(server.dimse_port, [cx])
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def _store_as_announced(
    server: RunningServer, ds: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> int:
    """Send ``ds`` from a file: chunked send takes the command's Affected SOP Class and
    Instance UIDs from its file meta, which the caller may set to contradict it."""
    path = tmp_path / f"{uid()}.dcm"
    ds.preamble = b"\x00" * 128
    ds.save_as(path, enforce_file_format=False)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    explicit = build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    return _store(server, path, context=explicit)


@pytest.mark.parametrize("size", [64, 1024])  # received in memory / spooled to the store
def test_stored_as_received_in_memory_and_spooled(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A data set below the in-memory receive bound (1 MiB) and one above it are both
    stored as received (pixel data included), and on both paths a data set whose SOP
    Instance UID differs from the command's Affected SOP Instance UID is refused
    (PS3.4 B.2.3: 0xC002, a "cannot understand" failure) and not stored."""
    ds = make_dataset(rows=size, columns=size)
    assert _store(server, ds) == 0x0000
    with server_archive(server) as archive:
        (location,) = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
        with archive.open_blob(location) as fh:
            stored = dcmread(fh)
    assert stored.PixelData == ds.PixelData
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    with server_archive(server) as archive:
        report = archive.verify()  # the recorded SHA-256 is the stored file's
    assert report["ok"], report
    other = make_dataset(rows=size, columns=size)
    other.file_meta.MediaStorageSOPInstanceUID = uid()
    assert _store_as_announced(server, other, tmp_path, monkeypatch) == 0xC002
    with server_archive(server) as archive:
        assert not archive.locate_uids(sop_uid=str(other.SOPInstanceUID))


def test_store_statuses(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PS3.4 B.2.3: 0000H stored (and again for a duplicate), A900H data set does not
    match SOP class (required attribute missing, or SOP Class UID differs from the
    Affected SOP Class UID)."""
    ds = make_dataset()
    assert _store(server, ds) == 0x0000
    assert _store(server, ds) == 0x0000  # identical duplicate: already stored, success
    missing = make_dataset()
    del missing.StudyInstanceUID
    assert _store(server, missing) == 0xA900
    # A CT data set announced as Secondary Capture: the file meta (sent as the command's
    # Affected SOP Class UID in chunked mode) contradicts the data set.
    ct = make_dataset(sop_class=CTImageStorage)
    ct.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    assert _store_as_announced(server, ct, tmp_path, monkeypatch) == 0xA900
    with server_archive(server) as archive:
        assert not archive.locate_uids(sop_uid=str(ct.SOPInstanceUID))
        assert not archive.locate_uids(sop_uid=str(missing.SOPInstanceUID))


def test_garbage_and_half_open_socket_then_echo(server: RunningServer) -> None:
    """PS3.8 9.3.1 / 9.1.7: an unrecognised PDU is aborted, a silent peer times out on
    its own thread; neither stops the next association."""
    half_open = socket.create_connection(("127.0.0.1", server.dimse_port))
    garbage = socket.create_connection(("127.0.0.1", server.dimse_port))
    garbage.sendall(b"\x99GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 8)
    time.sleep(0.2)
    try:
        assoc = associate(server.dimse_port)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    finally:
        half_open.close()
        garbage.close()
    assert server.alive()


@pytest.fixture
def tmp_server(server_factory: object, tmp_path: Path) -> RunningServer:
    spool = tmp_path / "spool"
    spool.mkdir()
    srv: RunningServer = server_factory(env={"TMPDIR": str(spool)})  # type: ignore[operator]
    srv.extra["spool"] = spool
    return srv


def test_abort_mid_transfer_leaves_nothing(tmp_server: RunningServer) -> None:
    """PS3.8 7.3 (A-ABORT): an instance whose data set never completed is not stored,
    no partial file is left behind, and the server keeps serving. The data set (2 MiB)
    outgrows the in-memory receive (1 MiB), so its first part is spooled to a file in
    the store's temporary area before the abort (on stock pynetdicom: to pynetdicom's
    temporary file)."""
    ds = make_dataset(rows=1024, columns=1024)
    cx = build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    assoc = associate(tmp_server.dimse_port, [cx], max_pdu=16382)
    assert assoc.is_established
    req = C_STORE()
    req.MessageID = 1
    req.AffectedSOPClassUID = SecondaryCaptureImageStorage
    req.AffectedSOPInstanceUID = ds.SOPInstanceUID
    req.Priority = 0
    from io import BytesIO

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pynetdicom.dimse_messages import C_STORE_RQ

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    req.DataSet = BytesIO(buffer.getvalue())
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    cx_id = assoc.accepted_contexts[0].context_id
    pdus = list(message.encode_msg(cx_id, 16382))
    assert len(pdus) > 100

    spool: Path = tmp_server.extra["spool"]  # type: ignore[assignment]
    receiving = tmp_server.data_dir / "tmp" if FAST_PATH else spool

    def spooled() -> list[Path]:
        return [p for p in receiving.rglob("*") if p.is_file()]

    for pdu in pdus[:90]:  # the command and ~1.4 MiB of the data set
        assoc.dul.send_pdu(pdu)
    deadline = time.monotonic() + 5
    while not spooled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spooled(), "the partial data set should be spooling to the store"
    assoc.abort()
    deadline = time.monotonic() + 5
    while spooled() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not spooled()
    assert not list(spool.iterdir()), "nothing is left in the system temp folder"
    with server_archive(tmp_server) as archive:
        assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
    again = associate(tmp_server.dimse_port)
    assert again.send_c_echo().Status == 0x0000
    again.release()


def test_metrics_count_dimse_operations(server: RunningServer) -> None:
    """Operations are counted per service and status in the one metrics registry."""
    import httpx

    assoc = associate(server.dimse_port, [build_context(Verification)])
    assoc.send_c_echo()
    assoc.release()
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    assert 'noctis_dimse_operations_total{operation="C-ECHO",status="0x0000"}' in text
    assert "noctis_dimse_duration_seconds_bucket" in text
