"""Pack files (``storage.packs``, issue 15): small blobs appended to a pack per process.

What a pack must keep of the blob store's contract: a blob reads back byte for byte
through every reader, concurrent appends never overlap, a deleted blob's bytes are
gone and its pack is removed once nothing in it lives, and after a power cut the
records that were never synced (cut short, zeros, anywhere in the tail) neither hide
the whole records after them from ``reindex`` nor get indexed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from storage import packs
from storage.archive import Archive
from storage.blobstore import SMALL_BLOB, FileSystemBlobStore
from storage.ingest import Origin, Status
from tests.blob_support import blob_region
from tests.factory import make_dataset, make_instance, to_bytes, uid


def _store(blobs: FileSystemBlobStore, data: bytes) -> str:
    writer = blobs.create()
    writer.write(data)
    return blobs.commit(writer)


def _pack_files(root: Path) -> list[Path]:
    return sorted((root / "packs").glob("*.pack"))


def test_small_blobs_are_packed_and_read_back_by_every_reader(tmp_path: Path) -> None:
    blobs = FileSystemBlobStore(tmp_path)
    small = [os.urandom(n) for n in (1, 1000, SMALL_BLOB)]
    keys = [_store(blobs, data) for data in small]
    assert all(packs.parse_key(key) is not None for key in keys)
    assert len(_pack_files(tmp_path)) == 1 and not list(blobs.blobs.rglob("*.dcm"))
    for key, data in zip(keys, small, strict=True):
        assert blobs.size(key) == len(data) and blobs.exists(key)
        assert blobs.local_path(key) is None
        with blobs.open(key) as fh:
            assert fh.read() == data
            fh.seek(-1, os.SEEK_END)
            assert fh.read() == data[-1:] and fh.read() == b""
            fh.seek(0)
            assert fh.read(3) == data[:3] and fh.tell() == min(3, len(data))
        assert blobs.read_range(key, 0, 2) == data[:2]
    big = os.urandom(SMALL_BLOB + 1)
    big_key = _store(blobs, big)
    assert packs.parse_key(big_key) is None  # a file of its own
    assert blobs.local_path(big_key) is not None and blobs.size(big_key) == len(big)
    assert sorted(blobs.iter_keys()) == sorted([*keys, big_key])


def test_packs_off_writes_every_blob_as_a_file(tmp_path: Path) -> None:
    blobs = FileSystemBlobStore(tmp_path, packs=False)
    key = _store(blobs, b"x" * 100)
    assert packs.parse_key(key) is None and blobs.local_path(key) is not None
    assert not _pack_files(tmp_path)


def test_concurrent_appends_are_whole_and_distinct(tmp_path: Path) -> None:
    blobs = FileSystemBlobStore(tmp_path)
    stored: dict[str, bytes] = {}
    lock = threading.Lock()

    def worker(seed: int) -> None:
        for n in range(50):
            data = bytes([seed]) * (100 + 37 * n)
            key = _store(blobs, data)
            with lock:
                stored[key] = data

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stored) == 400
    for key, data in stored.items():
        with blobs.open(key) as fh:
            assert fh.read() == data
    (pack,) = _pack_files(tmp_path)
    records = list(packs.scan(str(pack)))
    assert len(records) == 400 and all(r.live for r in records)
    assert sum(packs.HEADER_SIZE + r.length for r in records) == pack.stat().st_size


def test_a_forked_child_appends_to_a_pack_of_its_own(tmp_path: Path) -> None:
    """DIMSE workers are forked: none may append to its parent's pack (each pack has one
    writing process, so its appends never overlap)."""
    blobs = FileSystemBlobStore(tmp_path)
    before = _store(blobs, b"P" * 100)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: store one blob, report its key, leave at once
        try:
            os.write(write, _store(blobs, b"C" * 100).encode())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 200).decode()
    os.close(read)
    os.close(write)
    after = _store(blobs, b"Q" * 100)
    places = [packs.parse_key(key) for key in (before, child, after)]
    assert all(places)
    assert places[0].pack == places[2].pack != places[1].pack  # type: ignore[union-attr]
    assert [blobs.read_range(k, 0, 1) for k in (before, child, after)] == [b"P", b"C", b"Q"]


def test_a_full_pack_is_followed_by_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs, "PACK_LIMIT", 10_000)
    blobs = FileSystemBlobStore(tmp_path)
    keys = [_store(blobs, bytes([n]) * 3000) for n in range(10)]
    assert len(_pack_files(tmp_path)) == 4  # three records of 3,064 bytes per pack
    for n, key in enumerate(keys):
        assert blobs.read_range(key, 0, 3000) == bytes([n]) * 3000


def test_deleted_records_are_erased_and_an_empty_pack_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs, "PACK_LIMIT", 50_000)
    writing = FileSystemBlobStore(tmp_path)
    first, second = _store(writing, b"A" * 20_000), _store(writing, b"B" * 20_000)
    writing.delete(first)
    assert writing.size(first) is None and not writing.exists(first)
    path, offset, length = blob_region(writing, first)
    with open(path, "rb") as fh:
        fh.seek(offset)
        assert fh.read(length) == bytes(length)  # punched out: reads as zeros
    assert list(writing.iter_keys()) == [second]
    writing.delete(second)
    # This process still appends to the pack: no sweep removes it, from any store object.
    assert FileSystemBlobStore(tmp_path).sweep_packs() == 0
    assert writing.sweep_packs([first, second]) == 0 and len(_pack_files(tmp_path)) == 1
    third = _store(writing, b"C" * 20_000)  # does not fit: a new pack, the old one retired
    assert len(_pack_files(tmp_path)) == 2
    assert writing.sweep_packs() == 1
    (left,) = _pack_files(tmp_path)
    assert left.stem == blob_region(writing, third)[0].rsplit("/", 1)[1][:-5]
    assert list(writing.iter_keys()) == [third]


def test_scan_steps_over_records_a_power_cut_left_unsynced(tmp_path: Path) -> None:
    """A record in the middle whose header is zeros (an append that never reached the
    disk while later ones did) and a cut-short tail: the whole records are all found."""
    blobs = FileSystemBlobStore(tmp_path)
    keys = [_store(blobs, bytes([n + 1]) * (500 + n)) for n in range(5)]
    path, offset, _ = blob_region(blobs, keys[2])
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(packs.HEADER_SIZE), offset - packs.HEADER_SIZE)
        end = os.fstat(fd).st_size
        os.pwrite(fd, packs.LIVE + b"\x01" * 20, end)  # a header cut short
    finally:
        os.close(fd)
    assert list(blobs.iter_keys()) == [keys[0], keys[1], keys[3], keys[4]]
    assert blobs.size(keys[2]) is None


def test_reindex_skips_a_record_whose_bytes_differ_from_its_hash(archive: Archive) -> None:
    """A record whose header reached the disk but whose bytes did not (zeros): never
    acknowledged, so never indexed; ``verify`` and ``reindex`` name it."""
    origin = Origin("test")
    good = archive.store_bytes(make_instance(), origin)
    assert good.status is Status.STORED
    writer = archive.blobs.create()
    writer.write(make_instance())
    torn = archive.blobs.commit(writer)  # appended, never indexed: an orphan
    path, offset, length = blob_region(archive.blobs, torn)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(length - 200), offset + 200)
    finally:
        os.close(fd)
    report = archive.verify()
    (entry,) = report["unadoptable"]
    assert entry["blob"] == torn and "interrupted write" in entry["reason"]
    result = archive.reindex()
    assert result["added"] == 0 and [s["blob"] for s in result["skipped"]] == [torn]
    assert archive.stats()["instances"] == 1


def test_deleting_a_study_deletes_its_pack_records(archive: Archive) -> None:
    study = uid()
    for n in range(3):
        data = to_bytes(make_dataset(study_uid=study, instance_number=n))
        assert archive.store_bytes(data, Origin("test")).status is Status.STORED
    (pack,) = _pack_files(archive.blobs.root)
    assert archive.delete(study_uid=study) == 3
    assert pack.exists()  # this process still appends to it
    assert not list(archive.blobs.iter_keys())


def test_serve_removes_packs_with_nothing_live_at_start(
    tmp_path: Path, server_factory: object
) -> None:
    """A pack whose last record was deleted while its process still appended to it is
    removed at the next start; a pack holding a live record is kept."""
    folder = tmp_path / "data0" / "packs"  # where server_factory's first server keeps data
    folder.mkdir(parents=True)
    data = b"x" * 100
    dead, live = folder / f"{'d' * 32}.pack", folder / f"{'e' * 32}.pack"
    dead.write_bytes(packs._header(packs.DEAD, len(data), bytes(32)) + data)
    live.write_bytes(packs._header(packs.LIVE, len(data), bytes(32)) + data)
    server_factory()  # type: ignore[operator]
    deadline = time.monotonic() + 20
    while dead.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not dead.exists() and live.exists()
