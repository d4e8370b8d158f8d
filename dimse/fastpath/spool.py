"""Where pynetdicom writes a received C-STORE data set: memory up to a size, then disk.

pynetdicom's chunked receive (``STORE_RECV_CHUNKED_DATASET``, on so that a large
object never sits whole in memory) writes every data set to a ``NamedTemporaryFile``
in the system's temporary folder, flushing after each P-DATA fragment, and hands the
handler its path. For the small and medium objects that make up most traffic that
costs a file creation, a write and flush per 16 KiB fragment (32 for a 512x512 CT
slice) in the network thread, and a rename into the store.

An association accepted by Noctis instead gets a :class:`ReceiveSpool` in place of
that temporary file (pynetdicom looks ``NamedTemporaryFile`` up in its module when
a data set begins): fragments collect in memory up to ``limit`` bytes; beyond that the
spool continues in a file inside the store's temporary area, whose path it had from
the start, hashing what it writes. The C-STORE handler then stores the bytes
(``Archive.begin_blob``) or adopts the file without a copy and without reading it
again to hash it. Associations without a spool (pynetdicom used as a
client in the same process) keep pynetdicom's own temporary file.

pynetdicom also writes each spool's Part 10 header through pydicom
(``create_file_meta`` then ``write_file_meta_info``), about a twelfth of the CPU a
small C-STORE costs; for a spool the same bytes are written directly
(:func:`file_meta_bytes`, PS3.10 7.1, Explicit VR Little Endian).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import pynetdicom.dimse_messages
from pydicom.filewriter import write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta

from dimse.fastpath.command import text, uid
from dimse.fastpath.encoded import encode_elements
from storage.archive import SMALL_BLOB
from storage.blobstore import WrittenFile

#: Data sets up to this size are received in memory (one per association at a time),
#: the bound under which the blob writer also keeps a blob in memory.
MEMORY_LIMIT = SMALL_BLOB
#: The attribute on a DUL thread that holds its association's spool factory.
_ATTRIBUTE = "_noctis_spool"
#: The name under which pynetdicom's DIMSE message module imports the factory.
_FACTORY = "NamedTemporaryFile"
#: The names under which it imports the two functions that write a receive file's header.
_CREATE_META = "create_file_meta"
_WRITE_META = "write_file_meta_info"


class ReceiveSpool:
    """The file-like object pynetdicom writes one received data set into (it uses
    ``write``, ``file.flush``, ``close`` and ``name``). Past ``limit`` bytes the data set
    continues in its file, hashed as it is written, so that the store adopts the file
    without reading it again (``written``)."""

    def __init__(self, path: Path | Callable[[], Path], limit: int = MEMORY_LIMIT) -> None:
        # A callable names the file only when one is needed: most data sets stay in
        # memory, and a fresh name in the store costs a UUID and path work.
        self._path = path if isinstance(path, Path) else None
        self._make_path = path if not isinstance(path, Path) else None
        self.limit = limit
        self._memory: bytearray | None = bytearray()
        self._size = 0
        self._handle: BinaryIO | None = None
        self._digest: Any = None  # hashlib's SHA-256 once the file is being written
        self._closed = False

    @property
    def path(self) -> Path:
        """Where the data set is spooled once it outgrows memory."""
        if self._path is None:
            assert self._make_path is not None
            self._path = self._make_path()
        return self._path

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def file(self) -> ReceiveSpool:
        return self  # pynetdicom flushes ``spool.file`` after each fragment

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._memory is not None:
            self._memory += data
            if self._size > self.limit:
                held, self._memory = self._memory, None
                self._digest = hashlib.sha256()
                self._handle = open(self.path, "xb")  # noqa: SIM115 - closed by close()
                self._write_out(held)
        else:
            self._write_out(data)
        return len(data)

    def _write_out(self, data: bytes | bytearray) -> None:
        assert self._handle is not None
        self._handle.write(data)
        self._digest.update(data)

    def flush(self) -> None:
        """Nothing per fragment: the handler reads the data set after ``close``."""

    def close(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
        self._closed = True

    @property
    def in_memory(self) -> bytearray | None:
        """The whole data set (Part 10, as pynetdicom wrote it) while it fits in memory."""
        return self._memory

    @property
    def written(self) -> WrittenFile | None:
        """After ``close``, for a data set that outgrew memory: the hash and size of the
        file at ``path`` that holds it; ``None`` while it is in memory."""
        if not self._closed or self._digest is None:
            return None
        return WrittenFile(digest=self._digest, size=self._size)

    def discard(self) -> None:
        """Drop what was received (an aborted or refused transfer), and the file if one
        was written and is still there."""
        self.close()
        self._memory = None
        if self._path is not None:
            with contextlib.suppress(OSError):
                self._path.unlink()


class FileMeta(NamedTuple):
    """The values of a received data set's File Meta Information (pynetdicom's)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID
    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION


