"""SQLite writers of several processes (``dimse.workers``) take turns on an ``flock``
of the database's ``-writer`` file (``storage.db._WriterTurn``): a writer waits for the
turn in the kernel and goes on as soon as it is free, instead of sleeping in SQLite's
busy handler; a process that dies holding the turn frees it."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from storage.db import SqliteDatabase


def _make(path: Path) -> SqliteDatabase:
    db = SqliteDatabase(path)
    db.transaction(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)"))
    return db


def _count(db: SqliteDatabase) -> int:
    with db.reader() as conn:
        return int(conn.one("SELECT count(*) FROM t")[0])


def test_a_writer_waits_for_another_processes_turn_and_goes_on_when_it_ends(
    tmp_path: Path,
) -> None:
    path = tmp_path / "index.sqlite3"
    db = _make(path)
    try:
        # Another process's turn, as its flock (the lock is per open file, as a
        # separate process holds it).
        holder = os.open(f"{path.resolve()}-writer", os.O_RDWR)
        fcntl.flock(holder, fcntl.LOCK_EX)
        done = threading.Event()

        def write() -> None:
            db.transaction(lambda c: c.execute("INSERT INTO t VALUES (1)"))
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.5), "wrote while another process held the turn"
        fcntl.flock(holder, fcntl.LOCK_UN)
        os.close(holder)
        assert done.wait(5), "did not write once the turn was free"
        writer.join()
        assert _count(db) == 1
    finally:
        db.close()


def test_a_process_killed_during_its_turn_frees_it(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    _make(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_FOREVER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "inside"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        db = SqliteDatabase(path)
        started = time.monotonic()
        db.transaction(lambda c: c.execute("INSERT INTO t VALUES (2)"))
        assert time.monotonic() - started < 5
        # The killed writer's row never committed; ours did.
        assert _count(db) == 1
        db.close()
    finally:
        if child.poll() is None:
            child.kill()


def test_databases_on_one_file_in_one_process_share_the_turn(tmp_path: Path) -> None:
    """Two separate flocks in one process would wait on each other; one turn per file."""
    path = tmp_path / "index.sqlite3"
    first, second = _make(path), SqliteDatabase(path)
    try:
        first.transaction(lambda c: c.execute("INSERT INTO t VALUES (1)"))
        second.transaction(lambda c: c.execute("INSERT INTO t VALUES (2)"))
        assert _count(first) == 2
        assert first._turn is second._turn
    finally:
        first.close()
        second.close()
    # Closed, the writer file's descriptor is gone with the last user.
    assert not [f for f in os.listdir("/proc/self/fd") if _names(f, path)]


def _names(fd: str, path: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(f"{path.name}-writer")
    except OSError:
        return False


_HOLD_FOREVER = """
import sys, time
from pathlib import Path
from storage.db import SqliteDatabase

db = SqliteDatabase(Path(sys.argv[1]))

def hold(conn):
    conn.execute("INSERT INTO t VALUES (9)")
    print("inside", flush=True)
    time.sleep(600)

db.transaction(hold)
"""
