"""The group-commit writer's job results and the index's receive time stamps."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from noctis_pacs.core.settings import Settings
from storage.archive import Archive
from storage.db import Connection, Database
from storage.index import now_iso
from storage.writer import IndexWriter, Pending


def test_a_pending_result_set_by_another_thread_is_awaited() -> None:
    pending: Pending[int] = Pending()
    threading.Timer(0.05, pending.set_result, args=(7,)).start()
    assert pending.result() == 7
    assert pending.result() == 7  # asking again does not block


def test_a_pending_exception_is_raised_by_result() -> None:
    pending: Pending[int] = Pending()
    pending.set_exception(ValueError("bad job"))
    with pytest.raises(ValueError, match="bad job"):
        pending.result()


def test_now_iso_is_utc_with_microseconds_and_moves_on() -> None:
    first = now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first)
    parsed = datetime.strptime(first, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 1
    time.sleep(1.01)
    assert now_iso() > first


def _count(db: Database) -> int:
    with db.reader() as conn:
        return int(conn.one("SELECT COUNT(*) FROM remotes")[0])


def _add_remote(name: str) -> Callable[[Connection], str]:
    def job(conn: Connection) -> str:
        conn.execute(
            "INSERT INTO remotes (name, kind, ae_title, host, port, created_at, updated_at)"
            " VALUES (:n, 'dimse', 'AE', '127.0.0.1', 104, 'now', 'now')",
            {"n": name},
        )
        return name

    return job


def _add_then_fail(conn: Connection) -> None:
    _add_remote("half-written")(conn)
    raise LookupError("refused after a write")


def test_a_lone_failing_job_writes_nothing_and_raises_its_own_error(settings: Settings) -> None:
    """A job alone in its batch runs without a savepoint: its failure still rolls back
    what it wrote, reaches its caller as raised, and the next job commits."""
    archive = Archive(settings)
    try:
        writer = IndexWriter(archive.db)
        before = _count(archive.db)
        with pytest.raises(LookupError, match="refused after a write"):
            writer.run(_add_then_fail)
        assert _count(archive.db) == before
        assert writer.run(_add_remote("kept")) == "kept"
        assert _count(archive.db) == before + 1
    finally:
        archive.close()


def test_a_failing_job_in_a_batch_leaves_the_others_committed(settings: Settings) -> None:
    """Jobs queued together share one transaction, each in a savepoint: the one that
    fails is rolled back alone."""
    archive = Archive(settings)
    try:
        writer = IndexWriter(archive.db)
        before = _count(archive.db)
        with writer._leader:  # hold the lead so that the three jobs queue as one batch
            first = writer.submit(_add_remote("first"))
            failing = writer.submit(_add_then_fail)
            last = writer.submit(_add_remote("last"))
        writer._lead(blocking=True)
        assert first.result() == "first" and last.result() == "last"
        with pytest.raises(LookupError):
            failing.result()
        assert _count(archive.db) == before + 2
    finally:
        archive.close()
