"""The blob store: anonymous, immutable DICOM files named by a UUID.

Blobs are written to a temporary file inside the store (``tmp/a/<uuid>.part``), then
renamed into place under ``blobs/abc/<uuid>.dcm`` (4,096 folders named by the UUID's
first three hex digits); the name never comes from attribute text, and a blob is never
overwritten.  With ``packs`` (``storage.packs``, the default) a blob held in memory
(up to ``SMALL_BLOB``) is instead appended to its process's pack file
(``packs/<uuid>.pack``, ``storage.packs``; its key names pack, offset and length); both
kinds are read, whatever the setting.  An object-storage backend is another class
implementing ``BlobStore``.

Durability (``fsync = "always"``) is a separate step after the rename, ``sync``: the
file's data (``fdatasync``), then its folder; for a packed blob, an ``fdatasync`` of
its pack begun after the record was written.  The ingest pipeline runs it before the
blob's index row is written, so a blob is on disk, under its name, before any index
row can point at it, and an instance is acknowledged only after both.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from storage.packs import (
    PackWriter,
    Place,
    fsync_dir,
    make_key,
    open_slice,
    pack_names,
    parse_key,
    record_sha256,
    scan,
    sweep,
)
from storage.packs import delete as delete_record


class StorageFullError(OSError):
    """The blob store has no room left (or is below its configured reserve); its text is
    the reason protocols pass on (a C-STORE Error Comment, a STOW-RS Warning), so it is
    short, names the setting that decides, and no server path."""

    def __str__(self) -> str:
        return str(self.strerror or "the blob store is full")


class BlobWriter(Protocol):
    """A blob being written: bytes go in, size and SHA-256 come out."""

    size: int

    def write(self, data: bytes | bytearray | memoryview) -> None: ...
    def finish(self, fsync: bool) -> None: ...
    def abandon(self) -> None: ...
    @property
    def in_memory(self) -> bytes | None: ...
    @property
    def on_disk(self) -> bool: ...
    @property
    def sha256(self) -> str: ...
    @property
    def path(self) -> Path: ...


class BlobStore(Protocol):
    def create(self) -> BlobWriter: ...
    def adopt(self, path: Path) -> BlobWriter: ...
    def commit(self, writer: BlobWriter) -> str: ...
    def place(self, writer: BlobWriter) -> str: ...
    def sync(self, keys: list[str]) -> None: ...
    def discard(self, writer: BlobWriter) -> None: ...
    def open(self, key: str) -> BinaryIO: ...
    def read_range(self, key: str, offset: int, length: int) -> bytes: ...
    def local_path(self, key: str) -> Path | None: ...
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int | None: ...
    def sha256_recorded(self, key: str) -> str | None: ...
    def delete(self, key: str) -> None: ...
    def sweep_packs(self, keys: Iterable[str] | None = None) -> int: ...
    def iter_keys(self) -> Iterator[str]: ...
    def iter_strays(self) -> Iterator[str]: ...
    def free_bytes(self) -> int: ...


#: Blobs up to this size are also kept in memory while written, so that the header
#: parse that follows does not open the file again.
SMALL_BLOB = 1 << 20


class _FileWriter:
    """The store's one memory-then-spill hashing writer: hashes bytes as they arrive;
    a blob up to ``SMALL_BLOB`` stays in memory until ``finish`` writes its file (so that
    creating the file happens off the caller's hot path, e.g. an event loop or a DIMSE
    network thread), a larger one continues in its temporary file.

    Copies of a small blob: each ``write`` appends to the writer's memory (one copy),
    ``finish`` turns that memory into the ``bytes`` the file is written from and the
    header parse reads (``in_memory``, a second copy, made once)."""

    def __init__(
        self,
        path: Path | Callable[[], Path],
        *,
        digest: hashlib._Hash | None = None,
        size: int = 0,
        on_disk: bool = False,
        keep_small: bool = False,
    ) -> None:
        # A new blob's temporary name is made when first needed (``path``): a small one
        # gets it in ``finish``, on the thread that stores it, not on the receiving one.
        self._path: Path | None = path if isinstance(path, Path) else None
        self._name_path = None if isinstance(path, Path) else path
        self._handle: BinaryIO | None = None
        self._digest = digest or hashlib.sha256()
        self._memory: bytearray | None = None if on_disk else bytearray()
        self._frozen: bytes | None = None  # the small blob, once finished
        self._on_disk = on_disk
        self._keep_small = keep_small  # a small blob is not written by ``finish`` (a pack's)
        self._finished = False
        self.size = size

    def _spill(self, data: bytes | bytearray | memoryview) -> None:
        try:
            if self._handle is None:
                path = self.path
                try:
                    self._handle = open(path, "xb")  # noqa: SIM115 - closed by finish
                except FileNotFoundError:  # its temporary folder was removed meanwhile
                    path.parent.mkdir(parents=True, exist_ok=True)
                    self._handle = open(path, "xb")  # noqa: SIM115
                self._on_disk = True
            self._handle.write(data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError(exc.errno, "no space left in the blob store") from exc
            raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._digest.update(data)
        self.size += len(data)
        if self._memory is not None:
            if self.size <= SMALL_BLOB:
                self._memory += data
                return
            held, self._memory = self._memory, None
            self._spill(held)
        self._spill(data)

    @property
    def in_memory(self) -> bytes | None:
        """After ``finish``, the whole blob when it is small (see ``SMALL_BLOB``), the same
        object each time; else ``None``."""
        return self._frozen

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def on_disk(self) -> bool:
        """Whether the blob has a temporary file of its own."""
        return self._on_disk

    @property
    def path(self) -> Path:
        if self._path is None:
            assert self._name_path is not None
            self._path = self._name_path()
        return self._path

    def finish(self, fsync: bool) -> None:
        """Write what is held in memory, flush (and optionally fsync) and close; idempotent."""
        if self._finished:
            return
        if self._memory is not None and self._handle is None:
            self._frozen = bytes(self._memory)
            self._memory = None
            if not self._keep_small:
                self._spill(self._frozen)
        if self._handle is not None:
            self._handle.flush()
            if fsync:
                os.fsync(self._handle.fileno())
            self._handle.close()
        self._finished = True

    def abandon(self) -> None:
        """Close without writing anything more; the caller removes the file."""
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
        self._memory = None
        self._frozen = None
        self._finished = True


_BLOB_FOLDERS = tuple(f"{n:03x}" for n in range(4096))
#: A blob key: 32 lowercase hexadecimal digits (a UUID4 without dashes).
_KEY = re.compile(r"[0-9a-f]{32}")
_TEMP_FOLDERS = tuple(f"{n:x}" for n in range(16))


class FileSystemBlobStore:
    """Blobs under ``root/blobs/abc/<uuid>.dcm``; temporary files under
    ``root/tmp/a/<uuid>.part`` (16 folders, each made when first needed).

    One level of 4,096 folders rather than Orthanc's two levels of 256: creating a
    folder costs about as much as writing a small blob on this class of disk, and with
    65,536 leaf folders almost every one of the first tens of thousands of stores
    creates one (measured in docs/performance.md); 4,096 folders keep ~2,500 files
    per folder at ten million instances, which ext4 and XFS index well.

    Temporary files are spread over 16 folders because one flat temporary folder that
    every blob passes through is a hot spot on ext4 (create, write and rename timed
    in docs/performance-dicomweb.md).
    """

    def __init__(
        self, root: Path, *, fsync: bool = True, min_free_bytes: int = 0, packs: bool = True
    ) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.tmp = root / "tmp"
        self.fsync = fsync
        self.min_free_bytes = min_free_bytes
        #: Small blobs go to pack files (``storage.packs``); either way every kind is read.
        self.packs = packs
        self._packs_text = str(root / "packs")
        self._pack_writer = PackWriter(self._packs_text, fsync=fsync)
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Paths as text on the store's hot path (a pathlib join or hash costs microseconds,
        # several per store); the fan-out folders known to exist, by their text.
        self._blobs_text = str(self.blobs)
        self._tmp_text = str(self.tmp)
        self._known_dirs: set[str] = set()

    def _check_room(self) -> None:
        if self.min_free_bytes and self.free_bytes() < self.min_free_bytes:
            raise StorageFullError(
                errno.ENOSPC,
                f"less than {self.min_free_bytes // 2**20} MiB free (storage.min_free_mb reserve)",
            )

    def create(self) -> _FileWriter:
        self._check_room()
        return _FileWriter(self.new_temp_path, keep_small=self.packs)

    def adopt(self, path: Path) -> _FileWriter:
        """Take over a finished file already inside ``root/tmp`` (no copy), hashing it."""
        self._check_room()
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return _FileWriter(path, digest=digest, size=size, on_disk=True)

    def new_temp_path(self) -> Path:
        """A fresh path inside the store's temporary area, for protocols that spool;
        ``adopt`` takes the file over."""
        key = uuid.uuid4().hex
        folder = f"{self._tmp_text}/{key[0]}"
        if folder not in self._known_dirs:
            os.makedirs(folder, exist_ok=True)
            self._known_dirs.add(folder)
        return Path(f"{folder}/{key}.part")

    def prepare_layout(self) -> int:
        """Create the fan-out folders that do not exist yet (all 4,096 blob folders and
        the 16 temporary ones); returns how many were made.

        A fresh store otherwise creates a folder in the path of most of its first few
        thousand stores, a sizeable share of a small instance's C-STORE on a disk
        where metadata operations are slow; ``serve`` runs this once in the
        background at start."""
        made = 0
        for root, names in ((self.blobs, _BLOB_FOLDERS), (self.tmp, _TEMP_FOLDERS)):
            existing = set(os.listdir(root))
            for name in names:
                folder = root / name
                if name not in existing:
                    folder.mkdir(exist_ok=True)
                    made += 1
                self._known_dirs.add(str(folder))
        return made

    def is_temporary(self, path: Path) -> bool:
        """Whether ``path`` lies in the store's temporary area (so ``adopt`` may move it)."""
        folder, tmp = path.resolve().parent, self.tmp.resolve()
        return folder == tmp or folder.parent == tmp

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        if not _KEY.fullmatch(key):
            raise KeyError(f"malformed blob key {key!r}")
        return f"{self._blobs_text}/{key[:3]}/{key}.dcm"

    def commit(self, writer: BlobWriter) -> str:
        """``place`` then ``sync`` the one blob: durable when this returns."""
        key = self.place(writer)
        self.sync([key])
        return key

    def place(self, writer: BlobWriter) -> str:
        """Close the blob and rename it into place, or append it to this process's pack
        when it is small and was never written to a file; returns its key. Not yet
        durable: ``sync`` makes it so (the ingest pipeline, before indexing it)."""
        writer.finish(False)
        small = writer.in_memory
        if small is not None and not writer.on_disk:
            writer.abandon()
            try:
                return self._pack_writer.append(small, writer.sha256)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StorageFullError(exc.errno, "no space left in the blob store") from exc
                raise
        # The temporary file is named by a fresh UUID already: it becomes the blob's key
        # (one UUID per blob; a generated name never comes from attribute text).
        key = writer.path.stem
        if not _KEY.fullmatch(key):
            key = uuid.uuid4().hex
        folder = f"{self._blobs_text}/{key[:3]}"
        if folder not in self._known_dirs:
            os.makedirs(folder, exist_ok=True)
            self._known_dirs.add(folder)
        os.rename(writer.path, f"{folder}/{key}.dcm")
        return key

    def sync(self, keys: list[str]) -> None:
        """Make placed blobs durable (with ``fsync``): each file's data and size
        (``fdatasync``), then each folder holding them once (their names).

        The files are synced after their rename, so that on journalling file systems
        the first ``fdatasync`` commits the renames too and the folder syncs that
        follow find nothing left to write (ext4: a cache flush each)."""
        if not self.fsync or not keys:
            return
        folders: dict[str, None] = {}
        for key in keys:
            if key[0] == "p":
                self._pack_writer.sync(key)
                continue
            path = self._file(key)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)
            folders[path.rpartition("/")[0]] = None
        for folder in folders:
            fsync_dir(folder)

    def discard(self, writer: BlobWriter) -> None:
        writer.abandon()
        if writer.on_disk:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(writer.path)

    def _packed(self, key: str) -> tuple[str, Place] | None:
        """A packed blob's pack file and place; ``None`` for a blob in a file of its own."""
        place = parse_key(key) if key[:1] == "p" else None
        if place is None:
            return None
        return f"{self._packs_text}/{place.pack}.pack", place

    def open(self, key: str) -> BinaryIO:
        packed = self._packed(key)
        if packed is not None:
            path, place = packed
            return open_slice(path, place.offset, place.length)
        return open(self._path(key), "rb")

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self.open(key) as fh:
            fh.seek(offset)
            return fh.read(length)

    def local_path(self, key: str) -> Path | None:
        """The blob's own file; ``None`` for a packed blob (read it with ``open``)."""
        return None if self._packed(key) is not None else self._path(key)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        """The blob's size in bytes, ``None`` when it does not exist."""
        try:
            packed = self._packed(key)
            if packed is None:
                return self._path(key).stat().st_size
            path, place = packed
            return place.length if record_sha256(path, place.offset, place.length) else None
        except (KeyError, FileNotFoundError, NotADirectoryError):
            return None

    def sha256_recorded(self, key: str) -> str | None:
        """The SHA-256 a packed blob's record holds (``None``: not packed, or unknown):
        what a blob read back from a pack after a power cut is checked against."""
        packed = self._packed(key)
        if packed is None:
            return None
        path, place = packed
        return record_sha256(path, place.offset, place.length)

    def delete(self, key: str) -> None:
        packed = self._packed(key)
        if packed is not None:
            path, place = packed
            delete_record(path, place.offset, place.length)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(key))

    def iter_keys(self) -> Iterator[str]:
        """Keys of the blobs laid out as this store writes them (``abc/<key>.dcm``), then
        of the live records of every pack."""
        for path in sorted(self.blobs.glob("???/*.dcm")):
            if self._is_blob_path(path):
                yield path.stem
        for name in pack_names(self._packs_text):
            for record in scan(f"{self._packs_text}/{name}.pack"):
                if record.live:
                    yield make_key(name, record.offset, record.length)

    def _is_blob_path(self, path: Path) -> bool:
        try:
            return self._path(path.stem) == path
        except KeyError:
            return False

    def iter_strays(self) -> Iterator[str]:
        """Files under the blob folder that this store did not lay out (copied in by
        hand, renamed, in an unexpected folder), relative to it; never blobs."""
        for path in sorted(self.blobs.rglob("*")):
            if path.is_file() and not self._is_blob_path(path):
                yield str(path.relative_to(self.blobs))

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def sweep_packs(self, keys: Iterable[str] | None = None) -> int:
        """Remove the packs whose every record was deleted and no process writes to:
        those holding ``keys`` (blobs just deleted), or all; how many."""
        names = None
        if keys is not None:
            names = {place.pack for key in keys if (place := parse_key(key)) is not None}
            if not names:
                return 0
        return sweep(self._packs_text, names)

    def clean_temporary(self, older_than: float = 3600.0) -> int:
        """Remove leftovers of interrupted writes older than ``older_than`` seconds.

        The age guard keeps files other processes sharing the store are writing now.
        """
        count = 0
        limit = time.time() - older_than
        for path in [*self.tmp.glob("*.part"), *self.tmp.glob("?/*.part")]:
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    count += 1
            except FileNotFoundError:
                pass
        return count
