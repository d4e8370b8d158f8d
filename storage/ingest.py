"""The one store pipeline, for every origin (DIMSE, STOW-RS, CLI import).

write the blob (hashing as bytes arrive) -> parse the header once -> check it is
what the sender said it sends (DIMSE: the C-STORE's SOP Class and Instance UIDs) ->
de-duplicate on SOP Instance UID -> commit the blob -> index it in one
transaction (group-committed) -> remove the blob if indexing failed ->
return a typed outcome that each protocol maps to its own status.

A data set that arrives without its Part 10 header (DIMSE) gets it from
``storage.part10`` (``begin_received``, ``store_received_file``), the store's one
header writer; the bytes go through the blob store's one writer.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import __version_info__ as pydicom_version
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from noctis_pacs.core.facility import FROM_ATTRIBUTE, storing_facility
from noctis_pacs.core.routing import RECEIVED
from storage.blobstore import BlobWriter, FileSystemBlobStore, StorageFullError
from storage.db import Connection
from storage.index import (
    HierarchyConflict,
    Q,
    build_record,
    insert_instance,
    remove_instance,
    text_of,
)
from storage.parse import (
    IDENTITY_HEAD,
    ParsedInstance,
    ParseError,
    header_metadata,
    read_header,
    sop_identity,
)
from storage.part10 import data_set_offset, file_header
from storage.routing import RoutingStore
from storage.writer import IndexWriter

log = logging.getLogger("noctis.storage.ingest")

CHUNK = 1 << 20


class Status(enum.Enum):
    STORED = "stored"
    ALREADY_STORED = "already_stored"
    REJECTED = "rejected"
    STORAGE_FULL = "storage_full"
    #: The index could not be reached or written (database down, restarting); retry.
    UNAVAILABLE = "index_unavailable"
    FAILED = "failed"


class RejectKind(enum.Enum):
    """Why an instance was refused; protocols map these to their failure codes."""

    NOT_DICOM = "not_dicom"  # DIMSE 0xC000 range, STOW 0xC000
    TRUNCATED = "truncated"
    MISSING_ATTRIBUTE = "missing"  # DIMSE 0xA900, STOW 0xA900 / 0xC000
    MISMATCH = "mismatch"  # header contradicts itself or the request (STOW 0xA900 / 0xC122)
    STUDY_MISMATCH = "study_mismatch"
    CLASS_MISMATCH = "class_mismatch"  # not the SOP class the sender named (DIMSE 0xA900)
    INSTANCE_MISMATCH = "instance_mismatch"  # not the instance it named (DIMSE 0xC000 range)
    CONFLICT = "conflict"  # contradicts the stored hierarchy (DIMSE / STOW 0xA900)
    INVALID_UID = "invalid_uid"  # a UID the read side could not name (DIMSE / STOW 0xA900)


@dataclass(frozen=True)
class Expected:
    """What the sender said it sends: a C-STORE's Affected SOP Class and Instance UIDs
    (PS3.4 B.2.3, PS3.7 9.1.1), checked against the data set after its header parse."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Implementation:
    """Who wrote a received file's header: (0002,0012) and (0002,0013)."""

    class_uid: str
    version_name: str = ""


#: The values pydicom writes when none are given (``store_dataset_bytes``).
PYDICOM = Implementation(
    PYDICOM_IMPLEMENTATION_UID, "PYDICOM " + ".".join(str(p) for p in pydicom_version)
)


@dataclass(frozen=True)
class Origin:
    """Who sent an instance: protocol (dimse, stow, import), remote AE or HTTP client."""

    protocol: str
    ae: str = ""
    host: str = ""
    #: The storing principal's facilities (``access.facility_from = "principal"``).
    facilities: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, str]:
        return {"protocol": self.protocol, "ae": self.ae, "host": self.host}


@dataclass
class StoreOutcome:
    status: Status
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    transfer_syntax_uid: str = ""
    reason: str = ""
    reject_kind: RejectKind | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (Status.STORED, Status.ALREADY_STORED)


