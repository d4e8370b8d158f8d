"""The audit trail in the index: a hash chain of records, appended in batches.

Each record's ``hash`` is the SHA-256 of its fields and ``prev_hash``, the hash
of the record before it, so altering, removing or inserting a record breaks the
chain at that record (``verify``).  Appends from every thread and process take
the one-row chain head in turn (``UPDATE audit_chain ... RETURNING``: SQLite's
write lock, a row lock on PostgreSQL), so the chain has one order whatever the
number of writers.  Retention pruning moves the chain's base forward: the hash
of the last pruned record stays in the head so verification starts there.

Hot paths queue their events (``AuditQueue``); a background thread appends
them every flush interval through the index writer, so they ride in the ingest
group commit when stores are in progress (last in the batch: the chain head is
locked only while it commits) and a store or a query never waits for the audit
write (an event still queued when the process is killed is lost;
``close`` flushes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from noctis_pacs.core.audit import AuditAction, AuditEvent
from storage.audit_export import SyslogExporter
from storage.db import Connection, Database
from storage.writer import IndexWriter

log = logging.getLogger("noctis.storage.audit")

GENESIS = "0" * 64
#: Events appended per transaction at most (a longer queue takes several).
FLUSH_BATCH = 2000
#: Events kept queued at most when the index refuses them; older ones are dropped, logged.
MAX_QUEUED = 200_000
#: Seconds between retention prunes of a process that records (``audit.retention_days``).
PRUNE_EVERY = 3600.0

_COLUMNS = (
    "seq, event_time, principal, principal_kind, client, action, study_uids, series_uids,"
    " sop_uids, query_keys, outcome, detail, prev_hash, hash"
)
_INSERT = (
    f"INSERT INTO audit_records ({_COLUMNS}) VALUES (:seq, :event_time, :principal,"
    " :principal_kind, :client, :action, :study_uids, :series_uids, :sop_uids, :query_keys,"
    " :outcome, :detail, :prev_hash, :hash)"
)
_HASHED = (
    "seq",
    "event_time",
    "principal",
    "principal_kind",
    "client",
    "action",
    "study_uids",
    "series_uids",
    "sop_uids",
    "query_keys",
    "outcome",
    "detail",
    "prev_hash",
)


def _join(uids: Sequence[str]) -> str:
    return "\\".join(uids)


def _split(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.split("\\") if v) if text else ()


def record_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of the record's fields (``_HASHED``, in order) as one JSON array."""
    values = [int(fields["seq"]), *(str(fields[name]) for name in _HASHED[1:])]
    text = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "event_time": event.time,
        "principal": event.principal,
        "principal_kind": event.principal_kind,
        "client": event.client,
        "action": str(event.action),
        "study_uids": _join(event.study_uids),
        "series_uids": _join(event.series_uids),
        "sop_uids": _join(event.sop_uids),
        "query_keys": json.dumps(dict(sorted(event.query.items())), ensure_ascii=False)
        if event.query
        else "",
        "outcome": str(event.outcome),
        "detail": event.detail,
    }


