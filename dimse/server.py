"""The DIMSE Application Entity: built by the wiring, ``start`` binds, ``stop`` closes."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pynetdicom import AE

from dimse import fastpath
from dimse.access import AccessPolicy
from dimse.fastpath.contexts import supported_contexts
from dimse.fastpath.direct import DirectServer
from dimse.fastpath.listener import (
    DimseListener,
    listener_class,
    report_closed_by_event,
    request_handler,
)
from dimse.services import Services, build_services
from dimse.status import operation_status_label
from dimse.store import DirectStore
from dimse.tls import server_context
from noctis_pacs.core.metrics import Metric, Metrics
from noctis_pacs.core.settings import Settings
from storage.archive import Archive

log = logging.getLogger("noctis.dimse")

IMPLEMENTATION_VERSION_NAME = "NOCTIS_PACS_01"


def build_ae(settings: Settings, services: Services) -> AE:
    dimse = settings.dimse
    ae = AE(ae_title=dimse.ae_title)
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.maximum_associations = dimse.max_associations
    ae.acse_timeout = dimse.acse_timeout
    ae.dimse_timeout = dimse.dimse_timeout
    ae.network_timeout = dimse.network_timeout
    ae.maximum_pdu_size = dimse.max_pdu
    for cx in services.contexts:
        roles: dict[str, bool] = {"scu_role": True, "scp_role": True} if cx.roles else {}
        ae.add_supported_context(cx.abstract_syntax, list(cx.transfer_syntaxes), **roles)
    return ae


class WorkerPool(Protocol):
    """What the serving process needs of the DIMSE worker processes the wiring spawns."""

    def hand_off(self, connection: socket.socket, address: Any) -> bool: ...

    def local_closed(self) -> None: ...

    def collect_metrics(self) -> list[list[Metric]]: ...

    @property
    def pids(self) -> list[int]: ...

    def stop(self) -> None: ...


#: Starts ``count`` worker processes serving connections the primary hands them.
SpawnWorkers = Callable[[Settings, int], WorkerPool]


class DimseServer:
    """Owns the DIMSE listener. With ``dimse.workers`` > 1 the primary server also
    starts ``workers - 1`` worker processes and hands them connections
    (``dimse.workers``); a worker's server (``primary=False``) binds nothing and
    serves what ``serve_connection`` gives it."""

    def __init__(
        self,
        *,
        settings: Settings,
        archive: Archive,
        metrics: Metrics,
        primary: bool = True,
        on_closed: Callable[[], None] | None = None,
        spawn_workers: SpawnWorkers | None = None,
    ) -> None:
        self.settings = settings
        self.archive = archive
        self.metrics = metrics
        self.primary = primary
        self._on_closed = on_closed
        self._spawn_workers = spawn_workers
        self._server: DimseListener | None = None
        self._thread: threading.Thread | None = None
        self._workers: WorkerPool | None = None
        #: This process's DIMSE fast path once started (``None``: stock pynetdicom); the
        #: SCUs of send jobs and routing use it too.
        self.fast: fastpath.FastPath | None = None

    def start(self) -> None:
        dimse = self.settings.dimse
        fastpath.configure_pynetdicom()
        fast = fastpath.enable(
            enabled=dimse.fast_path, metrics=self.metrics, pending_interval=dimse.pending_interval
        )
        self.fast = fast
        policy = AccessPolicy.from_settings(dimse, lookup=self.archive.remotes.by_ae_title)
        services = build_services(
            settings=self.settings, archive=self.archive, metrics=self.metrics, policy=policy
        )
        ae = build_ae(self.settings, services)
        extra = dimse.workers - 1
        if self.primary and extra > 0 and self._spawn_workers is not None:
            self._workers = self._spawn_workers(self.settings, extra)
            # /metrics counts the associations the workers serve too.
            self.metrics.add_source(self._workers.collect_metrics)
        hand_off = self._workers.hand_off if self._workers is not None else None
        on_closed = self._workers.local_closed if self._workers is not None else self._on_closed
        listener = listener_class(
            fast=fast,
            handshake_timeout=dimse.acse_timeout,
            blobs=self.archive,
            passive=not self.primary,
            hand_off=hand_off,
            on_closed=on_closed,
        )
        try:
            server = ae.make_server(
                (dimse.host, dimse.port),
                ae_title=dimse.ae_title,
                # Stock pynetdicom deep-copies the AE's own list per association.
                contexts=supported_contexts(ae) if fast is not None else None,
                ssl_context=server_context(dimse),
                evt_handlers=services.bindings,
                server_class=listener,
                request_handler=request_handler(fast),
            )
        except BaseException:
            self.stop()
            raise
        assert isinstance(server, DimseListener)
        if fast is None:
            report_closed_by_event(server)
        else:
            metrics = self.metrics

            def echoed(status: int, seconds: float) -> None:
                metrics.dimse_operation_done("C-ECHO", operation_status_label(status), seconds)

            server.direct = DirectServer(
                ae,
                server.contexts,
                admits=policy.admits_by_settings,
                echoed=echoed,
                counters=fast.counters,
                stores=DirectStore(self.archive, policy, self.metrics),
            )
        self._server = server
        if self.primary:
            self._thread = threading.Thread(
                target=server.serve_forever, name="dimse-acceptor", daemon=True
            )
            self._thread.start()

    def serve_connection(self, connection: socket.socket, address: Any) -> None:
        """Serve a connection the primary server accepted (in a worker process)."""
        assert self._server is not None
        self._server.serve_connection(connection, address)

    @property
    def port(self) -> int:
        """The bound port (useful with ``port = 0``)."""
        return int(self._server.server_address[1]) if self._server is not None else 0

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty with ``workers = 1``)."""
        return self._workers.pids if self._workers is not None else []

    def stop(self) -> None:
        if self._workers is not None:
            self._workers.stop()
            self._workers = None
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()  # ends serve_forever and closes
            else:
                self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
