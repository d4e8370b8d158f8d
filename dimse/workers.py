"""DIMSE worker processes: ``dimse.workers`` listeners sharing one port.

The serving process owns the first listener; ``WorkerPool.spawn`` starts
``workers - 1`` more with the ``spawn`` start method (no fork of a process that
runs threads).  Each worker builds its own ``Archive`` and ``DimseServer`` from
the pickled ``Settings`` and binds the same address with ``SO_REUSEPORT``, so
the kernel spreads new associations across the processes; the index is shared
(SQLite in WAL mode with a busy timeout, or PostgreSQL) and the blob store is
the same directory, so nothing a worker needs lives only in another's memory.

Each worker holds one end of a pipe to the serving process: it reports
``ready`` once bound, and shuts down (closing its listener and archive) when the
pipe closes, which happens on ``WorkerPool.stop`` and also when the serving
process dies without stopping it.

Metrics of a worker stay in that worker's registry: the HTTP ``/metrics``
endpoint of the serving process shows only the associations it served itself.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import FrameType

from noctis_pacs.settings import Settings

log = logging.getLogger("noctis.dimse.workers")

READY = "ready"
#: Seconds a worker has to import, open the archive and bind.
START_TIMEOUT = 60.0
#: Seconds a worker has to finish its associations after being asked to stop.
STOP_TIMEOUT = 10.0


class WorkerError(RuntimeError):
    """A worker process did not come up."""


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run_worker(settings: Settings, pipe: Connection) -> None:
    """Entry point of one worker process (runs in the child)."""
    from dimse.server import DimseServer
    from noctis_pacs.logs import configure_logging
    from noctis_pacs.metrics import build_metrics
    from storage.archive import Archive

    # Ctrl-C reaches the whole process group; the serving process decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _raise_exit)
    configure_logging(settings.logging.level, settings.logging.format)
    archive = Archive(settings)
    server = DimseServer(settings=settings, archive=archive, metrics=build_metrics(), primary=False)
    try:
        server.start()
        pipe.send(READY)
        while True:
            pipe.recv()  # EOFError when the serving process stops us or dies
    except (EOFError, OSError, SystemExit):
        pass
    finally:
        server.stop()
        archive.close()


@dataclasses.dataclass
class _Worker:
    process: BaseProcess
    pipe: Connection


class WorkerPool:
    """The extra DIMSE listener processes of one serving process."""

    def __init__(self) -> None:
        self._workers: list[_Worker] = []

    @classmethod
    def spawn(cls, settings: Settings, *, count: int, port: int) -> WorkerPool:
        """Start ``count`` workers listening on ``port`` (the port the first listener bound)."""
        pool = cls()
        worker_settings = dataclasses.replace(
            settings, dimse=dataclasses.replace(settings.dimse, port=port)
        )
        context = multiprocessing.get_context("spawn")
        try:
            for number in range(count):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(
                    target=run_worker,
                    args=(worker_settings, theirs),
                    name=f"noctis-dimse-worker-{number + 1}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                pool._workers.append(_Worker(process, ours))
            for worker in pool._workers:
                pool._wait_ready(worker)
        except BaseException:
            pool.stop()
            raise
        log.info("%d DIMSE worker process(es) listening on port %d", count, port)
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

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    def stop(self) -> None:
        """Close every worker's pipe (they shut down), then wait; terminate stragglers."""
        for worker in self._workers:
            worker.pipe.close()
        for worker in self._workers:
            worker.process.join(STOP_TIMEOUT)
            if worker.process.is_alive():
                log.warning("DIMSE worker %s did not stop; terminating", worker.process.name)
                worker.process.terminate()
                worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
        self._workers.clear()
