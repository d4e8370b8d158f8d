"""Where a received C-STORE data set goes: a blob of the store, written as it arrives.

pynetdicom's chunked receive (``STORE_RECV_CHUNKED_DATASET``, on so that a large
object never sits whole in memory) writes every data set to a ``NamedTemporaryFile``
in the system's temporary folder, behind a Part 10 header it writes through pydicom,
flushing after each P-DATA fragment, and hands the handler its path.

An association accepted with the fast path gets a :class:`ReceiveSpool` instead: a
thin front (``write``, ``file.flush``, ``close``, ``name``, as pynetdicom uses its
temporary file) for a blob writer of the store (``Archive.begin_blob``), the store's
one memory-then-spill hashing writer: the bytes stay in memory up to ``SMALL_BLOB``,
then continue in the blob's temporary file inside the store, and the C-STORE handler
hands the writer to the store (``Archive.store_blob``), which neither copies nor
hashes the bytes again. The Part 10 header is the store's (``storage.part10``), with
pynetdicom's implementation values as before.

Copies of a small instance on this receive path: each PDU is read from the socket into
one buffer (``pdu.PduReader``: the receive itself); each PDV fragment, a view of that
buffer, is appended to the blob writer's memory (copy 1); the store's ``finish``
turns that memory into the bytes its file is written from and its header parse reads
(copy 2). Nothing else copies the data set (``tests/test_dimse_spool.py``).

``receive`` opens a spool for each C-STORE it decodes itself (:func:`open_spool`);
pynetdicom's own decoding (the messages ``receive`` leaves to it) finds the spool
where it looks up ``NamedTemporaryFile``, and the header values where it looks up
``create_file_meta`` and ``write_file_meta_info``. Associations without a spool
(pynetdicom used as a client in the same process) keep pynetdicom's own temporary
file and header.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import pynetdicom.dimse_messages
from pydicom.filewriter import write_file_meta_info
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta
from pynetdicom.dul import DULServiceProvider

from storage.archive import BlobWriter, StorageFullError, file_header

#: The attribute on a DUL thread that holds its association's spool factory.
_ATTRIBUTE = "_noctis_spool"
#: The name under which pynetdicom's DIMSE message module imports the factory.
_FACTORY = "NamedTemporaryFile"
#: The names under which it imports the two functions that write a receive file's header.
_CREATE_META = "create_file_meta"
_WRITE_META = "write_file_meta_info"
#: What pynetdicom writes before the File Meta Information: the preamble and "DICM".
_PREAMBLE_SIZE = 132


class Blobs(Protocol):
    """What a spool needs of the archive."""

    def begin_blob(self) -> BlobWriter: ...

    def abort_blob(self, writer: BlobWriter) -> None: ...


class FileMeta(NamedTuple):
    """The values of a received data set's File Meta Information (pynetdicom's)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID
    implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION


def _header_values(meta: FileMeta) -> dict[str, str]:
    return {
        "sop_class_uid": meta.sop_class_uid,
        "sop_instance_uid": meta.sop_instance_uid,
        "transfer_syntax_uid": meta.transfer_syntax,
        "implementation_class_uid": meta.implementation_uid,
        "implementation_version_name": meta.implementation_version,
    }


class ReceiveSpool:
    """The file-like object one received data set is written into: a blob writer of the
    store. A store without room (at the start or while spilling) leaves the spool
    failed: later bytes are dropped and the handler answers out of resources."""

    def __init__(self, blobs: Blobs) -> None:
        self._blobs = blobs
        self.writer: BlobWriter | None = None
        self.error: StorageFullError | None = None
        self._preamble = 0  # bytes of pynetdicom's preamble seen before its header
        try:
            self.writer = blobs.begin_blob()
        except StorageFullError as exc:
            self.error = exc

    @property
    def name(self) -> str:
        """The blob's temporary path (pynetdicom records it; the handler never reads it)."""
        if self.writer is not None:
            return str(self.writer.path)
        # A name no file has (pynetdicom removes the file of this name after the handler).
        return f"{tempfile.gettempdir()}/noctis-store-full-{id(self):x}-{time.monotonic_ns()}"

    @property
    def file(self) -> ReceiveSpool:
        return self  # pynetdicom flushes ``spool.file`` after each fragment

    def begin(self, meta: FileMeta) -> None:
        """Write the Part 10 header: preamble, prefix and File Meta Information."""
        self._write(file_header(**_header_values(meta)))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._preamble < _PREAMBLE_SIZE and self.writer is not None and not self.writer.size:
            # pynetdicom writes the preamble and "DICM" itself before the header: the
            # store's header writer writes them (``begin``).
            self._preamble += len(data)
            return len(data)
        self._write(data)
        return len(data)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self.writer is None:
            return
        try:
            self.writer.write(data)
        except StorageFullError as exc:
            self.error = exc
            self.discard()

    def flush(self) -> None:
        """Nothing per fragment: the handler reads the data set after ``close``."""

    def close(self) -> None:
        """Nothing to close: the store finishes the blob (``take``)."""

    def take(self) -> BlobWriter | None:
        """The blob writer, handed to the store (which commits or discards it)."""
        writer, self.writer = self.writer, None
        return writer

    def discard(self) -> None:
        """Drop what was received (an aborted or refused transfer, a full store)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            self._blobs.abort_blob(writer)


def _create_meta(**kwargs: Any) -> Any:
    """Stands in for ``create_file_meta``: the plain values on a thread with a spool."""
    if getattr(threading.current_thread(), _ATTRIBUTE, None) is None:
        return create_file_meta(**kwargs)
    return FileMeta(**{k: str(v) for k, v in kwargs.items() if k in FileMeta._fields})


def _write_meta(fp: Any, file_meta: Any, *args: Any, **kwargs: Any) -> None:
    """Stands in for ``write_file_meta_info``: the store's header for a spool."""
    if isinstance(fp, ReceiveSpool) and isinstance(file_meta, FileMeta):
        fp.begin(file_meta)
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


def attach(assoc: Association, blobs: Blobs) -> None:
    """Receive this association's data sets into blobs of the store."""
    install()
    factory: Callable[[], ReceiveSpool] = lambda: ReceiveSpool(blobs)  # noqa: E731
    setattr(assoc.dul, _ATTRIBUTE, factory)


def open_spool(dul: DULServiceProvider, meta: FileMeta) -> ReceiveSpool | None:
    """A spool for a data set arriving on ``dul``'s association, its Part 10 header
    written; ``None`` when the association has no spool."""
    spool_for: Callable[[], ReceiveSpool] | None = getattr(dul, _ATTRIBUTE, None)
    if spool_for is None:
        return None
    received = spool_for()
    received.begin(meta)
    return received


def received(request: C_STORE) -> ReceiveSpool | None:
    """The spool a C-STORE request's data set was received into (``None``: pynetdicom's
    own receive file, at ``event.dataset_path``)."""
    found = getattr(request, "_dataset_file", None)
    return found if isinstance(found, ReceiveSpool) else None
