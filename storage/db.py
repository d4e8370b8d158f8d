"""Database access for the index: one interface, two dialects.

SQL is written once with ``:name`` parameters; only placeholders, a few types
and escaping differ between SQLite and PostgreSQL.  Work is a function applied
to a transaction and retried on serialisation failures and lock time-outs
(the Orthanc pattern).  SQLite runs in WAL mode with one writer per process
(see ``storage.writer``) and a connection per reading thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

log = logging.getLogger("noctis.storage.db")

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any]

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


class Cursor(Protocol):
    """The slice of the DB-API cursor we use, common to sqlite3 and psycopg."""

    rowcount: int

    def execute(self, sql: str, params: Any = ...) -> Any: ...
    def executemany(self, sql: str, params: Any) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class DatabaseError(RuntimeError):
    """The index could not be reached or used; the message says what to do."""


class IndexBusyError(DatabaseError):
    """The index did not answer in time (pool exhausted, lock held); retry later."""


class Connection:
    """A dialect-aware wrapper: ``q(sql, params)`` runs ``:name``-style SQL."""

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.dialect = dialect
        self._cache: dict[str, str] = {}

    def sql(self, text: str) -> str:
        if self.dialect == "sqlite":
            return text
        cached = self._cache.get(text)
        if cached is None:
            cached = _NAMED.sub(r"%(\1)s", text.replace("%", "%%"))
            self._cache[text] = cached
        return cached

    def execute(self, text: str, params: Mapping[str, Any] | None = None) -> Cursor:
        cur: Cursor = self.raw.cursor()
        cur.execute(self.sql(text), params or {})
        return cur

    def executemany(self, text: str, rows: Sequence[Mapping[str, Any]]) -> None:
        cur = self.raw.cursor()
        cur.executemany(self.sql(text), rows)

    def positional(self, text: str, params: Sequence[Any]) -> Cursor:
        """Run SQL from the query compiler, which already uses the dialect's placeholder."""
        cur: Cursor = self.raw.cursor()
        cur.execute(text, tuple(params))
        return cur

    def one(self, text: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.execute(text, params).fetchone()

    def all(self, text: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return self.execute(text, params).fetchall()


class Database:
    """Base for the two backends; see ``open_database``."""

    dialect: str = ""
    placeholder: str = "?"

    def url_for_logs(self) -> str:
        raise NotImplementedError

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        raise NotImplementedError
        yield  # pragma: no cover

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _retryable(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def is_unavailable(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the index cannot be reached or written right now (server
        down or restarting, disk full, pool exhausted), as opposed to a bug: callers
        answer "out of resources, retry" instead of "processing failure"."""
        return isinstance(exc, DatabaseError)

    def transaction(self, work: Callable[[Connection], T], *, attempts: int = 8) -> T:
        """Apply ``work`` in one transaction, retried on serialisation failure / lock."""
        delay = 0.01
        for attempt in range(1, attempts + 1):
            with self._write_connection() as conn:
                try:
                    result = work(conn)
                    conn.raw.commit()
                    return result
                except BaseException as exc:
                    conn.raw.rollback()
                    if attempt < attempts and self._retryable(exc):
                        log.debug("transaction retry %d after %s", attempt, type(exc).__name__)
                        time.sleep(delay)
                        delay = min(delay * 2, 0.5)
                        continue
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        raise NotImplementedError


#: WAL size (pages) above which the background checkpointer copies it into the database.
CHECKPOINT_PAGES = 1000
#: SQLite's own checkpoint on commit, kept as the bound when writers never pause.
AUTOCHECKPOINT_PAGES = 16000
#: Seconds a write transaction waits for the write lock file before leaving the wait to
#: SQLite's own locking (its busy timeout then bounds it, as without the file).
LOCK_WAIT = 30.0
#: The first and the longest pause (seconds) between tries of a held lock file.
LOCK_POLL = 0.0001
LOCK_POLL_MAX = 0.002


class SqliteDatabase(Database):
    """SQLite in WAL mode; one connection per live thread, writes serialised per process.

    Association and threadpool threads come and go: a connection whose thread has
    ended is closed when the next thread opens one, so connections stay bounded by
    the threads alive at a time.

    Several processes share the file (``dimse.workers``, the HTTP server, the CLI):
    SQLite lets one write transaction in at a time and makes the others wait in its busy
    handler, which sleeps 1, 2, 5, 10 ms and more between tries, while a write
    transaction here (a group commit) holds the lock for ~0.3-0.6 ms. Write
    transactions therefore first take an advisory lock on ``<index>-writelock``
    (``flock``), tried every 0.1 ms growing to 2 ms, so a waiting process gets in about
    as soon as the holder commits (four storing associations over two DIMSE processes:
    +10% instances/s, docs/performance.md). The lock file is an optimisation only:
    SQLite's own locking still decides, and a process that does not use the file (an
    older version, ``sqlite3``) is merely waited for as before.

    Durable commits (``synchronous="FULL"``, what ``fsync = "always"`` asks) flush the
    WAL after the write locks are let go: the connections run ``synchronous=NORMAL``
    (a commit writes its WAL frames and returns; SQLite syncs the WAL before a
    checkpoint and the database file after one, so frames a restarted WAL overwrites are
    on disk in the database already) and ``transaction`` returns only once an
    ``fdatasync`` of the WAL file begun after the commit has finished. A commit is as
    durable when ``transaction`` returns as with ``FULL``, and the next writer, in this
    process or another, does not wait for the flush while holding the lock (the writers'
    flushes then overlap, and the file system joins them).

    WAL checkpoints run in a background thread (``_checkpoint_loop``) rather than in
    the committing store, whose client would otherwise wait for the checkpoint's
    fsyncs (their cost: docs/performance-dicomweb.md).  SQLite's
    own checkpoint on commit stays as the bound (``AUTOCHECKPOINT_PAGES``) for writers
    that never pause long enough for the background one to finish the WAL.
    """

    dialect = "sqlite"
    placeholder = "?"

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        #: ``FULL``: the WAL is flushed by ``transaction`` after the commit (class text).
        self._flush_wal = synchronous == "FULL"
        self.synchronous = "NORMAL" if self._flush_wal else synchronous
        self._wal = f"{path}-wal"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._by_thread: dict[threading.Thread, sqlite3.Connection] = {}
        self._all_lock = threading.Lock()
        conn = self._connect()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.commit()
        self._local.conn = Connection(conn, "sqlite")
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._lock_fd: int | None = None
        try:
            self._lock_fd = os.open(f"{path}-writelock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            log.warning("SQLite write lock file not created, not used: %s", exc)

    def url_for_logs(self) -> str:
        return f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=30.0, check_same_thread=False, isolation_level="DEFERRED"
        )
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA case_sensitive_like=ON")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        with self._all_lock:
            for thread in [t for t in self._by_thread if not t.is_alive()]:
                with suppress(sqlite3.Error):
                    self._by_thread.pop(thread).close()
            self._by_thread[threading.current_thread()] = conn
        return conn

    def _thread_conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = Connection(self._connect(), "sqlite")
            self._local.conn = conn
        return conn

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        conn = self._thread_conn()
        try:
            yield conn
        finally:
            if conn.raw.in_transaction:
                conn.raw.rollback()

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        with self._write_lock:
            if self._checkpointer is None and not self._stop.is_set():
                self._checkpointer = threading.Thread(
                    target=_checkpoint_loop,
                    args=(weakref.ref(self), self.path, self._stop),
                    name="sqlite-checkpoint",
                    daemon=True,
                )
                self._checkpointer.start()
            conn = self._thread_conn()
            held = self._lock_across_processes()
            try:
                conn.raw.execute("BEGIN IMMEDIATE")
                yield conn
            finally:
                if held:
                    self._unlock_across_processes()

    def transaction(self, work: Callable[[Connection], T], *, attempts: int = 8) -> T:
        result = super().transaction(work, attempts=attempts)
        if self._flush_wal:
            self._sync_wal()
        return result

    def _sync_wal(self) -> None:
        """Flush the WAL file: every commit written to it so far is on disk on return."""
        try:
            fd = os.open(self._wal, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return  # no WAL: the last connection checkpointed it into the file and synced
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _lock_across_processes(self) -> bool:
        """Wait for the write lock file (see the class text); whether it is now held. A
        lock file that cannot be used, or a holder past ``LOCK_WAIT``, leaves the wait
        to SQLite's own locking, as without the file."""
        fd = self._lock_fd
        if fd is None:
            return False
        deadline = time.monotonic() + LOCK_WAIT
        pause = LOCK_POLL
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 1.5, LOCK_POLL_MAX)
            except OSError as exc:  # a file system without flock: SQLite's locking alone
                log.warning("SQLite write lock file unusable, not used: %s", exc)
                self._lock_fd = None
                os.close(fd)
                return False

    def _unlock_across_processes(self) -> None:
        fd = self._lock_fd
        if fd is not None:
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def is_unavailable(self, exc: BaseException) -> bool:
        text = str(exc)
        return super().is_unavailable(exc) or (
            isinstance(exc, sqlite3.OperationalError)
            and any(w in text for w in ("locked", "disk is full", "disk I/O", "unable to open"))
        )

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
        with self._write_lock:
            fd, self._lock_fd = self._lock_fd, None
            if fd is not None:
                os.close(fd)
        with self._all_lock:
            for conn in self._by_thread.values():
                with suppress(sqlite3.Error):
                    conn.close()
            self._by_thread.clear()

    def open_connections(self) -> int:
        with self._all_lock:
            return len(self._by_thread)


def _checkpoint_loop(
    database: weakref.ref[SqliteDatabase], path: Path, stop: threading.Event
) -> None:
    """Copy the WAL into the database off the storing threads (PASSIVE: never blocks a
    reader or a writer; another process's checkpointer at work makes this one skip a
    turn), every 50 ms once the WAL file has reached ``CHECKPOINT_PAGES``: SQLite then
    writes the WAL from its start again without shrinking the file (so a commit's flush
    overwrites blocks rather than growing the file), and the file's size stays past the
    threshold. Checkpointing at most once a second instead measured no different
    (docs/performance.md, issue 15). Ends with ``close`` or when the database object
    is gone."""
    wal = Path(f"{path}-wal")
    conn: sqlite3.Connection | None = None
    try:
        while not stop.wait(0.05):
            if database() is None:
                return
            try:
                if wal.stat().st_size < CHECKPOINT_PAGES * 4096:
                    continue
                if conn is None:
                    conn = sqlite3.connect(path, timeout=0.1)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (OSError, sqlite3.Error) as exc:
                log.debug("background checkpoint skipped: %s", exc)
    finally:
        if conn is not None:
            conn.close()


class PostgresDatabase(Database):
    """PostgreSQL via psycopg 3 with a small connection pool."""

    dialect = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 8) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.schema = schema
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._size = 0
        self._max = pool_size
        self._lock = threading.Lock()
        try:
            self._release(self._new())
        except psycopg.OperationalError as exc:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {self.url_for_logs()}: {exc}. "
                "Check that the server runs and the URL (storage.db / --db) is right."
            ) from exc

    def url_for_logs(self) -> str:
        return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", self.url)

    def _new(self) -> Any:
        conn = self._psycopg.connect(self.url, autocommit=False)
        if self.schema:
            conn.execute(
                self._psycopg.sql.SQL("SET search_path TO {}").format(
                    self._psycopg.sql.Identifier(self.schema)
                )
            )
            conn.commit()
        with self._lock:
            self._size += 1
        return conn

    def _acquire(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            grow = self._size < self._max
        if grow:
            return self._new()
        try:
            return self._pool.get(timeout=60)
        except queue.Empty:
            raise IndexBusyError(
                f"all {self._max} connections to {self.url_for_logs()} stayed busy for 60 s"
            ) from None

    def _release(self, conn: Any) -> None:
        if conn.closed:
            with self._lock:
                self._size -= 1
            return
        self._pool.put(conn)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        raw = self._acquire()
        try:
            yield Connection(raw, "postgresql")
        finally:
            if not raw.closed and raw.info.transaction_status != 0:
                raw.rollback()
            self._release(raw)

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        with self._connection() as conn:
            yield conn

    @contextmanager
    def _write_connection(self) -> Iterator[Connection]:
        with self._connection() as conn:
            yield conn

    def is_unavailable(self, exc: BaseException) -> bool:
        psycopg = self._psycopg
        return super().is_unavailable(exc) or isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError
        )

    def _retryable(self, exc: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(
            exc,
            errors.SerializationFailure | errors.DeadlockDetected | errors.UniqueViolation,
        )

    def close(self) -> None:
        while True:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                break
            conn.close()


def open_database(url: str, *, synchronous: str = "FULL") -> Database:
    """Open the index named by ``url`` (``sqlite:///PATH`` or ``postgresql://...``).

    A ``?schema=NAME`` suffix on a PostgreSQL URL selects a schema (tests use one
    throw-away schema per session).
    """
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url[len("sqlite:///") :]), synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        base, _, query = url.partition("?")
        schema = None
        kept = []
        for part in query.split("&") if query else []:
            key, _, value = part.partition("=")
            if key == "schema":
                schema = value
            else:
                kept.append(part)
        full = base + ("?" + "&".join(kept) if kept else "")
        return PostgresDatabase(full, schema=schema)
    raise DatabaseError(f"unsupported index URL {url!r}: use sqlite:///PATH or postgresql://...")
