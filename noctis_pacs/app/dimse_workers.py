"""DIMSE worker processes: ``dimse.workers`` processes serving one listening port.

The serving process owns the only listener; ``WorkerPool.spawn`` starts
``workers - 1`` more processes with the ``spawn`` start method (no fork of a
process that runs threads). Each worker builds its own ``Archive`` and
``DimseServer`` from the pickled ``Settings`` but binds nothing: the serving
process accepts every connection and serves it itself while it serves no more
associations than any worker, else hands it to the worker serving the fewest: a
lone association (a single modality, each C-ECHO of a monitor) pays no hand-off
(measured: docs/performance.md, issue 15), and concurrent ones spread evenly. The
socket travels over the worker's pipe as a passed file descriptor (``SCM_RIGHTS``),
before any TLS handshake, so the worker runs the handshake and the whole association.
An association counts as ended as soon as it is released, aborted or its transport
closes (``dimse/fastpath/listener.py``; on stock pynetdicom at ``EVT_CONN_CLOSE``,
after its teardown, and a bare TCP probe until ``dimse.acse_timeout``).

Why not ``SO_REUSEPORT``: the kernel spreads connections by a hash of their
addresses, which often puts three of four associations on one of two processes
(docs/performance-dimse.md); a hand-off by open association count is even by
construction.

The index is shared (SQLite in WAL mode with a busy timeout, or PostgreSQL) and
the blob store is the same directory, so nothing a worker needs lives only in
another's memory.

The pipe also carries the bookkeeping: a worker reports ``ready`` once it can
serve, ``taken`` when it holds a connection handed to it (until then the serving
process keeps its own copy, and serves the connection itself if the worker's pipe
ends first) and ``closed`` after each association; it stops on ``stop`` or when the
pipe closes (the serving process died). A worker that has died is not handed
connections: the serving process takes them itself.

Metrics: a worker counts in its own registry; when ``/metrics`` is scraped the
serving process asks each worker for its families over the pipe (``METRICS``)
and adds their counters and histograms to its own (``Metrics.add_source``), so
the endpoint counts every association whichever process served it. A worker
that does not answer in time, or has died, is counted as it last answered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import queue
import signal
import socket
import threading
import time
from multiprocessing import reduction
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from noctis_pacs.app.runtime import settle
from noctis_pacs.core.metrics import Metric
from noctis_pacs.core.settings import Settings

log = logging.getLogger("noctis.dimse.workers")

#: Worker -> serving process: able to serve connections.
READY = "ready"
#: Worker -> serving process: one association it served has ended.
CLOSED = "closed"
#: Worker -> serving process: it holds the connection just handed to it.
TAKEN = "taken"
#: Serving process, to a hand-off awaiting ``TAKEN``: the worker's pipe ended.
GONE = "gone"
#: Serving process -> worker: finish the open associations and exit.
STOP = "stop"
#: Serving process -> worker: ``(CONNECTION, peer address)``, then the socket's descriptor.
CONNECTION = "connection"
#: Serving process -> worker: ``(METRICS, number)``; the worker answers
#: ``(METRICS, number, families)`` with its metric families.
METRICS = "metrics"
#: Seconds a scrape waits for a worker's metric families.
METRICS_TIMEOUT = 2.0
#: Seconds a worker has to import, open the archive and report ready.
START_TIMEOUT = 60.0
#: Seconds a worker has to finish its associations after being asked to stop.
STOP_TIMEOUT = 10.0
#: Seconds a worker has to confirm it holds a connection handed to it.
TAKE_TIMEOUT = 10.0


class WorkerError(RuntimeError):
    """A worker process did not come up."""


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run_worker(settings: Settings, pipe: Connection) -> None:
    """Entry point of one worker process (runs in the child)."""
    from dimse.server import DimseServer
    from noctis_pacs.core.logs import configure_logging
    from noctis_pacs.core.metrics import build_metrics
    from storage.archive import Archive

    # Ctrl-C reaches the whole process group; the serving process decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_exit)
    configure_logging(settings.logging.level, settings.logging.format)
    sending = threading.Lock()

    def report(message: object) -> None:
        with sending, contextlib.suppress(OSError, ValueError):
            pipe.send(message)

    archive = Archive(settings)
    metrics = build_metrics()
    server = DimseServer(
        settings=settings,
        archive=archive,
        metrics=metrics,
        primary=False,
        on_closed=lambda: report(CLOSED),
    )
    try:
        server.start()
        settle()
        report(READY)
        while True:
            message = pipe.recv()  # EOFError when the serving process dies
            if message == STOP:
                break
            if isinstance(message, tuple) and message[0] == METRICS:
                report((METRICS, message[1], metrics.families()))
                continue
            if isinstance(message, tuple) and message[0] == CONNECTION:
                connection = socket.socket(fileno=reduction.recv_handle(pipe))
                report(TAKEN)
                server.serve_connection(connection, message[1])
    except (EOFError, OSError, SystemExit):
        pass
    finally:
        server.stop()
        archive.close()


@dataclasses.dataclass
class _Worker:
    process: BaseProcess
    pipe: Connection
    #: Associations handed to it and not yet reported closed.
    open: int = 0
    alive: bool = True
    reader: threading.Thread | None = None
    #: ``TAKEN`` or ``GONE`` for the hand-off in progress (one at a time, under ``sending``).
    answers: queue.Queue[str] = dataclasses.field(default_factory=queue.Queue)
    #: A hand-off is two writes; a ``stop`` from another thread must not split them.
    sending: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    #: ``(METRICS, number, families)`` answers, for the scrape awaiting ``number``.
    metrics: queue.Queue[tuple[str, int, list[Metric]]] = dataclasses.field(
        default_factory=queue.Queue
    )
    #: The families it last reported: counted while it does not answer, or after it died.
    families: list[Metric] = dataclasses.field(default_factory=list)


class WorkerPool:
    """The worker processes of one serving process, and the hand-off of connections."""

    def __init__(self) -> None:
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        #: Associations the serving process itself serves.
        self._local_open = 0
        #: One scrape at a time; ``_scrapes`` numbers them so a late answer is not
        #: taken for the next scrape's.
        self._scraping = threading.Lock()
        self._scrapes = 0

    @classmethod
    def spawn(cls, settings: Settings, *, count: int) -> WorkerPool:
        """Start ``count`` workers; each serves the connections ``hand_off`` gives it."""
        pool = cls()
        context = multiprocessing.get_context("spawn")
        try:
            for number in range(count):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(
                    target=run_worker,
                    args=(settings, theirs),
                    name=f"noctis-dimse-worker-{number + 1}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                pool._workers.append(_Worker(process, ours))
            for worker in pool._workers:
                pool._wait_ready(worker)
                worker.reader = threading.Thread(
                    target=pool._read, args=(worker,), name=f"{worker.process.name}-pipe"
                )
                worker.reader.daemon = True
                worker.reader.start()
        except BaseException:
            pool.stop()
            raise
        log.info("%d DIMSE worker process(es) started", count)
        return pool

    @staticmethod
    def _wait_ready(worker: _Worker) -> None:
        try:
            if worker.pipe.poll(START_TIMEOUT) and worker.pipe.recv() == READY:
                return
        except (EOFError, OSError):
            pass
        raise WorkerError(
            f"DIMSE worker {worker.process.name} did not start "
            f"(exit code {worker.process.exitcode}); see its log lines above"
        )

    def _read(self, worker: _Worker) -> None:
        """Count the worker's closed associations until its pipe ends."""
        while True:
            try:
                message = worker.pipe.recv()
            except (EOFError, OSError):
                break
            if message == CLOSED:
                with self._lock:
                    worker.open = max(0, worker.open - 1)
            elif message == TAKEN:
                worker.answers.put(TAKEN)
            elif isinstance(message, tuple) and message[0] == METRICS:
                worker.metrics.put(message)
        worker.answers.put(GONE)
        with self._lock:
            alive, worker.alive = worker.alive, False
        if alive:
            log.error(
                "DIMSE worker %s ended (exit code %s); its share of associations is "
                "served by the serving process until the server restarts",
                worker.process.name,
                worker.process.exitcode,
            )

    def hand_off(self, connection: socket.socket, address: Any) -> bool:
        """Give ``connection`` to the least busy worker, or keep it: False means the
        caller serves it (and reports its end with ``local_closed``)."""
        with self._lock:
            target = min((w for w in self._workers if w.alive), key=lambda w: w.open, default=None)
            if target is None or target.open >= self._local_open:
                self._local_open += 1
                return False
            target.open += 1
        # The connection is ours until the worker says it holds it: a worker that dies
        # meanwhile (its pipe can outlive its last thread by a moment and still accept
        # the descriptor) leaves the connection to the serving process, not reset.
        try:
            with target.sending:
                target.pipe.send((CONNECTION, address))
                reduction.send_handle(target.pipe, connection.fileno(), target.process.pid or 0)
                answer = target.answers.get(timeout=TAKE_TIMEOUT)
        except queue.Empty:
            log.error("%s did not take a connection; stopping it", target.process.name)
            target.process.kill()  # so that it cannot serve the connection too
            answer = GONE
        except (OSError, ValueError) as exc:
            log.error("cannot hand a connection to %s: %s", target.process.name, exc)
            answer = GONE
        if answer == TAKEN:
            return True
        with self._lock:
            target.alive = False
            target.open -= 1
            self._local_open += 1
        return False

    def local_closed(self) -> None:
        """One association served by the serving process has ended."""
        with self._lock:
            self._local_open = max(0, self._local_open - 1)

    def collect_metrics(self) -> list[list[Metric]]:
        """Every worker's metric families, asked for now (``METRICS``); a worker that
        does not answer within ``METRICS_TIMEOUT`` counts as it last answered."""
        with self._scraping:
            self._scrapes += 1
            number = self._scrapes
            asked = []
            for worker in list(self._workers):
                if not worker.alive:
                    continue
                try:
                    with worker.sending:
                        worker.pipe.send((METRICS, number))
                except (OSError, ValueError):
                    continue
                asked.append(worker)
            deadline = time.monotonic() + METRICS_TIMEOUT
            for worker in asked:
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        _, answered, families = worker.metrics.get(timeout=left)
                    except queue.Empty:
                        break
                    if answered == number:
                        worker.families = families
                        break
            return [worker.families for worker in self._workers]

    @property
    def open_associations(self) -> list[int]:
        """Open associations per process: the serving process first, then each worker."""
        with self._lock:
            return [self._local_open] + [w.open for w in self._workers]

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def stop(self) -> None:
        """Ask every worker to stop, then wait; terminate stragglers."""
        with self._lock:
            for worker in self._workers:
                worker.alive = False
        for worker in self._workers:
            with worker.sending, contextlib.suppress(OSError, ValueError):
                worker.pipe.send(STOP)
        for worker in self._workers:
            worker.process.join(STOP_TIMEOUT)
            if worker.process.is_alive():
                log.warning("DIMSE worker %s did not stop; terminating", worker.process.name)
                worker.process.terminate()
                worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            if worker.reader is not None:
                worker.reader.join(5)
            worker.pipe.close()
        self._workers.clear()


def spawn_workers(settings: Settings, count: int) -> WorkerPool:
    """The ``SpawnWorkers`` the wiring hands ``dimse.server.DimseServer``."""
    return WorkerPool.spawn(settings, count=count)
