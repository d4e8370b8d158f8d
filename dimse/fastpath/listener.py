"""The DIMSE association server and the request handler of the fast path.

The listener (:class:`DimseListener`, pynetdicom's ``server_class`` hook and
socketserver's methods) serves in both modes:

- ``TCP_NODELAY`` on every accepted socket: a PDU written in two parts (PDU header,
  then P-DATA value) otherwise waits for the peer's delayed ACK (Nagle's algorithm).
- The TLS handshake runs on the association's own thread, not on the accept loop,
  so a peer that connects and never completes the handshake cannot stop other peers
  from associating.
- With ``dimse.workers`` > 1 the serving process's listener hands each accepted
  connection to the least busy process before any TLS handshake; a worker's
  listener is passive (binds nothing) and serves the connections it is handed.

The request handler (:class:`FastRequestHandler`) is the fast path's: it gives each
accepted association, before it starts,

- PDUs read with as few ``recv_into`` calls as the data allows (:func:`read_exactly`),
  instead of pynetdicom's loop of 4 KiB ``recv`` calls, each a new ``bytes`` appended
  to the PDU;
- the wake-ups of ``wakeup`` (pynetdicom's loops react to a message when it arrives
  instead of on their next 1 ms tick), the C-STORE receiver of ``receive`` and
  ``spool`` (the data set written into a blob of the store as it arrives), C-STOREs
  served on the network thread (``inline``) and responses written as bytes
  (``responses``).

With the fast path off the listener uses pynetdicom's own request handler, and an
association's end is reported through ``EVT_CONN_CLOSE``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dimse.fastpath import FastPath, associate, inline, mark, receive, responses, spool, wakeup
from dimse.fastpath.direct import WATCHING, DirectServer
from dimse.fastpath.pdu import attach_reader

log = logging.getLogger("noctis.dimse.listener")

#: ``(host, port)`` of a peer, as socketserver gives it.
Address = Any


def set_nodelay_on(sock: socket.socket) -> None:
    """Turn off Nagle's algorithm on a connection."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class FastRequestHandler(RequestHandler):
    """pynetdicom's request handler; the association it creates carries the fast path
    of the listener (``server.fast_path``) and reports its end to the listener
    (``DimseListener.report_closed``)."""

    _running = False

    def handle(self) -> None:
        # pynetdicom's handle() starts the association's own thread and returns: the
        # connection ends when that thread does. The end is reported once, as soon as
        # the association is over: before the A-RELEASE-RP goes out, when it is killed
        # (aborted), when its transport closes (a peer gone before its A-ASSOCIATE-RQ
        # would otherwise count until the ACSE time-out), or when its thread ends.
        # pynetdicom's teardown waits in 10 ms sleeps for the DUL to stop, and a
        # client's next association arriving meanwhile would find this one still
        # counted (the hand-off to workers goes by that count: docs/performance.md,
        # issue 15).
        assoc = self._create_association()
        once = threading.Lock()
        report_closed = self._report_closed
        run, kill, send_release = assoc.run, assoc.kill, assoc.acse.send_release
        transport = assoc.dul.socket
        assert transport is not None
        close = transport.close

        def report_once() -> None:
            if once.acquire(blocking=False):
                report_closed()

        def report_then_release(is_response: bool = False) -> None:
            if is_response:
                report_once()
            send_release(is_response)

        def report_then_kill() -> None:
            report_once()
            kill()

        def close_then_report() -> None:
            close()
            report_once()

        def run_then_report() -> None:
            try:
                run()
            finally:
                report_once()

        assoc.acse.send_release = report_then_release  # type: ignore[method-assign]
        assoc.kill = report_then_kill  # type: ignore[method-assign]
        transport.close = close_then_report  # type: ignore[method-assign]
        assoc.run = run_then_report  # type: ignore[method-assign]
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

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        fast: FastPath = getattr(self.server, "fast_path")  # noqa: B009 - set by the wiring
        mark(assoc, fast)
        attach_reader(assoc)
        associate.attach(assoc, fast.counters)
        wakeup.attach(assoc)
        inline.serve_stores_inline(assoc, fast.counters)
        responses.attach(assoc, fast.counters, fast.pending_interval)
        blobs = getattr(self.server, "blobs", None)
        if blobs is not None:
            spool.attach(assoc, blobs)
            receive.attach(assoc, fast.counters)
        return assoc


