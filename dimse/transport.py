"""Socket-level behaviour of the DIMSE listener.

- ``TCP_NODELAY`` on every DIMSE socket: a PDU written in two parts (PDU header,
  then P-DATA value) otherwise waits for the peer's delayed ACK, about 40 ms per
  message on loopback (Nagle's algorithm).
- The TLS handshake runs on the association's own thread, not on the accept
  loop, so a peer that connects and never completes the handshake cannot stop
  other peers from associating.
- ``SO_REUSEPORT`` when several worker processes share the port.
- Every accepted association gets the wake-ups of ``dimse.wakeup``: pynetdicom's
  loops then react to a message when it arrives instead of on their next 1 ms tick;
  the receive spool of ``dimse.spool`` (memory, then a file in the store); and
  C-FIND responses encoded by ``dimse.responses``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from typing import Any

from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dimse import responses, spool, wakeup

log = logging.getLogger("noctis.dimse.transport")


def set_nodelay(assoc: Any) -> None:
    """Turn off Nagle's algorithm on an association's socket."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class DimseRequestHandler(RequestHandler):
    """pynetdicom's request handler; the association it creates wakes on work."""

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        wakeup.attach(assoc)
        responses.attach(assoc)
        spool_path = getattr(self.server, "spool_path", None)
        if spool_path is not None:
            spool.attach(assoc, spool_path)
        return assoc


class DimseListener(ThreadedAssociationServer):
    """pynetdicom's threaded server with the socket options above."""

    #: Set by the wiring before ``server_bind`` runs (class attributes, per subclass).
    reuse_port: bool = False
    handshake_timeout: float = 30.0
    daemon_threads = True
    #: The listen backlog (socketserver's default of 5 drops bursts of associations).
    request_queue_size = 128
    #: Where received data sets that outgrow memory are spooled (``dimse.spool``):
    #: a path inside the store, so that the store adopts the file without a copy.
    spool_path: Any = None

    def server_bind(self) -> None:
        assert self.socket is not None
        if self.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            client = self.ssl_context.wrap_socket(
                client, server_side=True, do_handshake_on_connect=False
            )
        return client, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if isinstance(request, ssl.SSLSocket):
            previous = request.gettimeout()
            request.settimeout(self.handshake_timeout)
            try:
                request.do_handshake()
            except (OSError, ValueError) as exc:
                log.warning("TLS handshake with %s failed: %s", client_address[0], exc)
                self.shutdown_request(request)
                return
            request.settimeout(previous)
        super().process_request_thread(request, client_address)