class Ingestor:
    """Holds the blob store and the index writer; ``store_*`` are thread-safe."""

    def __init__(
        self,
        blobs: FileSystemBlobStore,
        writer: IndexWriter,
        *,
        overwrite: bool = True,
        facility_attribute: str = "InstitutionName",
        facility_from: str = FROM_ATTRIBUTE,
    ) -> None:
        self.blobs = blobs
        self.writer = writer
        self.overwrite = overwrite
        self.facility_attribute = facility_attribute
        self.facility_from = facility_from
        self.fault_after_blob_commit: Exception | None = None  # test hook: failure injection
        #: Notes each stored instance for routing rules, in its index transaction.
        self.routing: RoutingStore | None = None

    def facility_of(self, metadata: dict[str, Any], origin: Origin) -> str:
        """The facility a study created by this instance belongs to (``[access]``)."""
        value = text_of(metadata, self.facility_attribute) if self.facility_attribute else ""
        return storing_facility(
            value, principal_facilities=origin.facilities, facility_from=self.facility_from
        )

    # -- entry points -----------------------------------------------------------------

    def store_stream(
        self, stream: BinaryIO, origin: Origin, *, expected_study_uid: str | None = None
    ) -> StoreOutcome:
        """Store a Part 10 byte stream (read in chunks, never whole in memory)."""
        return self._stream_to_blob(stream, origin, expected_study_uid, None)

    def _stream_to_blob(
        self,
        stream: BinaryIO,
        origin: Origin,
        expected_study_uid: str | None,
        expected: Expected | None,
    ) -> StoreOutcome:
        try:
            writer = self.blobs.create()
        except StorageFullError as exc:
            return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
        return self._write_rest(writer, stream, origin, expected_study_uid, expected)

    def _write_rest(
        self,
        writer: BlobWriter,
        stream: BinaryIO,
        origin: Origin,
        expected_study_uid: str | None,
        expected: Expected | None,
    ) -> StoreOutcome:
        try:
            while chunk := stream.read(CHUNK):
                writer.write(chunk)
        except StorageFullError as exc:
            return self._full(writer, exc)
        except Exception:
            self.blobs.discard(writer)
            raise
        return self._finish(writer, origin, expected_study_uid, expected)

    def begin(self) -> BlobWriter:
        """A blob to write as bytes arrive (hashed on the fly); then ``finish`` or ``abort``.

        Raises ``StorageFullError`` when the store has no room.
        """
        return self.blobs.create()

    def begin_received(
        self, expected: Expected, *, transfer_syntax_uid: str, implementation: Implementation
    ) -> BlobWriter:
        """A blob for a data set arriving without its Part 10 header (a DIMSE C-STORE):
        the header is written first (``storage.part10``), the caller writes the data set
        bytes as they arrive, then ``finish`` with ``expected``. Raises
        ``StorageFullError``."""
        writer = self.blobs.create()
        try:
            writer.write(
                file_header(
                    sop_class_uid=expected.sop_class_uid,
                    sop_instance_uid=expected.sop_instance_uid,
                    transfer_syntax_uid=transfer_syntax_uid,
                    implementation_class_uid=implementation.class_uid,
                    implementation_version_name=implementation.version_name,
                )
            )
        except BaseException:
            self.blobs.discard(writer)
            raise
        return writer

    def finish(
        self,
        writer: BlobWriter,
        origin: Origin,
        *,
        expected_study_uid: str | None = None,
        expected: Expected | None = None,
        replace: bool = False,
    ) -> StoreOutcome:
        """Run the pipeline on a blob written through ``begin`` or ``begin_received``;
        ``replace`` replaces an instance with the same SOP Instance UID whatever
        ``storage.duplicates`` says (a modification that keeps the UIDs)."""
        return self._finish(writer, origin, expected_study_uid, expected, replace=replace)

    def store_received_file(
        self,
        path: Path,
        expected: Expected,
        *,
        transfer_syntax_uid: str,
        implementation: Implementation,
        origin: Origin,
    ) -> StoreOutcome:
        """Store the data set of a Part 10 file another library received (pynetdicom's
        receive file): behind this store's own header, the data set bytes copied from
        after the file's File Meta Information."""
        with open(path, "rb") as fh:
            offset = data_set_offset(fh.read(1 << 16))
            fh.seek(offset if offset is not None else 0)
            if offset is None:  # no header of its own: stored as it is, then checked
                return self._stream_to_blob(fh, origin, None, expected)
            try:
                writer = self.begin_received(
                    expected, transfer_syntax_uid=transfer_syntax_uid, implementation=implementation
                )
            except StorageFullError as exc:
                return _full_outcome(exc, expected)
            return self._write_rest(writer, fh, origin, None, expected)

    def abort(self, writer: BlobWriter) -> None:
        self.blobs.discard(writer)

    def store_bytes(
        self, data: bytes, origin: Origin, *, expected_study_uid: str | None = None
    ) -> StoreOutcome:
        return self.store_stream(BytesIO(data), origin, expected_study_uid=expected_study_uid)

    def store_path(
        self,
        path: Path,
        origin: Origin,
        *,
        move: bool = False,
        expected_study_uid: str | None = None,
        replace: bool = False,
    ) -> StoreOutcome:
        """Store a file; with ``move`` a spooled file inside the store's tmp area is adopted
        (hashed, not copied); ``replace`` as in :meth:`finish` (with ``move`` only)."""
        if move and self.blobs.is_temporary(path):
            try:
                writer = self.blobs.adopt(path)
            except StorageFullError as exc:
                path.unlink(missing_ok=True)
                return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
            return self._finish(writer, origin, expected_study_uid, replace=replace)
        with open(path, "rb") as fh:
            return self.store_stream(fh, origin, expected_study_uid=expected_study_uid)

    def store_dataset_bytes(
        self,
        dataset: bytes | Iterable[bytes],
        *,
        transfer_syntax_uid: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        origin: Origin,
        implementation_class_uid: str = "",
    ) -> StoreOutcome:
        """Store an encoded dataset (as a DIMSE peer sent it) behind a new Part 10 header
        (``storage.part10``; pydicom's implementation values unless one is given)."""
        implementation = (
            Implementation(implementation_class_uid) if implementation_class_uid else PYDICOM
        )
        expected = Expected(sop_class_uid, sop_instance_uid)
        try:
            writer = self.begin_received(
                expected, transfer_syntax_uid=transfer_syntax_uid, implementation=implementation
            )
        except StorageFullError as exc:
            return _full_outcome(exc, expected)
        try:
            chunks = [dataset] if isinstance(dataset, bytes | bytearray | memoryview) else dataset
            for chunk in chunks:
                writer.write(chunk)
        except StorageFullError as exc:
            self.blobs.discard(writer)
            return _full_outcome(exc, expected)
        return self._finish(writer, origin, None, None)

    # -- the pipeline -----------------------------------------------------------------

    def _full(self, writer: BlobWriter, exc: StorageFullError) -> StoreOutcome:
        """The storage-full outcome of a blob written so far (then discarded), naming the
        instance when its first bytes do (PS3.18 Table 10.5.3-3)."""
        sop_class, sop_instance = sop_identity(_head_of(writer))
        self.blobs.discard(writer)
        return StoreOutcome(
            Status.STORAGE_FULL,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            reason=str(exc),
        )

    def _finish(
        self,
        writer: BlobWriter,
        origin: Origin,
        expected_study_uid: str | None,
        expected: Expected | None = None,
        *,
        replace: bool = False,
    ) -> StoreOutcome:
        try:
            return self._finish_inner(writer, origin, expected_study_uid, expected, replace)
        except StorageFullError as exc:
            return self._full(writer, exc)
        except Exception as exc:
            self.blobs.discard(writer)
            if self.writer.db.is_unavailable(exc):
                # Expected while the database restarts: one line, no traceback.
                reason = f"the index is unavailable ({type(exc).__name__}); retry later"
                log.warning("store refused: %s", reason)
                return StoreOutcome(Status.UNAVAILABLE, reason=reason)
            log.exception("store failed")
            return StoreOutcome(Status.FAILED, reason=f"internal error: {type(exc).__name__}")

    def _finish_inner(
        self,
        writer: BlobWriter,
        origin: Origin,
        expected_study_uid: str | None,
        expected: Expected | None,
        replace: bool = False,
    ) -> StoreOutcome:
        size = writer.size
        writer.finish(False)  # made durable after its rename into place, below
        small = writer.in_memory
        with BytesIO(small) if small is not None else open(writer.path, "rb") as fh:
            try:
                parsed = read_header(fh, size, small)
            except ParseError as exc:
                self.blobs.discard(writer)
                return StoreOutcome(
                    Status.REJECTED, reason=exc.reason, reject_kind=RejectKind(exc.kind)
                )
        outcome = _outcome_for(parsed)
        mismatch = _identity_mismatch(parsed, expected)
        if mismatch is not None:
            self.blobs.discard(writer)
            outcome.status = Status.REJECTED
            outcome.reject_kind, outcome.reason = mismatch
            return outcome
        if expected_study_uid is not None and parsed.study_uid != expected_study_uid:
            self.blobs.discard(writer)
            outcome.status = Status.REJECTED
            outcome.reject_kind = RejectKind.STUDY_MISMATCH
            outcome.reason = (
                f"Study Instance UID {parsed.study_uid} differs from the study "
                f"{expected_study_uid} in the request"
            )
            return outcome
        sha256 = writer.sha256
        metadata = header_metadata(parsed)
        key = self.blobs.place(writer)
        # Durable before the index row is written (fsync = "always"); each storing thread
        # syncs its own blob, so concurrent stores sync in parallel and the file system
        # joins them into one journal commit (a leader syncing a batch one file after
        # the other measured slower: docs/performance.md, issue 15).
        try:
            self.blobs.sync([key])
        except OSError:
            self.blobs.delete(key)
            raise
        record = build_record(
            parsed,
            metadata=metadata,
            blob_key=key,
            blob_size=size,
            sha256=sha256,
            origin=origin.as_dict(),
            facility=self.facility_of(metadata, origin),
        )
        fault = self.fault_after_blob_commit
        overwrite = self.overwrite or replace
        routing = self.routing

        def index(conn: Connection) -> tuple[str, str | None]:
            """De-duplicate inside the transaction (no separate look-up beforehand)."""
            row = conn.one(Q("instance_by_sop"), {"sop_uid": parsed.sop_instance_uid})
            replaced: str | None = None
            if row is not None:
                if (row[5], row[4]) != (parsed.study_uid, parsed.series_uid):
                    # Whatever storage.duplicates says: the instance cannot move.
                    return "conflict", _moved_reason(row[5], row[4], parsed)
                if row[2] == sha256:
                    return "identical", None
                if not overwrite:
                    return "kept", None
                replaced = str(row[1])
                remove_instance(conn, row[0], row[3])
            insert_instance(conn, record)
            if routing is not None:
                routing.record(
                    conn,
                    on=RECEIVED,
                    study_uid=parsed.study_uid,
                    sop_uid=parsed.sop_instance_uid,
                    calling_ae=origin.ae,
                )
            if fault is not None:
                raise fault
            return "stored", replaced

        try:
            result, replaced = self.writer.run(index)
        except HierarchyConflict as exc:
            result, replaced = "conflict", exc.reason
        except Exception:
            self.blobs.delete(key)
            raise
        if result == "conflict":
            # Nothing was written (the transaction's writes rolled back): refused.
            self.blobs.delete(key)
            outcome.status = Status.REJECTED
            outcome.reject_kind = RejectKind.CONFLICT
            outcome.reason = replaced
            return outcome
        if result != "stored":
            self.blobs.delete(key)
            outcome.status = Status.ALREADY_STORED
            outcome.reason = (
                "identical instance already stored"
                if result == "identical"
                else "instance already stored; duplicates policy keeps the first"
            )
            return outcome
        if replaced:
            self.blobs.delete(replaced)
            outcome.warnings.append("replaced an earlier instance with the same SOP Instance UID")
        outcome.status = Status.STORED
        return outcome


