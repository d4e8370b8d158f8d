"""The archive: the only public face of ``storage/``.

Protocols and the CLI call this class; nothing outside ``storage/`` knows
how blobs are laid out or what the index looks like.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from noctis_pacs.core.audit import AuditEvent, AuditOutcome
from noctis_pacs.core.audit_message import ExportStats
from noctis_pacs.core.auth import Principal
from noctis_pacs.core.deid import DeidOptions
from noctis_pacs.core.model import Level, Match, MatchKind, Query, QueryResult
from noctis_pacs.core.modify import ModifyRequest
from noctis_pacs.core.retention import select
from noctis_pacs.core.routing import STABLE, Rule, RuleError
from noctis_pacs.core.settings import Settings
from storage import audit_log
from storage.audit_export import SyslogExporter
from storage.audit_log import AuditQueue, AuditRecord, AuditVerification
from storage.blobstore import (
    SMALL_BLOB,
    BlobWriter,
    FileSystemBlobStore,
    StorageFullError,
)
from storage.db import Connection, Database, IndexBusyError, open_database
from storage.deidentify import DeidResult, deidentify_study
from storage.index import HierarchyConflict, Q, remove_instance
from storage.ingest import (
    Expected,
    Implementation,
    Ingestor,
    Origin,
    RejectKind,
    Status,
    StoreOutcome,
)
from storage.jobs import Job, JobStore
from storage.media import MediaError, write_zip
from storage.modify import ModifyResult, modify_resource
from storage.mpps_store import MppsStore
from storage.parse import BASE_URL_PLACEHOLDER, IDENTITY_HEAD, ParseError, sop_identity
from storage.part10 import data_set_offset, file_header
from storage.query import LOCATOR_COLUMNS, MAX_INTEGER, Compiler, QueryError, row_to_dict
from storage.remotes import RemoteDirectory
from storage.retention import RetentionStore
from storage.routing import QueueItem, RoutingStore
from storage.schema import current_version, ensure_schema
from storage.tokens import TokenCache, TokenExistsError, TokenStore
from storage.tracking import StudyTracker
from storage.workflow_events import EventLog
from storage.worklist import ItemNotFound, WorkflowConflict, WorklistStore
from storage.writer import IndexWriter

log = logging.getLogger("noctis.storage")
admin_log = logging.getLogger("noctis.admin")

__all__ = [
    "archive_missing",
    "IndexBusyError",
    "MAX_INTEGER",
    "SMALL_BLOB",
    "Archive",
    "AuditEvent",
    "AuditRecord",
    "AuditVerification",
    "BlobWriter",
    "StorageFullError",
    "BASE_URL_PLACEHOLDER",
    "IDENTITY_HEAD",
    "sop_identity",
    "Expected",
    "Implementation",
    "InstanceLocation",
    "MediaError",
    "NoPixelDataError",
    "EventLog",
    "ItemNotFound",
    "DeidResult",
    "Job",
    "ModifyResult",
    "JobStore",
    "MppsStore",
    "StudyTracker",
    "WorkflowConflict",
    "WorklistStore",
    "QueueItem",
    "RemoteDirectory",
    "RoutingStore",
    "Origin",
    "RejectKind",
    "data_set_offset",
    "file_header",
    "QueryError",
    "Status",
    "StoreOutcome",
    "TokenCache",
    "TokenExistsError",
    "TokenStore",
]

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class InstanceLocation:
    """Where one instance's bytes are, and what they are."""

    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    frames_json: str | None
    series_uid: str
    study_uid: str
    number_of_frames: int | None

    @property
    def frames(self) -> list[list[tuple[int, int]]] | None:
        """Byte ranges of each frame (fragments in order), ``None`` when not recorded."""
        if self.frames_json is None:
            return None
        return [[(int(o), int(n)) for o, n in frame] for frame in json.loads(self.frames_json)]


#: Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.3 C.7.6.3).
_PIXEL_TAGS = ("7FE00010", "7FE00008", "7FE00009")


