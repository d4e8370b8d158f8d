"""A copy of the audit trail for a syslog collector (``[audit.syslog]``, IHE ATNA).

Each record appended to the trail by this process is handed to ``SyslogExporter.submit``
(after its transaction committed, in chain order, by the audit writer's thread or a
security event's caller, never a request), formatted there once as a DICOM audit message
(``noctis_pacs/core/audit_message.py``) and queued; one background thread writes the
queue to one TCP or TLS connection (RFC 6587 octet counting, RFC 5425). Requests never
wait for it: the queue is bounded and ``submit`` never touches the network. One sender and one FIFO queue keep this process's
order. While the collector is unreachable the records wait in the queue and the sender
reconnects with a growing delay (up to ``MAX_BACKOFF``); above ``max_queued`` the oldest
are dropped and counted (``stats``). A record is taken off the queue once its bytes are
written to the socket; a connection the collector has closed is noticed before writing
(so a collector restart loses nothing), but bytes the kernel accepted on a connection
that breaks afterwards are lost: syslog over TCP has no acknowledgement (RFC 6587 4).
The index keeps the authoritative trail either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable

from noctis_pacs.core.audit import AuditEvent
from noctis_pacs.core.audit_message import AuditSource, ExportStats, audit_message, syslog_frame
from noctis_pacs.core.settings import AuditSyslogSettings

log = logging.getLogger("noctis.storage.audit.syslog")

#: Seconds between reconnection attempts: doubling from the first up to the last.
FIRST_BACKOFF = 0.2
MAX_BACKOFF = 30.0
#: Seconds to connect (and finish the TLS handshake) and to write one batch.
CONNECT_TIMEOUT = 5.0
#: Records written per ``sendall`` at most.
SEND_BATCH = 200


class SyslogExporter:
    def __init__(self, settings: AuditSyslogSettings) -> None:
        self.settings = settings
        self.source = AuditSource(
            source_id=settings.app_name,
            hostname=socket.gethostname(),
            process_id=str(os.getpid()),
        )
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._backoff = FIRST_BACKOFF
        self._sent = 0
        self._dropped = 0
        self._connect_failures = 0
        self._failing = False

    def submit(self, records: Iterable[tuple[int | None, AuditEvent]]) -> None:
        """Queue ``(seq, event)`` pairs for sending, in order; never blocks on the network."""
        frames = self._frames(records)
        with self._lock:
            if self._stop:
                return
            self._queue.extend(frames)
            excess = len(self._queue) - self.settings.max_queued
            if excess > 0:
                for _ in range(excess):
                    self._queue.popleft()
                self._dropped += excess
                log.error(
                    "audit syslog: %d record(s) dropped, %d queued (collector %s:%d unreachable)",
                    excess,
                    len(self._queue),
                    self.settings.host,
                    self.settings.port,
                )
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="audit-syslog", daemon=True)
                self._thread.start()

    def stats(self) -> ExportStats:
        with self._lock:
            return ExportStats(
                sent=self._sent,
                dropped=self._dropped,
                connect_failures=self._connect_failures,
                queued=len(self._queue),
            )

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            thread = self._thread
            while self._queue and thread is not None and time.monotonic() < deadline:
                self._wake.wait(min(0.05, max(deadline - time.monotonic(), 0.0)))
            self._stop = True
            self._wake.notify_all()
        if thread is not None:
            thread.join(timeout=CONNECT_TIMEOUT + 1)
        self._disconnect()

    # -- the sender thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                batch = [self._queue[i] for i in range(min(SEND_BATCH, len(self._queue)))]
            if self._send(batch):
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                    self._sent += len(batch)
                    self._wake.notify_all()
            else:
                with self._lock:
                    if not self._stop:
                        self._wake.wait(self._backoff)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _frames(self, records: Iterable[tuple[int | None, AuditEvent]]) -> list[bytes]:
        """Each record as its framed message (formatted once, however often it is retried)."""
        frames = []
        for seq, event in records:
            try:
                message = audit_message(event, self.source, seq=seq)
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the export
                log.error("audit syslog: record %s not formatted: %s", seq, type(exc).__name__)
                with self._lock:
                    self._dropped += 1
                continue
            frames.append(
                syslog_frame(
                    message, time=event.time, source=self.source, app_name=self.settings.app_name
                )
            )
        return frames

    def _send(self, frames: list[bytes]) -> bool:
        """Write ``frames`` on the connection (made or remade first); ``False`` to retry."""
        try:
            sock = self._connection()
            sock.sendall(b"".join(frames))
        except (OSError, ssl.SSLError) as exc:
            self._disconnect()
            with self._lock:
                self._connect_failures += 1
            if not self._failing:
                log.error(
                    "audit syslog: collector %s:%d unreachable (%s); records are queued",
                    self.settings.host,
                    self.settings.port,
                    type(exc).__name__,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("audit syslog: collector %s:%d reachable again", *self._address())
        self._failing = False
        self._backoff = FIRST_BACKOFF
        return True

    def _address(self) -> tuple[str, int]:
        return self.settings.host, self.settings.port

    def _connection(self) -> socket.socket:
        """The open connection, or a new one; one the collector closed is replaced."""
        sock = self._sock
        if sock is not None and _closed_by_peer(sock):
            self._disconnect()
            sock = None
        if sock is None:
            raw = socket.create_connection(self._address(), timeout=CONNECT_TIMEOUT)
            try:
                sock = self._tls(raw) if self.settings.tls else raw
            except BaseException:
                raw.close()
                raise
            sock.settimeout(CONNECT_TIMEOUT * 2)
            self._sock = sock
        return sock

    def _tls(self, raw: socket.socket) -> socket.socket:
        """RFC 5425 5.1: the collector's certificate is checked (chain and name)."""
        context = ssl.create_default_context(cafile=self.settings.ca_file or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.settings.cert_file:
            context.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        return context.wrap_socket(raw, server_hostname=self.settings.host)

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    """The collector closed (or reset) the connection: it is readable and says so.
    A collector sends nothing on this channel, so readable means gone."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    try:
        sock.setblocking(False)
        try:
            sock.recv(1)
        finally:
            sock.settimeout(CONNECT_TIMEOUT * 2)
    except (ssl.SSLWantReadError, BlockingIOError):  # a TLS record of its own (a ticket)
        return False
    except OSError:
        return True
    return True
