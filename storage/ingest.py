"""The one store pipeline, for every origin (DIMSE, STOW-RS, CLI import).

write the blob (hashing as bytes arrive) -> parse the header once ->
de-duplicate on SOP Instance UID -> commit the blob -> index it in one
transaction (group-committed) -> remove the blob if indexing failed ->
return a typed outcome that each protocol maps to its own status.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID

from noctis_pacs.core.facility import FROM_ATTRIBUTE, storing_facility
from storage.blobstore import BlobWriter, FileSystemBlobStore, StorageFullError, WrittenFile
from storage.db import Connection
from storage.index import Q, build_record, insert_instance, remove_instance, text_of
from storage.parse import ParsedInstance, ParseError, header_metadata, read_header
from storage.writer import IndexWriter

log = logging.getLogger("noctis.storage.ingest")

CHUNK = 1 << 20


class Status(enum.Enum):
    STORED = "stored"
    ALREADY_STORED = "already_stored"
    REJECTED = "rejected"
    STORAGE_FULL = "storage_full"
    FAILED = "failed"


class RejectKind(enum.Enum):
    """Why an instance was refused; protocols map these to their failure codes."""

    NOT_DICOM = "not_dicom"  # DIMSE 0xC000 range, STOW 0xC000
    TRUNCATED = "truncated"
    MISSING_ATTRIBUTE = "missing"  # DIMSE 0xA900, STOW 0xA900 / 0xC000
    MISMATCH = "mismatch"  # header contradicts itself or the request (STOW 0xA900 / 0xC122)
    STUDY_MISMATCH = "study_mismatch"


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
        try:
            writer = self.blobs.create()
        except StorageFullError as exc:
            return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
        try:
            while chunk := stream.read(CHUNK):
                writer.write(chunk)
        except StorageFullError as exc:
            self.blobs.discard(writer)
            return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
        except Exception:
            self.blobs.discard(writer)
            raise
        return self._finish(writer, origin, expected_study_uid)

    def begin(self) -> BlobWriter:
        """A blob to write as bytes arrive (hashed on the fly); then ``finish`` or ``abort``.

        Raises ``StorageFullError`` when the store has no room.
        """
        return self.blobs.create()

    def finish(
        self, writer: BlobWriter, origin: Origin, *, expected_study_uid: str | None = None
    ) -> StoreOutcome:
        """Run the pipeline on a blob written through ``begin``."""
        return self._finish(writer, origin, expected_study_uid)

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
        written: WrittenFile | None = None,
    ) -> StoreOutcome:
        """Store a file; with ``move`` a spooled file inside the store's tmp area is adopted
        (not hashed again when its writer tells what it wrote: ``written``)."""
        if move and self.blobs.is_temporary(path):
            try:
                writer = self.blobs.adopt(path, written=written)
            except StorageFullError as exc:
                path.unlink(missing_ok=True)
                return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
            return self._finish(writer, origin, expected_study_uid)
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
        """Store an encoded dataset (as a DIMSE peer sent it) behind a new Part 10 header."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
        meta.TransferSyntaxUID = UID(transfer_syntax_uid)
        if implementation_class_uid:
            meta.ImplementationClassUID = UID(implementation_class_uid)
        head = DicomBytesIO()
        head.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(head, meta, enforce_standard=True)
        try:
            writer = self.blobs.create()
            writer.write(head.getvalue())
            chunks = [dataset] if isinstance(dataset, bytes | bytearray | memoryview) else dataset
            for chunk in chunks:
                writer.write(chunk)
        except StorageFullError as exc:
            if "writer" in locals():
                self.blobs.discard(writer)
            return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
        return self._finish(writer, origin, None)

    # -- the pipeline -----------------------------------------------------------------

    def _finish(
        self, writer: BlobWriter, origin: Origin, expected_study_uid: str | None
    ) -> StoreOutcome:
        try:
            return self._finish_inner(writer, origin, expected_study_uid)
        except StorageFullError as exc:
            self.blobs.discard(writer)
            return StoreOutcome(Status.STORAGE_FULL, reason=str(exc))
        except Exception as exc:
            self.blobs.discard(writer)
            log.exception("store failed")
            return StoreOutcome(Status.FAILED, reason=f"internal error: {type(exc).__name__}")

    def _finish_inner(
        self, writer: BlobWriter, origin: Origin, expected_study_uid: str | None
    ) -> StoreOutcome:
        size = writer.size
        writer.finish(self.blobs.fsync)
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
        key = self.blobs.commit(writer)
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
        overwrite = self.overwrite

        def index(conn: Connection) -> tuple[str, str | None]:
            """De-duplicate inside the transaction (no separate look-up beforehand)."""
            row = conn.one(Q("instance_by_sop"), {"sop_uid": parsed.sop_instance_uid})
            replaced: str | None = None
            if row is not None:
                if row[2] == sha256:
                    return "identical", None
                if not overwrite:
                    return "kept", None
                replaced = str(row[1])
                remove_instance(conn, row[0], row[3])
            insert_instance(conn, record)
            if fault is not None:
                raise fault
            return "stored", replaced

        try:
            result, replaced = self.writer.run(index)
        except Exception:
            self.blobs.delete(key)
            raise
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