class DimseListener(ThreadedAssociationServer):
    """pynetdicom's threaded server with the socket options above."""

    #: Set by the wiring before ``server_bind`` runs (class attributes, per subclass).
    handshake_timeout: float = 30.0
    daemon_threads = True
    #: The listen backlog (socketserver's default of 5 drops bursts of associations).
    request_queue_size = 128
    #: The fast path given to each accepted association (``None``: stock pynetdicom).
    fast_path: FastPath | None = None
    #: The store whose blob writers received data sets are written into (``spool``).
    blobs: spool.Blobs | None = None
    #: A worker's listener: no socket of its own, connections come by ``serve_connection``.
    passive: bool = False
    #: ``hand_off(connection, address)``: True when another process took the connection.
    hand_off: Callable[[socket.socket, Address], bool] | None = None
    #: Called when an association this process served has ended.
    on_closed: Callable[[], None] | None = None
    #: Serves Verification and storage associations itself (``direct``; set by the wiring).
    direct: DirectServer | None = None

    def server_bind(self) -> None:
        if not self.passive:
            super().server_bind()

    def server_activate(self) -> None:
        if not self.passive:
            super().server_activate()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        set_nodelay_on(client)
        return client, address

    def process_request(self, request: Any, client_address: Address) -> None:
        hand_off = type(self).hand_off
        if hand_off is not None and hand_off(request, client_address):
            request.close()  # our copy only: the other process holds the connection
            return
        self._start(request, client_address)

    def serve_connection(self, connection: socket.socket, address: Address) -> None:
        """Serve a connection accepted elsewhere (a worker's hand-off)."""
        set_nodelay_on(connection)
        self._start(connection, address)

    def _start(self, request: Any, client_address: Address) -> None:
        """Start serving a connection. socketserver gives each one a thread, whose only
        work is to create the association and start the association's own thread; with
        the fast path and no TLS handshake to wait for, that is done here instead (one
        thread start less per association: docs/performance.md, issue 15)."""
        if self.fast_path is None or self.ssl_context is not None:
            super().process_request(request, client_address)
            return
        direct = self.direct
        if direct is not None and direct.try_serve(
            request,
            client_address,
            self.report_closed,
            watched=lambda: any(self.get_handlers(event) for event in WATCHING),
        ):
            return
        self.process_request_thread(request, client_address)

    def service_actions(self) -> None:
        """socketserver's hook after each request: pynetdicom's runs a full garbage
        collection every 60 connections (for association threads it saw linger), which
        stops every thread of the process for ~10-20 ms with the archive's objects
        loaded; the interpreter's own collector is left to do it, as it does elsewhere."""

    def process_request_thread(self, request: Any, client_address: Address) -> None:
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

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and close the socket (pynetdicom's ``shutdown`` also
        removes the server from its AE's private list of servers, where the wiring,
        which runs ``serve_forever`` itself, never put it)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()

    def _handshake(self, request: socket.socket, client_address: Address) -> ssl.SSLSocket | None:
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


def listener_class(
    *,
    fast: FastPath | None,
    handshake_timeout: float,
    blobs: spool.Blobs | None,
    passive: bool,
    hand_off: Callable[[socket.socket, Address], bool] | None,
    on_closed: Callable[[], None] | None,
) -> type[DimseListener]:
    """A listener class configured for one server (socketserver reads its settings as
    class attributes, some before ``__init__`` returns)."""
    attributes: dict[str, Any] = {
        "handshake_timeout": handshake_timeout,
        "fast_path": fast,
        "blobs": blobs,
        "passive": passive,
        "hand_off": staticmethod(hand_off) if hand_off is not None else None,
        "on_closed": staticmethod(on_closed) if on_closed is not None else None,
    }
    return type("NoctisListener", (DimseListener,), attributes)


def request_handler(fast: FastPath | None) -> type[RequestHandler]:
    """The fast path's request handler, or pynetdicom's own."""
    return FastRequestHandler if fast is not None else RequestHandler


def report_closed_by_event(listener: DimseListener) -> None:
    """Stock mode: an association's end reaches the listener through ``EVT_CONN_CLOSE``."""

    def closed(event: evt.Event) -> None:
        listener.report_closed()

    listener.bind(evt.EVT_CONN_CLOSE, closed)