def append(conn: Connection, events: Sequence[AuditEvent]) -> list[int]:
    """Append ``events`` to the chain in this transaction; their sequence numbers."""
    if not events:
        return []
    # Taking the head first serialises appenders (row lock / SQLite write lock) until commit.
    last_seq, prev = conn.one(
        "UPDATE audit_chain SET last_seq = last_seq + :n WHERE id = 1 RETURNING last_seq,"
        " last_hash",
        {"n": len(events)},
    )
    seq = int(last_seq) - len(events)
    rows: list[dict[str, Any]] = []
    studies: list[dict[str, Any]] = []
    for event in events:
        seq += 1
        row = {"seq": seq, **_row(event), "prev_hash": prev}
        row["hash"] = prev = record_hash(row)
        rows.append(row)
        studies.extend({"seq": seq, "study_uid": uid} for uid in event.study_uids)
    conn.executemany(_INSERT, rows)
    if studies:
        conn.executemany(
            "INSERT INTO audit_studies (seq, study_uid) VALUES (:seq, :study_uid)", studies
        )
    conn.execute("UPDATE audit_chain SET last_hash = :h WHERE id = 1", {"h": prev})
    return [r["seq"] for r in rows]


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: str
    principal: str
    principal_kind: str
    client: str
    action: str
    study_uids: tuple[str, ...]
    series_uids: tuple[str, ...]
    sop_uids: tuple[str, ...]
    query: dict[str, str]
    outcome: str
    detail: str
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The ``noctis-pacs audit --json`` / ``GET /audit`` form of the record."""
        return {
            "seq": self.seq,
            "time": self.time,
            "principal": self.principal,
            "principal_kind": self.principal_kind,
            "client": self.client,
            "action": self.action,
            "study_uids": list(self.study_uids),
            "series_uids": list(self.series_uids),
            "sop_uids": list(self.sop_uids),
            "query": self.query,
            "outcome": self.outcome,
            "detail": self.detail,
            "hash": self.hash,
        }


def _record(row: Sequence[Any]) -> AuditRecord:
    query = json.loads(row[9]) if row[9] else {}
    return AuditRecord(
        seq=int(row[0]),
        time=row[1],
        principal=row[2],
        principal_kind=row[3],
        client=row[4],
        action=row[5],
        study_uids=_split(row[6]),
        series_uids=_split(row[7]),
        sop_uids=_split(row[8]),
        query=query if isinstance(query, dict) else {},
        outcome=row[10],
        detail=row[11],
        prev_hash=row[12],
        hash=row[13],
    )


def read(
    conn: Connection,
    *,
    since: str | None = None,
    until: str | None = None,
    study_uid: str | None = None,
    principal: str | None = None,
    action: str | None = None,
    after_seq: int = 0,
    limit: int | None = None,
) -> list[AuditRecord]:
    """Records matching every filter given, oldest first (by chain order)."""
    where = ["r.seq > :after"]
    params: dict[str, Any] = {"after": after_seq}
    if since:
        where.append("r.event_time >= :since")
        params["since"] = since
    if until:
        where.append("r.event_time < :until")
        params["until"] = until
    if principal:
        where.append("r.principal = :principal")
        params["principal"] = principal
    if action:
        where.append("r.action = :action")
        params["action"] = action
    if study_uid:
        where.append(
            "EXISTS (SELECT 1 FROM audit_studies s WHERE s.seq = r.seq AND s.study_uid = :study)"
        )
        params["study"] = study_uid
    sql = (
        f"SELECT {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))}"
        f" FROM audit_records r WHERE {' AND '.join(where)} ORDER BY r.seq"
    )
    if limit is not None:
        sql += " LIMIT :limit"
        params["limit"] = int(limit)
    return [_record(row) for row in conn.all(sql, params)]


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    checked: int
    #: The first record where the chain breaks (``None`` when intact).
    broken_seq: int | None = None
    reason: str = ""


def verify(db: Database, *, chunk: int = 2000) -> AuditVerification:
    """Walk the chain from its base; the first record whose hash, link, position or
    study index does not hold is named, and so is a head that the records do not reach."""
    with db.reader() as conn:
        last_seq, last_hash, base_seq, base_hash = conn.one(
            "SELECT last_seq, last_hash, base_seq, base_hash FROM audit_chain WHERE id = 1"
        )
    expected_seq, prev, checked = int(base_seq) + 1, base_hash, 0
    while True:
        with db.reader() as conn:
            rows = conn.all(
                f"SELECT {_COLUMNS} FROM audit_records WHERE seq > :after ORDER BY seq LIMIT :n",
                {"after": expected_seq - 1, "n": chunk},
            )
            if not rows:
                break
            indexed: dict[int, set[str]] = {}
            for seq, uid in conn.all(
                "SELECT seq, study_uid FROM audit_studies WHERE seq >= :lo AND seq <= :hi",
                {"lo": int(rows[0][0]), "hi": int(rows[-1][0])},
            ):
                indexed.setdefault(int(seq), set()).add(uid)
        for row in rows:
            record = _record(row)
            if record.seq != expected_seq:
                return AuditVerification(
                    False, checked, expected_seq, f"record {expected_seq} is missing"
                )
            if record.prev_hash != prev:
                return AuditVerification(
                    False,
                    checked,
                    record.seq,
                    f"record {record.seq} does not chain to the record before it",
                )
            fields = dict(zip((c.strip() for c in _COLUMNS.split(",")), row, strict=True))
            if record_hash(fields) != record.hash:
                return AuditVerification(
                    False, checked, record.seq, f"record {record.seq} was altered"
                )
            if indexed.get(record.seq, set()) != set(record.study_uids):
                return AuditVerification(
                    False,
                    checked,
                    record.seq,
                    f"record {record.seq}: the study index does not match the record",
                )
            prev, expected_seq, checked = record.hash, record.seq + 1, checked + 1
    if expected_seq - 1 != int(last_seq) or prev != last_hash:
        return AuditVerification(
            False,
            checked,
            expected_seq,
            f"the chain head names record {last_seq} but the records end at {expected_seq - 1}"
            if expected_seq - 1 != int(last_seq)
            else f"record {expected_seq - 1} is not the chain head",
        )
    return AuditVerification(True, checked)


def prune(conn: Connection, cutoff: str) -> int:
    """Remove the records before the first one at or after ``cutoff``; the chain's base
    moves to the last removed record, so verification still holds."""
    last_seq, _last_hash, base_seq, _base_hash = conn.one(
        "UPDATE audit_chain SET base_seq = base_seq WHERE id = 1"
        " RETURNING last_seq, last_hash, base_seq, base_hash"
    )
    first_kept = conn.one(
        "SELECT MIN(seq) FROM audit_records WHERE event_time >= :cutoff", {"cutoff": cutoff}
    )[0]
    upto = int(last_seq) if first_kept is None else int(first_kept) - 1
    if upto <= int(base_seq):
        return 0
    row = conn.one("SELECT hash FROM audit_records WHERE seq = :s", {"s": upto})
    if row is None:
        return 0
    conn.execute("DELETE FROM audit_studies WHERE seq <= :s", {"s": upto})
    removed = conn.execute("DELETE FROM audit_records WHERE seq <= :s", {"s": upto}).rowcount
    conn.execute(
        "UPDATE audit_chain SET base_seq = :s, base_hash = :h WHERE id = 1",
        {"s": upto, "h": row[0]},
    )
    return int(removed)


class AuditQueue:
    """Events from hot paths, appended by a background thread every ``interval`` seconds
    (sooner when ``FLUSH_BATCH`` are waiting), each flush one transaction."""

    def __init__(
        self,
        db: Database,
        *,
        interval: float = 0.5,
        retention_days: int = 0,
        writer: IndexWriter | None = None,
        exporter: SyslogExporter | None = None,
    ) -> None:
        self.db = db
        self.writer = writer
        #: Gets each appended record, in chain order (``[audit.syslog]``).
        self.exporter = exporter
        self.interval = interval
        self.retention_days = retention_days
        self._next_prune = 0.0
        self._events: deque[AuditEvent] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def put(self, event: AuditEvent) -> None:
        self._events.append(event)
        if self._thread is None:
            self._start()
        if len(self._events) >= FLUSH_BATCH:
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name="audit-writer", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()
            if self.retention_days > 0 and time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY
                self.prune_expired()

    def prune_expired(self) -> int:
        """Remove the records older than ``retention_days``; the removal is on record."""
        cutoff = time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - self.retention_days * 86400)
        )
        try:
            removed = int(self.db.transaction(lambda conn: prune(conn, cutoff)))
        except Exception as exc:  # noqa: BLE001 - tried again at the next turn
            log.error("audit: retention pruning failed: %s", type(exc).__name__)
            return 0
        if removed:
            log.info("audit: %d record(s) older than %s removed (retention)", removed, cutoff)
            self.put(
                AuditEvent(
                    action=AuditAction.AUDIT_PRUNE,
                    principal="noctis",
                    principal_kind="system",
                    detail=f"{removed} record(s) before {cutoff} removed (retention)",
                )
            )
        return removed

    def flush(self) -> None:
        """Append every queued event now (in this thread)."""
        with self._flush_lock:
            while self._events:
                batch: list[AuditEvent] = []
                while self._events and len(batch) < FLUSH_BATCH:
                    batch.append(self._events.popleft())
                try:
                    seqs = self._append(batch)
                except Exception as exc:  # the index is down: keep them for the next flush
                    log.error(
                        "audit: %d records not written yet: %s", len(batch), type(exc).__name__
                    )
                    self._events.extendleft(reversed(batch))
                    excess = len(self._events) - MAX_QUEUED
                    for _ in range(max(excess, 0)):
                        self._events.popleft()
                        self.dropped += 1
                    if excess > 0:
                        log.error("audit: %d queued records dropped (index unavailable)", excess)
                    return
                if self.exporter is not None:
                    self.exporter.submit(zip(seqs, batch, strict=True))

    def append_now(self, event: AuditEvent) -> int:
        """Append ``event`` after every queued one, committed on return; its sequence
        number (this process's records keep the order they happened in, here and in the
        syslog export)."""
        with self._flush_lock:
            self.flush()
            (seq,) = self._append([event])
            if self.exporter is not None:
                self.exporter.submit([(seq, event)])
            return seq

    def _append(self, batch: list[AuditEvent]) -> list[int]:
        """One append: inside the ingest group commit when there is a writer (a batch of
        stores in progress takes the records along, last, without a commit of their own)."""
        if self.writer is not None:
            seqs = self.writer.run(lambda conn: append(conn, batch), last=True)
        else:
            seqs = self.db.transaction(lambda conn: append(conn, batch))
        return [int(seq) for seq in seqs]

    def pending(self) -> int:
        return len(self._events)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._start_lock:  # a thread being started by ``put`` has started after this
            thread = self._thread
        if thread is not None:
            thread.join(timeout=30)
        self.flush()
        if self.exporter is not None:
            self.exporter.close()
