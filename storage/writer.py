"""Group commit: one index writer per process, many storing threads.

Each store hands its index work to the writer and waits.  The writer takes
every job queued at that moment (up to ``max_batch``), applies each inside a
savepoint of one transaction, commits once and then wakes every waiter, so an
acknowledged instance is always committed, and concurrent stores share one
commit (and one fsync of the SQLite WAL).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from storage.db import Connection, Database

log = logging.getLogger("noctis.storage.writer")

Job = Callable[[Connection], Any]


class IndexWriter:
    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[Job, Future[Any]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="noctis-index-writer", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, job: Job) -> Future[Any]:
        future: Future[Any] = Future()
        if self._closed:
            future.set_exception(RuntimeError("index writer is closed"))
            return future
        self._queue.put((job, future))
        return future

    def run(self, job: Job) -> Any:
        """Submit ``job`` and wait for its committed result (or its exception)."""
        return self.submit(job).result()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._apply(batch)
            if stop:
                return

    def _apply(self, batch: list[tuple[Job, Future[Any]]]) -> None:
        results: list[tuple[bool, Any]] = []

        def work(conn: Connection) -> None:
            results.clear()
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
