"""Pack files: small blobs appended, one after the other, to a file per writing process.

Making a blob durable as a file of its own costs a file creation, a rename and two
cache flushes (the file's data, then its folder's names); a blob appended to a pack
that already exists costs one ``fdatasync`` of the pack, which concurrent stores of
the process share (docs/performance.md, issue 15). The guarantee is the same: a blob
is on disk before an index row can point at it.

Layout: ``<root>/packs/<32 hex>.pack``, a new pack per process start and every
``PACK_LIMIT`` bytes; never appended to by another process (each holds an exclusive
``flock`` on the packs it writes). A record is a 64-byte header, then the blob as
received::

    magic (16) | blob length (u64, 8) | SHA-256 (32) | CRC-32 of the previous 40 (u32) | 0 (4)

A record's key names its pack, where its bytes start and how many there are
(``p<pack><offset, 12 hex><length, 8 hex>``), so a read needs no lookup. Deleting a
record overwrites its magic with the deleted magic and punches its bytes out of the
file (``fallocate``: the disk blocks wholly inside it are freed, the rest read as
zeros); a pack left with no live record is removed by ``sweep``.

After a power cut the records whose write had not been synced may be cut short or
zeros, anywhere in the pack's tail (concurrent appends complete out of order); none
was acknowledged. ``scan`` steps over them: a header that does not check out is
skipped by searching for the next magic.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import io
import os
import re
import struct
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import NamedTuple

#: A live record's magic; ``DEAD`` replaces it when the record is deleted.
LIVE = b"NoctisPack\x00rec\x01\n"
DEAD = b"NoctisPack\x00del\x01\n"
_HEADER = struct.Struct("<16sQ32sI4x")
HEADER_SIZE = _HEADER.size  # 64
#: A pack takes no new record once it is this long (a new one is started).
PACK_LIMIT = 256 << 20
#: A packed blob's key: ``p``, its pack's name, its offset and its length (hex).
KEY = re.compile(r"p([0-9a-f]{32})([0-9a-f]{12})([0-9a-f]{8})")
_NAME = re.compile(r"[0-9a-f]{32}\.pack")


class Place(NamedTuple):
    pack: str
    offset: int
    length: int


def parse_key(key: str) -> Place | None:
    """Where a packed blob lies; ``None`` when ``key`` is not a packed blob's key."""
    match = KEY.fullmatch(key)
    if match is None:
        return None
    return Place(match[1], int(match[2], 16), int(match[3], 16))


def make_key(pack: str, offset: int, length: int) -> str:
    return f"p{pack}{offset:012x}{length:08x}"


#: Counts the forks of this process's ancestry: a pack writer created before a fork
#: starts a pack of its own in the child (an int compared per append, not ``getpid``).
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def _header(magic: bytes, length: int, sha256: bytes) -> bytes:
    body = struct.pack("<Q32s", length, sha256)
    return _HEADER.pack(magic, length, sha256, zlib.crc32(body))


def _read_header(raw: bytes) -> tuple[bool, int, bytes] | None:
    """(live, length, SHA-256) of a record header that checks out (magic and CRC);
    ``None`` for anything else (zeros, a torn write, bytes inside a blob)."""
    if len(raw) < HEADER_SIZE:
        return None
    magic, length, digest, crc = _HEADER.unpack(raw[:HEADER_SIZE])
    if magic not in (LIVE, DEAD) or zlib.crc32(raw[16:56]) != crc:
        return None
    return magic == LIVE, length, bytes(digest)


class _Pack:
    """One pack being written: appends reserve their range under the writer's lock and
    write outside it; ``sync`` covers every append completed before it started."""

    def __init__(self, folder: str) -> None:
        self.name = uuid.uuid4().hex
        self.path = f"{folder}/{self.name}.pack"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ``sweep`` leaves it alone
        self.end = 0
        self.users = 0  # appends between their reservation and their sync
        self.retired = False
        self._done = 0  # appends whose write completed
        self._synced = 0  # appends covered by a completed fdatasync
        self._count = threading.Lock()
        self._sync = threading.Lock()

    def write(self, offset: int, header: bytes, data: bytes) -> int:
        """Write one record at ``offset``; its ticket for ``sync``."""
        wrote = os.pwritev(self.fd, [header, data], offset)
        if wrote != len(header) + len(data):  # a regular file: the disk is full
            raise OSError(errno.ENOSPC, "a short write to a pack file")
        with self._count:
            self._done += 1
            return self._done

    def sync(self, ticket: int) -> None:
        """Durable through append ``ticket``: one ``fdatasync`` serves every append that
        completed before it began (group commit of the concurrent stores)."""
        with self._sync:
            if self._synced >= ticket:
                return
            with self._count:
                upto = self._done
            os.fdatasync(self.fd)
            self._synced = upto


