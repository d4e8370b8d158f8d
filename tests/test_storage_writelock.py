"""The SQLite index's write lock file (storage/db.py): write transactions of processes
sharing one index take turns on ``<index>-writelock`` before SQLite's own lock, so a
waiting process gets in as soon as the holder commits instead of sleeping in SQLite's
busy handler; a holder past ``LOCK_WAIT`` leaves the wait to SQLite's locking."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import db as dbmod
from storage.db import SqliteDatabase

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "index.db")
    database.transaction(lambda conn: conn.raw.execute("CREATE TABLE t (n INTEGER)"))
    yield database
    database.close()


def _held_elsewhere(path: Path) -> int:
    """The lock file locked through another open file (as another process holds it)."""
    fd = os.open(f"{path}-writelock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _insert_in_thread(database: SqliteDatabase) -> threading.Event:
    done = threading.Event()

    def insert() -> None:
        database.transaction(lambda conn: conn.raw.execute("INSERT INTO t VALUES (1)"))
        done.set()

    threading.Thread(target=insert, daemon=True).start()
    return done


def _rows(database: SqliteDatabase) -> int:
    with database.reader() as conn:
        return int(conn.raw.execute("SELECT count(*) FROM t").fetchone()[0])


def test_a_write_waits_for_the_lock_file_and_goes_in_when_it_is_released(
    database: SqliteDatabase,
) -> None:
    fd = _held_elsewhere(database.path)
    try:
        done = _insert_in_thread(database)
        assert not done.wait(0.3)  # waiting for the other holder
        assert _rows(database) == 0
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert done.wait(5)
    assert _rows(database) == 1
    # Released after the commit: the other side can take it at once.
    fd = _held_elsewhere(database.path)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def test_a_holder_past_the_wait_leaves_it_to_sqlite(
    database: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dbmod, "LOCK_WAIT", 0.2)
    fd = _held_elsewhere(database.path)
    try:
        started = time.monotonic()
        done = _insert_in_thread(database)
        assert done.wait(5)
        assert time.monotonic() - started >= 0.2
        assert _rows(database) == 1
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
