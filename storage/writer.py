"""Group commit: one index writer at a time per process, many storing threads.

A store queues its index work and then tries to become the leader.  The leader
takes every job queued at that moment (up to ``max_batch``), applies each inside
a savepoint of one transaction, commits once and completes every job's future,
then looks again; threads that found a leader already at work wait for their
future.  So an acknowledged instance is always committed, concurrent stores share
one commit (and one fsync of the SQLite WAL), and an uncontended store commits on
its own thread without waking another (a hand-off costs more than the commit on
two cores, where a woken thread can wait a whole GIL switch interval).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from storage.db import Connection, Database

log = logging.getLogger("noctis.storage.writer")

Job = Callable[[Connection], Any]
T = TypeVar("T")


class Pending(Generic[T]):
    """A job's result, given by whichever thread applied it: ``concurrent.futures.Future``
    without what the writer does not use (a Future builds a ``Condition`` and notifies
    it: a few percent of a small C-STORE's interpreter time)."""

    __slots__ = ("_done", "_value", "_error")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()  # released once, when the result is in
        self._value: Any = None
        self._error: BaseException | None = None

    def set_result(self, value: T) -> None:
        self._value = value
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done.release()

    def result(self) -> T:
        """Wait for the job; its return value, or its exception raised here."""
        with self._done:
            pass
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value


class _Refused(Exception):
    """A lone job's own exception, carried out of its (rolled back) transaction."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class IndexWriter:
    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._pending: deque[tuple[Job, Pending[Any]]] = deque()
        #: Jobs applied after every other job of their batch (``submit(last=True)``).
        self._last: set[int] = set()
        self._leader = threading.Lock()
        self._closed = False

    def submit(self, job: Job, *, last: bool = False) -> Pending[Any]:
        """Queue ``job``; it is applied by this thread if no other is writing, else by the
        thread that is (before that thread lets go). A ``last`` job runs after the other
        jobs of its batch: the audit trail's appends, whose chain-head lock is then held
        only while the batch commits."""
        future: Pending[Any] = Pending()
        if self._closed:
            future.set_exception(RuntimeError("index writer is closed"))
            return future
        if last:
            self._last.add(id(future))
        self._pending.append((job, future))
        self._lead(blocking=False)
        return future

    def run(self, job: Job, *, last: bool = False) -> Any:
        """Apply ``job`` in a committed transaction and return its result (or raise)."""
        return self.submit(job, last=last).result()

    def close(self) -> None:
        self._closed = True
        self._lead(blocking=True)

    def _lead(self, *, blocking: bool) -> None:
        # Queue first, then try to lead; a leader looks at the queue again after letting
        # go, so no job is left behind by a thread that found the leader busy.
        while self._pending and self._leader.acquire(blocking=blocking):
            try:
                while self._pending:
                    batch: list[tuple[Job, Pending[Any]]] = []
                    while self._pending and len(batch) < self.max_batch:
                        batch.append(self._pending.popleft())
                    if self._last:
                        batch.sort(key=lambda item: id(item[1]) in self._last)
                        self._last.difference_update(id(item[1]) for item in batch)
                    self._apply(batch)
            finally:
                self._leader.release()

    def _apply(self, batch: list[tuple[Job, Pending[Any]]]) -> None:
        results: list[tuple[bool, Any]] = []

        def work(conn: Connection) -> None:
            results.clear()
            if len(batch) == 1:
                # A lone job needs no savepoint: its failure rolls the whole transaction
                # back (a savepoint and its release are two statements more per store,
                # on PostgreSQL two round trips).
                try:
                    results.append((True, batch[0][0](conn)))
                except Exception as exc:
                    if self.db._retryable(exc):
                        raise
                    raise _Refused(exc) from exc
                return
            cur = conn.raw.cursor()
            for index, (job, _) in enumerate(batch):
                savepoint = f"sp{index}"
                cur.execute(f"SAVEPOINT {savepoint}")
                try:
                    results.append((True, job(conn)))
                    cur.execute(f"RELEASE SAVEPOINT {savepoint}")
                except Exception as exc:
                    if self.db._retryable(exc):
                        raise
                    cur.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                    cur.execute(f"RELEASE SAVEPOINT {savepoint}")
                    results.append((False, exc))

        try:
            self.db.transaction(work)
        except _Refused as refused:  # the lone job's own failure, nothing written
            batch[0][1].set_exception(refused.error)
            return
        except Exception as exc:
            log.error("index batch of %d failed: %s", len(batch), type(exc).__name__)
            for _, future in batch:
                future.set_exception(exc)
            return
        for (ok, value), (_, future) in zip(results, batch, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