class PackWriter:
    """The packs one process appends to (a forked child starts its own)."""

    def __init__(self, folder: str, *, fsync: bool) -> None:
        self.folder = folder
        self.fsync = fsync
        self._lock = threading.Lock()
        self._pack: _Pack | None = None
        self._forks = _forks
        self._pending: dict[str, tuple[_Pack, int]] = {}

    def _current(self, size: int) -> _Pack:
        pack = self._pack
        forked = self._forks != _forks
        if pack is None or forked or pack.end + size > PACK_LIMIT:
            if forked:  # the parent's pack is the parent's; its lock the child leaves alone
                self._forks, self._pending = _forks, {}
            elif pack is not None:
                self._retire(pack)
            self._pack = None  # until a new one is open (that can fail: disk full)
            pack = self._pack = self._open()
        return pack

    def _open(self) -> _Pack:
        os.makedirs(self.folder, exist_ok=True)
        pack = _Pack(self.folder)
        try:
            if self.fsync:  # the pack's name is durable before any record in it is
                os.fsync(pack.fd)
                fsync_dir(self.folder)
        except OSError:
            os.close(pack.fd)
            raise
        return pack

    def _retire(self, pack: _Pack) -> None:
        if pack.retired:
            return
        pack.retired = True
        if pack.users == 0:
            os.close(pack.fd)

    def _release(self, pack: _Pack) -> None:
        with self._lock:
            pack.users -= 1
            if pack.retired and pack.users == 0:
                os.close(pack.fd)

    def append(self, data: bytes, sha256: str) -> str:
        """Write ``data`` as a new record; its key. Durable once ``sync`` ran for it."""
        header = _header(LIVE, len(data), bytes.fromhex(sha256))
        size = HEADER_SIZE + len(data)
        with self._lock:
            pack = self._current(size)
            offset = pack.end
            pack.end += size
            pack.users += 1
        try:
            ticket = pack.write(offset, header, data)
        except OSError:
            self._release(pack)
            raise
        key = make_key(pack.name, offset + HEADER_SIZE, len(data))
        if self.fsync:
            with self._lock:
                self._pending[key] = (pack, ticket)
        else:
            self._release(pack)
        return key

    def sync(self, key: str) -> None:
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None:
            return
        pack, ticket = pending
        try:
            pack.sync(ticket)
        finally:
            self._release(pack)


class PackSlice(io.RawIOBase):
    """One packed blob as a read-only, seekable file of its own. Its ``name`` (which
    pydicom records as a data set's file name) names no file that can be opened."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        super().__init__()
        self.name = f"{path}[{offset}:{offset + length}]"
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._start = offset
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._length - self._pos))
        if not count:
            return 0
        got = os.preadv(self._fd, [view[:count]], self._start + self._pos)
        self._pos += got
        return got

    def readall(self) -> bytes:
        """The rest of the blob in one read (``io.RawIOBase`` would read 8 KiB at a time)."""
        buffer = bytearray(max(0, self._length - self._pos))
        got = self.readinto(buffer) if buffer else 0
        return bytes(buffer[:got])

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "a negative position in a packed blob")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def open_slice(path: str, offset: int, length: int) -> io.BufferedReader:
    return io.BufferedReader(PackSlice(path, offset, length), buffer_size=1 << 16)


class Record(NamedTuple):
    offset: int  # of the blob's bytes
    length: int
    live: bool


def scan(path: str) -> Iterator[Record]:
    """The records of a pack in file order, deleted ones included (``live`` false);
    bytes that are no whole record (an interrupted write's) are stepped over."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        pos = 0
        while pos + HEADER_SIZE <= size:
            fh.seek(pos)
            header = _read_header(fh.read(HEADER_SIZE))
            if header is not None and pos + HEADER_SIZE + header[1] <= size:
                live, length, _ = header
                yield Record(pos + HEADER_SIZE, length, live)
                pos += HEADER_SIZE + length
                continue
            pos = _next_magic(fh, pos + 1, size)


def _next_magic(fh: io.BufferedReader, start: int, size: int) -> int:
    """Where the next record header may start at or after ``start`` (``size``: none)."""
    step = 1 << 20
    pos = start
    while pos < size:
        fh.seek(pos)
        chunk = fh.read(step + len(LIVE) - 1)
        found = [i for i in (chunk.find(LIVE), chunk.find(DEAD)) if i >= 0]
        if found:
            return pos + min(found)
        pos += step
    return size


def record_sha256(path: str, offset: int, length: int) -> str | None:
    """The SHA-256 held by the live record of ``length`` bytes starting at ``offset``;
    ``None`` when the pack holds no such record whole (deleted, cut short, gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.pread(fd, HEADER_SIZE, offset - HEADER_SIZE)
        end = os.fstat(fd).st_size
    except OSError:
        return None
    finally:
        os.close(fd)
    header = _read_header(raw)
    if header is None or end < offset + length or header[:2] != (True, length):
        return None
    return header[2].hex()


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def delete(path: str, offset: int, length: int) -> None:
    """Mark the record deleted and free its bytes (zeros where a hole cannot be punched)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        start = offset - HEADER_SIZE
        if os.pread(fd, len(LIVE), start) != LIVE:
            return  # deleted already, or not a record
        os.pwrite(fd, DEAD, start)
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        if length and _libc.fallocate(fd, mode, offset, length) != 0:
            for at in range(offset, offset + length, 1 << 20):
                os.pwrite(fd, bytes(min(1 << 20, offset + length - at)), at)
    finally:
        os.close(fd)


def sweep(folder: str, only: set[str] | None = None) -> int:
    """Remove the packs (all, or those named in ``only``) that no process writes to and
    that hold no live record; how many."""
    removed = 0
    for name in pack_names(folder) if only is None else sorted(only):
        path = f"{folder}/{name}.pack"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a process is appending to it
            if not any(record.live for record in scan(path)):
                os.unlink(path)
                removed += 1
        finally:
            os.close(fd)
    return removed


def pack_names(folder: str) -> list[str]:
    try:
        return sorted(n[:-5] for n in os.listdir(folder) if _NAME.fullmatch(n))
    except FileNotFoundError:
        return []


def fsync_dir(path: str) -> None:
    """Make a folder's names durable (after a file in it was created or renamed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