def _moved_reason(study_uid: str, series_uid: str, parsed: ParsedInstance) -> str:
    """Why an instance whose SOP Instance UID is stored elsewhere in the hierarchy is
    refused (PS3.3 C.12.1: a SOP Instance UID names one instance, in one series)."""
    where = (
        f"another study ({study_uid})"
        if study_uid != parsed.study_uid
        else f"another series ({series_uid}) of this study"
    )
    return (
        f"SOP Instance UID {parsed.sop_instance_uid} is stored in {where};"
        " delete it there first to move it"
    )


def _full_outcome(exc: StorageFullError, expected: Expected) -> StoreOutcome:
    """The storage-full outcome of an instance the sender named (a DIMSE C-STORE)."""
    return StoreOutcome(
        Status.STORAGE_FULL,
        sop_class_uid=expected.sop_class_uid,
        sop_instance_uid=expected.sop_instance_uid,
        reason=str(exc),
    )


def _head_of(writer: BlobWriter) -> bytes:
    """The first bytes written to ``writer`` (as far as they reached the disk)."""
    small = writer.in_memory
    if small is not None:
        return small[:IDENTITY_HEAD]
    try:
        with open(writer.path, "rb") as fh:
            return fh.read(IDENTITY_HEAD)
    except OSError:
        return b""


def _outcome_for(parsed: ParsedInstance) -> StoreOutcome:
    return StoreOutcome(
        Status.FAILED,
        sop_class_uid=parsed.sop_class_uid,
        sop_instance_uid=parsed.sop_instance_uid,
        study_uid=parsed.study_uid,
        series_uid=parsed.series_uid,
        transfer_syntax_uid=parsed.transfer_syntax_uid,
        warnings=list(parsed.warnings),
    )


def _identity_mismatch(
    parsed: ParsedInstance, expected: Expected | None
) -> tuple[RejectKind, str] | None:
    """PS3.4 B.2.3 / PS3.7 9.1.1: the data set must be the instance the request names."""
    if expected is None:
        return None
    if parsed.sop_class_uid != expected.sop_class_uid:
        return RejectKind.CLASS_MISMATCH, "SOP Class UID differs from Affected SOP Class UID"
    if parsed.sop_instance_uid != expected.sop_instance_uid:
        return (
            RejectKind.INSTANCE_MISMATCH,
            "SOP Instance UID differs from Affected SOP Inst UID",
        )
    return None