def file_meta_bytes(meta: FileMeta) -> bytes:
    """The File Meta Information group (PS3.10 Table 7.1-1) that pydicom's
    ``write_file_meta_info`` writes for pynetdicom's ``create_file_meta``: version
    00 01, the SOP class and instance, the transfer syntax, the implementation class
    UID and version name, behind the group length (Explicit VR Little Endian)."""
    body = encode_elements(
        [
            (0x00020001, "OB", b"\x00\x01"),
            (0x00020002, "UI", uid(meta.sop_class_uid)),
            (0x00020003, "UI", uid(meta.sop_instance_uid)),
            (0x00020010, "UI", uid(meta.transfer_syntax)),
            (0x00020012, "UI", uid(meta.implementation_uid)),
            (0x00020013, "SH", text(meta.implementation_version)),
        ],
        implicit_vr=False,
    )
    assert body is not None  # every value is far below the 2-byte length limit
    length = encode_elements([(0x00020000, "UL", struct.pack("<I", len(body)))], implicit_vr=False)
    assert length is not None
    return length + body


def _create_meta(**kwargs: Any) -> Any:
    """Stands in for ``create_file_meta``: the plain values on a thread with a spool."""
    if getattr(threading.current_thread(), _ATTRIBUTE, None) is None:
        return create_file_meta(**kwargs)
    return FileMeta(**{k: str(v) for k, v in kwargs.items() if k in FileMeta._fields})


def _write_meta(fp: Any, file_meta: Any, *args: Any, **kwargs: Any) -> None:
    """Stands in for ``write_file_meta_info``: ``FileMeta`` values as bytes."""
    if isinstance(file_meta, FileMeta):
        fp.write(file_meta_bytes(file_meta))
    else:
        write_file_meta_info(fp, file_meta, *args, **kwargs)


def _receive_file(*args: Any, **kwargs: Any) -> Any:
    """Stands in for ``NamedTemporaryFile`` in pynetdicom's DIMSE message module: a
    spool for associations that have one (the DUL thread decodes the message)."""
    spool_for = getattr(threading.current_thread(), _ATTRIBUTE, None)
    if spool_for is None:
        return tempfile.NamedTemporaryFile(*args, **kwargs)  # noqa: SIM115 - pynetdicom's
    return spool_for()


_install_lock = threading.Lock()


def install() -> None:
    """Route pynetdicom's creation of receive files, and of their headers, through the
    functions above (once)."""
    with _install_lock:
        for name, replacement in (
            (_FACTORY, _receive_file),
            (_CREATE_META, _create_meta),
            (_WRITE_META, _write_meta),
        ):
            if getattr(pynetdicom.dimse_messages, name) is not replacement:
                setattr(pynetdicom.dimse_messages, name, replacement)


def attach(assoc: Any, spool_path: Callable[[], Path], limit: int = MEMORY_LIMIT) -> None:
    """Receive this association's data sets into spools whose files (when they grow past
    ``limit``) lie at ``spool_path()``, inside the store."""
    install()
    setattr(assoc.dul, _ATTRIBUTE, lambda: ReceiveSpool(spool_path, limit))


def open_spool(dul: Any, meta: FileMeta) -> ReceiveSpool | None:
    """A spool for a data set arriving on ``dul``'s association, its Part 10 preamble and
    File Meta Information written as pynetdicom writes them; ``None`` when the association
    has no spool."""
    spool_for = getattr(dul, _ATTRIBUTE, None)
    if spool_for is None:
        return None
    received: ReceiveSpool = spool_for()
    received.write(b"\x00" * 128 + b"DICM" + file_meta_bytes(meta))
    return received


def received(request: C_STORE) -> ReceiveSpool | None:
    """The spool a C-STORE request's data set was received into (``None``: pynetdicom's
    own receive file, at ``event.dataset_path``)."""
    found = getattr(request, "_dataset_file", None)
    return found if isinstance(found, ReceiveSpool) else None
