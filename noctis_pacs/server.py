"""Process wiring: the only module that knows every package.

``serve`` builds the archive, the metrics registry, the DIMSE Application
Entity and the DICOMweb application from one ``Settings`` and runs them in
one process until interrupted.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from noctis_pacs.events import WorkflowWorker
from noctis_pacs.metrics import Metrics, build_metrics
from noctis_pacs.settings import Settings
from storage.archive import Archive
from storage.tracking import workflow_backends

log = logging.getLogger("noctis.server")


def build_dimse(settings: Settings, archive: Archive, metrics: Metrics) -> Any:
    from dimse.server import DimseServer

    return DimseServer(settings=settings, archive=archive, metrics=metrics)


def build_http_app(settings: Settings, archive: Archive, metrics: Metrics) -> Any:
    from dicomweb.app import create_app

    return create_app(settings=settings, archive=archive, metrics=metrics)


def serve(settings: Settings, *, http: bool = True, dimse: bool = True) -> None:
    """Run HTTP and/or DIMSE until SIGINT / SIGTERM."""
    metrics = build_metrics()
    archive = Archive(settings)
    removed = archive.blobs.clean_temporary()
    if removed:
        log.info("removed %d leftover temporary files of interrupted writes", removed)
    dimse_server = None
    # Study tracking, stability and webhook delivery (noctis_pacs/events.py).
    workflow_worker = WorkflowWorker(settings, **workflow_backends(settings, archive.db))
    workflow_worker.start()
    try:
        if dimse and settings.dimse.enabled:
            dimse_server = build_dimse(settings, archive, metrics)
            dimse_server.start()
            log.info(
                "DIMSE %s listening on %s:%d",
                settings.dimse.ae_title,
                settings.dimse.host,
                settings.dimse.port,
            )
        if http and settings.http.enabled:
            import uvicorn

            app = build_http_app(settings, archive, metrics)
            config = uvicorn.Config(
                app,
                host=settings.http.host,
                port=settings.http.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
            log.info("HTTP listening on %s:%d", settings.http.host, settings.http.port)
            uvicorn.Server(config).run()
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
    finally:
        workflow_worker.stop()
        if dimse_server is not None:
            dimse_server.stop()
        archive.close()
        log.info("stopped")