class NoPixelDataError(LookupError):
    """The instance has no pixel data (an SR, a KOS, a PDF): no frame exists."""


def _uid_match(keyword: str, uid: str | None) -> list[Match]:
    return [Match(keyword, MatchKind.SINGLE, (uid,))] if uid else []


def scoped(query: Query, principal: Principal | None) -> Query:
    """``query`` narrowed to the studies ``principal`` sees (its facilities; issue 13
    point 4). ``None`` is an internal caller (CLI, workers): every study."""
    if principal is None or not principal.scoped:
        return query
    return replace(query, facilities=principal.facilities)


def archive_missing(settings: Settings) -> str | None:
    """Why ``settings`` point at no archive (``None`` when they do), creating nothing.

    An archive is its data directory's blob store plus an index that has a schema:
    admin verbs other than ``serve`` and ``db migrate`` refuse to run without one, so
    that a command run from the wrong folder never fills a new, empty archive."""
    blobs = Path(settings.storage.data_dir) / "blobs"
    url = settings.db_url
    if url.startswith("sqlite:///"):
        index = Path(url[len("sqlite:///") :])
        if not index.is_file():
            return f"no index at {index.resolve()}"
    else:
        db = open_database(url)
        try:
            if current_version(db) is None:
                return f"the index at {db.url_for_logs()} has no Noctis PACS schema"
        finally:
            db.close()
    if not blobs.is_dir():
        return f"no blob store at {blobs.resolve()}"
    return None


def read_sized(fh: BinaryIO, size: int, chunk: int) -> Iterator[bytes]:
    """``size`` bytes of ``fh`` (to its end when ``size`` is not positive), in reads of at
    most ``chunk``: a file smaller than ``chunk`` is one read of its own size, not a
    ``chunk``-sized buffer shrunk to it (a copy) and a second read to find its end
    (a WADO-RS series of 512 KiB slices read with 4 MiB reads: docs/performance.md)."""
    remaining = size if size > 0 else 1 << 62
    while remaining > 0 and (data := fh.read(min(chunk, remaining))):
        remaining -= len(data)
        yield data


