"""Socket-level behaviour of the DIMSE listener.

- ``TCP_NODELAY`` on every DIMSE socket: a PDU written in two parts (PDU header,
  then P-DATA value) otherwise waits for the peer's delayed ACK, about 40 ms per
  message on loopback (Nagle's algorithm).
- The TLS handshake runs on the association's own thread, not on the accept
  loop, so a peer that connects and never completes the handshake cannot stop
  other peers from associating.
- With ``dimse.workers`` > 1 the serving process's listener hands each accepted
  connection to the least busy process (``dimse.workers``) before any TLS
  handshake; a worker's listener is passive (binds nothing) and serves the
  connections it is handed.
- An accepted association reads each PDU with as few ``recv_into`` calls as the
  data allows (:func:`read_exactly`), instead of pynetdicom's loop of 4 KiB
  ``recv`` calls, each a new ``bytes`` appended to the PDU (128 for every 512 KiB
  CT slice, a quarter of the receiving thread's time).
- Every accepted association gets the wake-ups of ``dimse.wakeup``: pynetdicom's
  loops then react to a message when it arrives instead of on their next 1 ms tick;
  the receive spool of ``dimse.spool`` (memory, then a file in the store); and
  C-FIND responses encoded by ``dimse.responses``.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from pynetdicom import evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dimse import inline, receive, responses, spool, wakeup

log = logging.getLogger("noctis.dimse.transport")


def set_nodelay(assoc: Any) -> None:
    """Turn off Nagle's algorithm on an association's socket."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def read_exactly(sock: socket.socket, size: int, *, deadline: float | None = None) -> bytearray:
    """``size`` bytes from ``sock`` (fewer only when the peer closed the connection), read
    straight into one buffer: what pynetdicom's ``AssociationSocket.recv`` promises.
    With a ``deadline`` (``time.monotonic()``) a peer that is silent past it raises
    ``TimeoutError``."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
                view.release()
                raise TimeoutError("the peer sent nothing in time")
        n = sock.recv_into(view[got:])
        if n == 0:
            break
        got += n
    view.release()
    if got < size:
        del buffer[got:]
    return buffer


class PduReader:
    """An association's ``socket.recv``: bytes read straight into one buffer
    (:func:`read_exactly`), after any given back with ``unread``."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.pending = b""

    def __call__(self, nr_bytes: int) -> bytearray:
        sock = self.transport.socket
        if self.pending:
            head, self.pending = self.pending[:nr_bytes], self.pending[nr_bytes:]
            data = bytearray(head)
            if len(data) < nr_bytes and sock is not None:
                data += read_exactly(sock, nr_bytes - len(data))
            return data
        if sock is None:
            raise OSError("the association's socket is closed")
        return read_exactly(sock, nr_bytes)

    def unread(self, data: bytes | bytearray) -> None:
        """Give back bytes read ahead: the next reads return them first."""
        self.pending = bytes(data) + self.pending


def attach_reader(assoc: Any) -> None:
    """Read this association's PDUs through :class:`PduReader` (plain TCP or TLS)."""
    transport = assoc.dul.socket
    transport.recv = PduReader(transport)


class DimseRequestHandler(RequestHandler):
    """pynetdicom's request handler; the association it creates wakes on work and
    reports its end to the listener (``DimseListener.report_closed``)."""

    _running = False

    def handle(self) -> None:
        # pynetdicom's handle() starts the association's own thread and returns: the
        # connection ends when that thread does.
        assoc = self._create_association()
        report_closed = self._report_closed
        run = assoc.run

        def run_then_report() -> None:
            try:
                run()
            finally:
                report_closed()

        assoc.run = run_then_report
        evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
        assoc.start()
        self._running = True

    def finish(self) -> None:
        if not self._running:  # the association never started: the connection is over
            self._report_closed()

    def _report_closed(self) -> None:
        # A plain pynetdicom server (the benchmark's no-op SCP) has no one to tell.
        report = getattr(self.server, "report_closed", None)
        if report is not None:
            report()

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        attach_reader(assoc)
        wakeup.attach(assoc)
        inline.serve_stores_inline(assoc)
        responses.attach(assoc, getattr(self.server, "pending_interval", 0.0))
        spool_path = getattr(self.server, "spool_path", None)
        if spool_path is not None:
            spool.attach(assoc, spool_path)
            receive.attach(assoc)
        return assoc


class DimseListener(ThreadedAssociationServer):
    """pynetdicom's threaded server with the socket options above."""

    #: Set by the wiring before ``server_bind`` runs (class attributes, per subclass).
    handshake_timeout: float = 30.0
    daemon_threads = True
    #: The listen backlog (socketserver's default of 5 drops bursts of associations).
    request_queue_size = 128
    #: Where received data sets that outgrow memory are spooled (``dimse.spool``):
    #: a path inside the store, so that the store adopts the file without a copy.
    spool_path: Any = None
    #: Seconds between pending C-MOVE / C-GET responses (``dimse.responses``).
    pending_interval: float = 0.0
    #: A worker's listener: no socket of its own, connections come by ``serve_connection``.
    passive: bool = False
    #: ``hand_off(connection, address)``: True when another process took the connection.
    hand_off: Callable[[socket.socket, Any], bool] | None = None
    #: Called when an association this process served has ended.
    on_closed: Callable[[], None] | None = None

    def server_bind(self) -> None:
        if not self.passive:
            super().server_bind()

    def server_activate(self) -> None:
        if not self.passive:
            super().server_activate()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    def process_request(self, request: Any, client_address: Any) -> None:
        hand_off = type(self).hand_off
        if hand_off is not None and hand_off(request, client_address):
            request.close()  # our copy only: the other process holds the connection
            return
        super().process_request(request, client_address)

    def serve_connection(self, connection: socket.socket, address: Any) -> None:
        """Serve a connection accepted elsewhere (a worker's hand-off), on its own thread."""
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().process_request(connection, address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            request = self._handshake(request, client_address)
            if request is None:
                self.report_closed()
                return
        super().process_request_thread(request, client_address)

    def report_closed(self) -> None:
        """Tell ``on_closed`` that a connection this process took has ended."""
        on_closed = type(self).on_closed
        if on_closed is not None:
            on_closed()

    def _handshake(self, request: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        assert self.ssl_context is not None
        previous = request.gettimeout()
        connection: socket.socket = request
        try:
            connection = self.ssl_context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
            connection.settimeout(self.handshake_timeout)
            connection.do_handshake()
        except (OSError, ValueError) as exc:
            log.warning("TLS handshake with %s failed: %s", client_address[0], exc)
            self.shutdown_request(connection)
            return None
        connection.settimeout(previous)
        assert isinstance(connection, ssl.SSLSocket)
        return connection
