"""The DIMSE Application Entity: built by the wiring, ``start`` binds, ``stop`` closes."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from pynetdicom import AE, _config
from pynetdicom.presentation import PresentationContext

from dimse import encoded
from dimse.access import AccessPolicy
from dimse.services import Services, build_services
from dimse.tls import server_context
from dimse.transport import DimseListener, DimseRequestHandler
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.settings import Settings
from storage.archive import Archive

log = logging.getLogger("noctis.dimse")

IMPLEMENTATION_VERSION_NAME = "NOCTIS_PACS_01"


def configure_pynetdicom() -> None:
    """pynetdicom's library globals, set in this one place (STYLE.md rule 4).

    - C-STORE data sets are written to a temporary file as they arrive, never
      held whole in memory and never decoded (``event.dataset_path``).
    - Request and response identifiers hold patient attributes: pynetdicom must
      not log them (STYLE.md rule 7).
    - C-FIND response identifiers Noctis encoded itself are sent as they are
      (``dimse.encoded``).
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    encoded.install()
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"


class SupportedContext(PresentationContext):
    """A supported presentation context whose deep copy shares its immutable UIDs.

    pynetdicom deep-copies the server's whole list of supported contexts for every
    association it accepts; ours (every storage SOP class x every transfer syntax,
    170 contexts) took 27 ms to copy because ``UID`` objects go through the generic
    reduce/reconstruct path. A context holds only UIDs (immutable strings), flags and
    a list of UIDs, so a copy with its own list is the same deep copy, in <1 ms."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SupportedContext:
        clone = SupportedContext()
        clone.__dict__.update(self.__dict__)
        clone._transfer_syntax = list(self._transfer_syntax)
        return clone


def supported_contexts(ae: AE) -> list[PresentationContext]:
    """The AE's supported contexts as ``SupportedContext`` (cheap per-association copy)."""
    contexts: list[PresentationContext] = []
    for cx in ae.supported_contexts:
        clone = SupportedContext()
        clone.__dict__.update(vars(cx))
        clone._transfer_syntax = list(cx._transfer_syntax)
        contexts.append(clone)
    return contexts


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
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._workers: WorkerPool | None = None

    def start(self) -> None:
        configure_pynetdicom()
        policy = AccessPolicy.from_settings(self.settings.dimse)
        services = build_services(
            settings=self.settings, archive=self.archive, metrics=self.metrics, policy=policy
        )
        ae = build_ae(self.settings, services)
        extra = self.settings.dimse.workers - 1
        if self.primary and extra > 0 and self._spawn_workers is not None:
            self._workers = self._spawn_workers(self.settings, extra)
        hand_off = self._workers.hand_off if self._workers is not None else None
        on_closed = self._workers.local_closed if self._workers is not None else self._on_closed
        listener = type(
            "NoctisListener",
            (DimseListener,),
            {
                "handshake_timeout": self.settings.dimse.acse_timeout,
                "spool_path": staticmethod(self.archive.spool_path),
                "pending_interval": self.settings.dimse.pending_interval,
                "passive": not self.primary,
                "hand_off": staticmethod(hand_off) if hand_off else None,
                "on_closed": staticmethod(on_closed) if on_closed else None,
            },
        )
        try:
            server = ae.make_server(
                (self.settings.dimse.host, self.settings.dimse.port),
                ae_title=self.settings.dimse.ae_title,
                contexts=supported_contexts(ae),
                ssl_context=server_context(self.settings.dimse),
                evt_handlers=services.bindings,
                server_class=listener,
                request_handler=DimseRequestHandler,
            )
        except BaseException:
            self.stop()
            raise
        self._server = server
        if self.primary:
            # What AE.start_server(block=False) does, with our listener class.
            ae._servers.append(server)
            self._thread = threading.Thread(
                target=server.serve_forever, name="dimse-acceptor", daemon=True
            )
            self._thread.start()

    def serve_connection(self, connection: socket.socket, address: Any) -> None:
        """Serve a connection the primary server accepted (in a worker process)."""
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
                self._server.shutdown()  # ends serve_forever, closes, leaves ae._servers
            else:
                self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