class Archive:
    def __init__(self, settings: Settings, *, db: Database | None = None) -> None:
        self.settings = settings
        storage = settings.storage
        self.db = db or open_database(
            settings.db_url, synchronous="FULL" if storage.fsync == "always" else "NORMAL"
        )
        ensure_schema(self.db)
        self.blobs = FileSystemBlobStore(
            Path(storage.data_dir),
            fsync=storage.fsync == "always",
            min_free_bytes=storage.min_free_mb * 2**20,
            packs=storage.packs,
        )
        self.writer = IndexWriter(self.db, max_batch=storage.max_batch)
        self.ingestor = Ingestor(
            self.blobs,
            self.writer,
            overwrite=storage.duplicates == "overwrite",
            facility_attribute=settings.access.facility_attribute,
            facility_from=settings.access.facility_from,
        )
        self.compiler = Compiler(self.db.placeholder)
        self.max_results = settings.query.max_results
        self.audit_enabled = settings.audit.enabled
        self.audit_queue = AuditQueue(
            self.db,
            interval=settings.audit.flush_interval,
            retention_days=settings.audit.retention_days,
            writer=self.writer,
            exporter=SyslogExporter(settings.audit.syslog)
            if settings.audit.enabled and settings.audit.syslog.host
            else None,
        )
        #: API tokens (create, list, revoke, the per-request look-up by digest).
        self.tokens = TokenStore(self.db)
        #: Remote AEs and DICOMweb peers: configured ones merged with those in the index.
        self.remotes = RemoteDirectory(settings, self.db)
        #: Sends and other background jobs, with per-instance outcomes.
        self.jobs = JobStore(self.db)
        #: The workflow stores, built once here for DIMSE (MWL, MPPS), the workflow
        #: API, the CLI and the workflow worker.
        self.worklist = WorklistStore(
            self.db,
            webhooks=settings.workflow.webhooks,
            case_insensitive_pn=settings.query.case_insensitive_pn,
            max_results=settings.query.max_results,
        )
        self.mpps = MppsStore(self.worklist)
        self.tracker = StudyTracker(self.worklist)
        self.events = EventLog(self.db)
        #: Retention policies and protected studies.
        self.retention = RetentionStore(self.db)
        #: Routing rules, their inbox (written at ingest) and the delivery queue.
        self.routing = RoutingStore(self.db)
        self.ingestor.routing = self.routing

    def close(self) -> None:
        self.audit_queue.close()
        self.writer.close()
        self.db.close()

    # -- ingest -------------------------------------------------------------------------

    def store_stream(
        self, stream: BinaryIO, origin: Origin, *, expected_study_uid: str | None = None
    ) -> StoreOutcome:
        return self.ingestor.store_stream(stream, origin, expected_study_uid=expected_study_uid)

    def store_bytes(
        self, data: bytes, origin: Origin, *, expected_study_uid: str | None = None
    ) -> StoreOutcome:
        return self.ingestor.store_bytes(data, origin, expected_study_uid=expected_study_uid)

    def store_path(
        self,
        path: Path,
        origin: Origin,
        *,
        move: bool = False,
        expected_study_uid: str | None = None,
    ) -> StoreOutcome:
        return self.ingestor.store_path(
            path, origin, move=move, expected_study_uid=expected_study_uid
        )

    def store_dataset_bytes(
        self,
        dataset: bytes | Iterable[bytes],
        *,
        transfer_syntax_uid: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        origin: Origin,
    ) -> StoreOutcome:
        return self.ingestor.store_dataset_bytes(
            dataset,
            transfer_syntax_uid=transfer_syntax_uid,
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            origin=origin,
        )

    def begin_blob(self) -> BlobWriter:
        """Start a store whose bytes arrive piecemeal (STOW-RS parts, DIMSE chunks):
        ``write`` them, then ``store_blob`` (or ``abort_blob``). Raises ``StorageFullError``."""
        return self.ingestor.begin()

    def begin_received(
        self, expected: Expected, *, transfer_syntax_uid: str, implementation: Implementation
    ) -> BlobWriter:
        """Start storing a data set that arrives without its Part 10 header (DIMSE): the
        store writes the header, the caller ``write``s the data set bytes, then
        ``store_blob(..., expected=expected)``. Raises ``StorageFullError``."""
        return self.ingestor.begin_received(
            expected, transfer_syntax_uid=transfer_syntax_uid, implementation=implementation
        )

    def store_blob(
        self,
        writer: BlobWriter,
        origin: Origin,
        *,
        expected_study_uid: str | None = None,
        expected: Expected | None = None,
    ) -> StoreOutcome:
        """Store a blob begun with ``begin_blob`` or ``begin_received``; with ``expected``
        the data set must be that SOP class and instance (else REJECTED, with
        ``RejectKind.CLASS_MISMATCH`` or ``INSTANCE_MISMATCH``)."""
        return self.ingestor.finish(
            writer, origin, expected_study_uid=expected_study_uid, expected=expected
        )

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
        receive file) behind this store's own header, checked against ``expected``."""
        return self.ingestor.store_received_file(
            path,
            expected,
            transfer_syntax_uid=transfer_syntax_uid,
            implementation=implementation,
            origin=origin,
        )

    def abort_blob(self, writer: BlobWriter) -> None:
        self.ingestor.abort(writer)

    def spool_path(self) -> Path:
        """A temporary path inside the store; ``store_path(..., move=True)`` adopts it."""
        return self.blobs.new_temp_path()

    # -- query --------------------------------------------------------------------------

    def query(self, query: Query, *, principal: Principal | None = None) -> QueryResult:
        """Run ``query``; ``total`` when ``count_total``; ``truncated`` when the server
        maximum cut the results short (callers add a warning). With ``principal``, only
        the studies of its facilities match."""
        query = scoped(query, principal)
        compiled = self.compiler.compile(query, max_results=self.max_results)
        limit = self.max_results if query.limit is None else min(query.limit, self.max_results)
        with self.db.reader() as conn:
            rows = conn.positional(compiled.sql, compiled.params).fetchall()
            total = None
            if query.count_total:
                total = int(
                    conn.positional(compiled.count_sql, compiled.count_params).fetchone()[0]
                )
        more = len(rows) > limit
        rows = rows[:limit]
        server_cut = more and (query.limit is None or query.limit > self.max_results)
        result = QueryResult(
            rows=[row_to_dict(compiled.keywords, r) for r in rows],
            total=total,
            truncated=server_cut,
        )
        return result

    def count(self, query: Query, *, principal: Principal | None = None) -> int:
        """Number of entities ``query`` matches, ``limit``/``offset`` aside, without fetching
        any row (the planner may sort every match to fetch even one)."""
        query = scoped(query, principal)
        compiled = self.compiler.compile(query, max_results=self.max_results)
        with self.db.reader() as conn:
            return int(conn.positional(compiled.count_sql, compiled.count_params).fetchone()[0])

    def ignored_keys(self, query: Query) -> list[str]:
        """Keys of ``query`` the engine cannot match on (protocols warn about them)."""
        return self.compiler.compile(query, max_results=1).ignored

    def locate(self, query: Query, *, principal: Principal | None = None) -> list[InstanceLocation]:
        """Every instance under the entities ``query`` matches (any level), in order; with
        ``principal``, only in the studies it sees (others are as if absent)."""
        query = scoped(query, principal)
        image_query = Query(
            level=Level.IMAGE,
            matches=query.matches,
            fuzzy=query.fuzzy,
            facilities=query.facilities,
        )
        compiled = self.compiler.compile(image_query, max_results=10**9, select=LOCATOR_COLUMNS)
        with self.db.reader() as conn:
            rows = conn.positional(compiled.sql, compiled.params).fetchall()
        return [
            InstanceLocation(
                sop_uid=r[0],
                sop_class_uid=r[1],
                transfer_syntax_uid=r[2],
                blob_key=r[3],
                size=int(r[4]),
                frames_json=r[5],
                series_uid=r[6],
                study_uid=r[7],
                number_of_frames=r[8],
            )
            for r in rows
        ]

    def locate_uids(
        self,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        principal: Principal | None = None,
    ) -> list[InstanceLocation]:
        matches = (
            _uid_match("StudyInstanceUID", study_uid)
            + _uid_match("SeriesInstanceUID", series_uid)
            + _uid_match("SOPInstanceUID", sop_uid)
        )
        return self.locate(Query(level=Level.IMAGE, matches=tuple(matches)), principal=principal)

    def metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        principal: Principal | None = None,
    ) -> list[str]:
        """Stored DICOM JSON objects (with ``BASE_URL_PLACEHOLDER`` in bulk data URIs)."""
        matches = (
            _uid_match("StudyInstanceUID", study_uid)
            + _uid_match("SeriesInstanceUID", series_uid)
            + _uid_match("SOPInstanceUID", sop_uid)
        )
        compiled = self.compiler.compile(
            scoped(Query(level=Level.IMAGE, matches=tuple(matches)), principal),
            max_results=10**9,
            select=("i.metadata",),
        )
        with self.db.reader() as conn:
            return [r[0] for r in conn.positional(compiled.sql, compiled.params).fetchall()]

    def metadata_of(self, sop_uids: Iterable[str]) -> dict[str, str]:
        """Stored DICOM JSON of each of ``sop_uids`` (those in the archive), by SOP
        Instance UID: one index query for a page of QIDO-RS results."""
        uids = tuple(dict.fromkeys(sop_uids))
        if not uids:
            return {}
        compiled = self.compiler.compile(
            Query(
                level=Level.IMAGE, matches=(Match("SOPInstanceUID", MatchKind.LIST_OF_UID, uids),)
            ),
            max_results=10**9,
            select=("i.sop_uid", "i.metadata"),
        )
        with self.db.reader() as conn:
            rows = conn.positional(compiled.sql, compiled.params).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # -- retrieve -----------------------------------------------------------------------

    def open_blob(self, location: InstanceLocation) -> BinaryIO:
        return self.blobs.open(location.blob_key)

    def missing_blobs(self, locations: Iterable[InstanceLocation]) -> list[str]:
        """SOP Instance UIDs whose blob is gone or shorter or longer than indexed
        (checked before a response starts, so a retrieve fails with a status instead
        of a body cut short); one ``stat`` per instance, or one read of its pack record's
        header."""
        return [loc.sop_uid for loc in locations if self.blobs.size(loc.blob_key) != loc.size]

    def iter_blob(self, location: InstanceLocation, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The stored file's bytes as the index records its size (which a retrieve's
        Content-Length counts), in reads of at most ``chunk`` (``read_sized``)."""
        with self.blobs.open(location.blob_key) as fh:
            yield from read_sized(fh, location.size, chunk)

    def has_pixel_data(self, location: InstanceLocation) -> bool:
        """Whether the instance holds Pixel Data, Float or Double Float Pixel Data (as
        its stored metadata records them, bulk data URIs included)."""
        stored = self.metadata(location.study_uid, location.series_uid, location.sop_uid)
        return any(f'"{tag}"' in text for text in stored for tag in _PIXEL_TAGS)

    def frame_bytes(self, location: InstanceLocation, number: int) -> bytes:
        """Bytes of frame ``number`` (1-based) as stored: native, or concatenated fragments."""
        frames = location.frames
        if frames is None:
            if not self.has_pixel_data(location):
                raise NoPixelDataError(
                    "the instance has no pixel data (SOP Class "
                    f"{location.sop_class_uid}): it has no frames to retrieve or render"
                )
            raise LookupError("frame offsets were not recorded for this instance")
        if not 1 <= number <= len(frames):
            raise IndexError(f"frame {number} does not exist (the instance has {len(frames)})")
        with self.blobs.open(location.blob_key) as fh:
            parts = []
            for offset, length in frames[number - 1]:
                fh.seek(offset)
                parts.append(fh.read(length))
        return b"".join(parts)

    # -- audit trail --------------------------------------------------------------------

    def audit(self, event: AuditEvent) -> int | None:
        """Append ``event`` to the audit trail now (committed on return); its sequence
        number, ``None`` when the audit trail is off. For security events and the CLI."""
        if not self.audit_enabled:
            return None
        return self.audit_queue.append_now(event)

    def audit_later(self, event: AuditEvent) -> None:
        """Queue ``event``: appended within ``audit.flush_interval`` by a background thread,
        batched (stores, queries and retrieves never wait for it)."""
        if self.audit_enabled:
            self.audit_queue.put(event)

    def flush_audit(self) -> None:
        """Append every queued audit event now."""
        self.audit_queue.flush()

    def audit_export_stats(self) -> ExportStats | None:
        """The syslog export's counters; ``None`` when ``[audit.syslog]`` is off."""
        exporter = self.audit_queue.exporter
        return exporter.stats() if exporter is not None else None

    def audit_records(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        study_uid: str | None = None,
        principal: str | None = None,
        action: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Audit records matching every filter given, in chain order."""
        with self.db.reader() as conn:
            return audit_log.read(
                conn,
                since=since,
                until=until,
                study_uid=study_uid,
                principal=principal,
                action=action,
                after_seq=after_seq,
                limit=limit,
            )

    def verify_audit(self) -> AuditVerification:
        """Check the audit chain: the first broken record, if any."""
        return audit_log.verify(self.db)

    def prune_audit(self, cutoff: str) -> int:
        """Remove audit records older than ``cutoff`` (ISO UTC); the chain stays verifiable."""
        return int(self.db.transaction(lambda conn: audit_log.prune(conn, cutoff)))

    # -- admin --------------------------------------------------------------------------

    def delete(
        self,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> int:
        """Delete matching instances: index first (one transaction), blobs after."""
        if not (study_uid or series_uid or sop_uid):
            raise ValueError("delete needs a study, series or instance UID")
        locations = self.locate_uids(study_uid, series_uid, sop_uid)
        if not locations:
            return 0
        uids = [loc.sop_uid for loc in locations]

        def work(conn: Connection) -> list[str]:
            # The blob keys are read in the transaction that removes the rows, so an
            # instance replaced meanwhile loses its current blob, not an older one.
            removed = []
            for uid in uids:
                row = conn.one(Q("instance_by_sop"), {"sop_uid": uid})
                if row is not None:
                    remove_instance(conn, row[0], row[3])
                    removed.append(str(row[1]))
            return removed

        keys: list[str] = self.writer.run(work)
        for key in keys:
            self.blobs.delete(key)
        self.blobs.sweep_packs(keys)
        return len(keys)

    def stats(self) -> dict[str, int]:
        with self.db.reader() as conn:
            row = conn.one(Q("stats"))
        keys = ("patients", "studies", "series", "instances", "bytes")
        return {k: int(v) for k, v in zip(keys, row, strict=True)}

    def record_admin_act(
        self,
        *,
        principal: str,
        action: str,
        outcome: str,
        client: str = "",
        principal_kind: str = "",
        study_uids: Iterable[str] = (),
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an administrative act (delete, remote AE change, send, ...) in the audit
        trail, committed on return: action ``delete`` or ``admin.<action>``, outcome
        success or failure, the act's own outcome word (refused, not found, queued) and
        its details in the record's detail (no patient attributes)."""
        done = outcome in ("success", "queued")
        self.audit(
            AuditEvent(
                action=action if action == "delete" else f"admin.{action}",
                outcome=AuditOutcome.SUCCESS if done else AuditOutcome.FAILURE,
                principal=principal,
                principal_kind=principal_kind,
                client=client,
                study_uids=tuple(dict.fromkeys(uid for uid in study_uids if uid)),
                detail=json.dumps({"outcome": outcome, **(details or {})}, sort_keys=True),
            )
        )
        admin_log.info("admin act: action=%s outcome=%s", action, outcome)

    def modify(
        self,
        request: ModifyRequest,
        *,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        principal: Principal | None = None,
    ) -> ModifyResult | None:
        """Modify the attributes of a study, series or instance (``storage.modify``);
        ``None`` when it is not here. Raises ``ModifyError``: nothing changed."""
        return modify_resource(
            self,
            request,
            study_uid=study_uid,
            series_uid=series_uid,
            sop_uid=sop_uid,
            principal=principal,
            keep_original_default=self.settings.modify.keep_original,
        )

    def export_path(self, job_id: int, suffix: str) -> Path:
        """Where a job's result file is kept (``<data-dir>/exports``), made on demand."""
        folder = Path(self.settings.storage.data_dir) / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"job-{job_id}{suffix}"

    def deidentify(
        self,
        *,
        study_uid: str,
        options: DeidOptions,
        output: str,
        target: Path | None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> DeidResult:
        """De-identify a study (PS3.15 Annex E Basic Profile, ``storage.deidentify``) into
        the zip ``target`` or as a new study. Raises ``DeidError`` (nothing written)."""
        return deidentify_study(
            self,
            study_uid=study_uid,
            options=options,
            output=output,
            target=target,
            cancelled=cancelled,
        )

    def export_zip(
        self, target: Path, *, study_uid: str, series_uid: str | None = None, dicomdir: bool
    ) -> int:
        """Write a study (or series) into the zip ``target``: PS3.10 media with a DICOMDIR,
        or the stored files; the number of instances (0: nothing matched). Raises
        ``MediaError`` when an instance cannot get a DICOMDIR record."""
        locations = self.locate_uids(study_uid, series_uid)
        missing = self.missing_blobs(locations)
        if missing:
            raise MediaError(f"instance {missing[0]} has no stored file")
        if not locations:
            return 0
        files = [
            (location.sop_uid, functools.partial(self.open_blob, location))
            for location in locations
        ]
        return write_zip(files, target, dicomdir=dicomdir)

    def retention_run(self, *, dry_run: bool, principal: str = "retention") -> dict[str, Any]:
        """Apply the retention policies: the studies they select now (oldest first per
        policy), deleted unless ``dry_run``; the dry run lists exactly what a run at that
        moment deletes. Each deletion is audited (``admin.retention.delete``)."""
        plan = select(self.retention.policies(), self.retention.candidates())
        deleted = 0
        for item in [] if dry_run else plan:
            count = self.delete(study_uid=item.study_uid)
            deleted += count
            self.record_admin_act(
                principal=principal,
                action="retention.delete",
                outcome="success",
                study_uids=[item.study_uid],
                details={"policy": item.policy, "reason": item.reason, "instances": count},
            )
        return {
            "dry_run": dry_run,
            "studies": [vars(item) for item in plan],
            "bytes": sum(item.size for item in plan),
            "deleted_instances": deleted,
        }

    def record_stable(self, conn: Connection, study_uid: str) -> None:
        """For the study tracker: a study became stable (routing rules ``on: stable``)."""
        self.routing.record(conn, on=STABLE, study_uid=study_uid)

    def check_route_rule(self, rule: Rule) -> None:
        """Refuse (``RuleError``) a rule whose keys the query engine cannot match or
        whose destinations are unknown: a rule is refused when saved, not when it fires."""
        matches = rule.query_matches()
        try:
            ignored = self.ignored_keys(Query(level=Level.IMAGE, matches=matches))
        except QueryError as exc:
            raise RuleError(f"matches: {exc}") from None
        if ignored:
            raise RuleError(
                f"matches: the query engine does not match on {', '.join(sorted(ignored))}"
            )
        for name in rule.destinations:
            if self.remotes.get(name) is None:
                raise RuleError(f"destinations: no remote named {name!r}")

    def statistics(self) -> dict[str, Any]:
        """Counts per level and bytes (``stats``), the blob store's free space and how
        many instances arrived in the last minute and hour (ingest rates)."""
        figures: dict[str, Any] = dict(self.stats())
        figures["free_bytes"] = self.blobs.free_bytes()
        now = time.time()
        with self.db.reader() as conn:
            for label, seconds in (("last_minute", 60), ("last_hour", 3600)):
                since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - seconds))
                row = conn.one(
                    "SELECT COUNT(*) FROM instances WHERE received_at >= :since", {"since": since}
                )
                figures[f"received_{label}"] = int(row[0])
        figures["jobs"] = self.jobs.depth()
        return figures

    def indexed_blobs(self) -> list[tuple[str, str, int, str]]:
        """(sop_uid, blob_key, size, sha256) of every indexed instance."""
        with self.db.reader() as conn:
            rows = conn.all(
                "SELECT sop_uid, blob_key, blob_size, sha256 FROM instances ORDER BY id"
            )
        return [(r[0], r[1], int(r[2]), r[3]) for r in rows]

    def _examine_orphan(self, key: str) -> tuple[Any, str | None]:
        """Read a blob the index does not know: ``(record, None)`` when ``reindex`` adopts
        it, ``(None, reason)`` when it skips it. ``verify`` and ``reindex`` both ask
        here, so what one announces the other does."""
        from storage.index import build_record
        from storage.parse import header_metadata, read_header

        size = self.blobs.size(key)
        if size is None:
            return None, "cannot be read: it is gone"
        try:
            digest = hashlib.sha256()
            with self.blobs.open(key) as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                recorded = self.blobs.sha256_recorded(key)
                if recorded is not None and recorded != digest.hexdigest():
                    return None, (
                        "an interrupted write (its bytes differ from the SHA-256 its pack"
                        " recorded); it was never acknowledged"
                    )
                fh.seek(0)
                parsed = read_header(fh, size)
        except ParseError as exc:
            return None, f"not a readable DICOM file: {exc.reason}"
        except OSError as exc:
            return None, f"cannot be read: {exc.strerror or exc}"
        with self.db.reader() as conn:
            if conn.one(Q("instance_by_sop"), {"sop_uid": parsed.sop_instance_uid}) is not None:
                return None, "another blob holds its SOP Instance UID (a duplicate)"
        metadata = header_metadata(parsed)
        record = build_record(
            parsed,
            metadata=metadata,
            blob_key=key,
            blob_size=size,
            sha256=digest.hexdigest(),
            origin={"protocol": "reindex"},
            facility=self.ingestor.facility_of(metadata, Origin("reindex")),
        )
        return record, None

    def verify(self, progress: Progress | None = None) -> dict[str, Any]:
        """Check every indexed blob exists and matches its hash; find the blobs the index
        does not know and say what ``reindex`` will do with each."""
        indexed = self.indexed_blobs()
        missing, corrupt = [], []
        for n, (sop_uid, key, _size, sha) in enumerate(indexed, 1):
            if not self.blobs.exists(key):
                missing.append(sop_uid)
            else:
                digest = hashlib.sha256()
                with self.blobs.open(key) as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
                if digest.hexdigest() != sha:
                    corrupt.append(sop_uid)
            if progress:
                progress(n, len(indexed))
        known = {key for _, key, _, _ in indexed}
        orphans, unadoptable = [], []
        for key in self.blobs.iter_keys():
            if key in known:
                continue
            record, reason = self._examine_orphan(key)
            if record is not None:
                orphans.append(key)
            else:
                unadoptable.append({"blob": key, "reason": reason})
        strays = list(self.blobs.iter_strays())
        return {
            "checked": len(indexed),
            "missing": missing,
            "corrupt": corrupt,
            "orphans": orphans,
            "unadoptable": unadoptable,
            "strays": strays,
            "ok": not (missing or corrupt or orphans or unadoptable or strays),
        }

    def reindex(self, progress: Progress | None = None) -> dict[str, Any]:
        """Reconcile the index with the blobs, in place (the archive keeps answering):
        every blob not indexed is parsed and indexed, every index row whose blob is gone
        is removed; rows already right are kept with their origin and receive time.
        Files in the blob folder that are not blobs (``strays``) are reported, never
        read or removed."""
        from storage.index import insert_instance

        indexed_keys = {key: sop for sop, key, _, _ in self.indexed_blobs()}
        keys = list(self.blobs.iter_keys())
        on_disk = set(keys)
        added, skipped, duplicates = 0, [], []
        futures = []
        for n, key in enumerate(keys, 1):
            if progress:
                progress(n, len(keys))
            if key in indexed_keys:
                continue
            record, reason = self._examine_orphan(key)
            if record is None:
                skipped.append({"blob": key, "reason": reason})
                continue

            def job(conn: Connection, record: Any = record) -> bool:
                uid = record.instance["sop_uid"]
                if conn.one(Q("instance_by_sop"), {"sop_uid": uid}) is not None:
                    return False  # another blob holds this SOP Instance UID: keep that one
                insert_instance(conn, record)
                return True

            futures.append((key, self.writer.submit(job)))
        for key, future in futures:
            try:
                stored = future.result()
            except HierarchyConflict as exc:  # its series is another study's: as ingest
                skipped.append({"blob": key, "reason": exc.reason})
                continue
            if stored:
                added += 1
            else:
                duplicates.append(key)
        gone = [sop for key, sop in indexed_keys.items() if key not in on_disk]

        def remove(conn: Connection) -> None:
            for sop in gone:
                row = conn.one(Q("instance_by_sop"), {"sop_uid": sop})
                if row is not None and str(row[1]) not in on_disk:
                    remove_instance(conn, row[0], row[3])

        if gone:
            self.writer.run(remove)
        indexed = len(keys) - len(skipped) - len(duplicates)
        for stray in self.blobs.iter_strays():
            skipped.append(
                {"blob": stray, "reason": "not a blob of this store (expected abc/<32 hex>.dcm)"}
            )
        return {
            "blobs": len(keys),
            "indexed": indexed,
            "added": added,
            "removed": len(gone),
            "skipped": skipped,
            "duplicates": duplicates,
        }
