"""Verification and storage associations served without pynetdicom's association layer.

A peer that proposes only the Verification SOP Class (echoscu, a modality's "DICOM
echo" button, a monitoring probe: PS3.4 Annex A), or only storage SOP classes and
Verification (a modality or a workstation sending images: PS3.4 Annex B; dcmtk's
storescu proposes ~120 such contexts), gets the whole association here: its
A-ASSOCIATE-RQ read and negotiated and its A-ASSOCIATE-AC written by the listener's
thread, then, on one thread of this server, each C-ECHO-RQ and C-STORE-RQ answered,
its A-RELEASE-RQ answered and the connection closed. pynetdicom
builds an ``Association`` for it (ACSE, DIMSE and DUL providers, queues, timers) and
runs two threads with a state machine between them: ~3.5 ms of a new association with
one context, ~7 ms with 120, ~0.3 ms of each C-ECHO and ~2 ms of CPU of each small
C-STORE beyond the store itself on the 2-core VM of docs/performance.md (issue 15),
where Orthanc takes ~0.5 ms, ~4.5 ms and ~0.13 ms.

The listener peeks (``MSG_PEEK``) at a new connection for at most ``PEEK_BUDGET``
seconds (a peer that connects and stays silent costs the accept loop that long; the
request of a client that sends it at once arrives within ~0.1 ms): only an
A-ASSOCIATE-RQ that has arrived whole and that :func:`plain_request` accepts is taken
here. Everything else stays in the socket for pynetdicom, which reads and judges it as
before: a request that proposes another SOP class (query, retrieve, worklist, MPPS,
storage commitment) or carries anything beyond the plain items (user identity, role
selection, asynchronous operations, extended negotiation), a caller the access policy
does not admit by its settings alone, or, for storage, one it does not let store every
storage class (its rejection, narrowed contexts and audit records are pynetdicom's
path, ``dimse.access``), TLS, a server whose bindings watch PDUs, or a request still
arriving. The serving thread (one waiting from an earlier association, as a rule)
wakes while the peer reads the A-ASSOCIATE-AC: one wake-up less on the way to the
first request.

The decisions are pynetdicom's: the request is decoded by ``associate.decode_request``
(the primitive pynetdicom builds), negotiated by pynetdicom's ``negotiate_as_acceptor``
through the shared supported contexts (``contexts.negotiate``), answered with the
A-ASSOCIATE-AC pynetdicom writes, byte for byte (``associate.encode_accept``; accepted
contexts by ID, then the rejected ones, as pynetdicom orders them), and the responses
are the command sets ``responses`` writes (PS3.7 9.3.1.2, 9.3.5.2).

Once established (PS3.8 9.2, Sta6): a C-ECHO-RQ gets its C-ECHO-RSP (Success, or 0122H
"SOP class not supported" when the request names another class). A C-STORE-RQ's data
set is written, as it arrives, into a blob writer of the store (``spool``), which the
store then keeps (``dimse.store.DirectStore``: the permission, the store, metrics and
the audit tally of ``handle_store``), and its C-STORE-RSP carries the store's status
(0122H for a SOP class that is not a storage class). An A-RELEASE-RQ gets its
A-RELEASE-RP and the connection closes; an A-ABORT closes it (a data set still
arriving is dropped: nothing half-stored). Anything else is a protocol error answered
with an A-ABORT from the service provider (PS3.8 9.3.8, Table 9-26): an unrecognised
PDU type (reason 1), an association PDU in this state (2), a malformed P-DATA-TF, a
context not accepted, a data set without its command, a command before the data set
ended, a command set that does not decode, another command (6); so is a peer silent
past ``dimse.network_timeout`` (0, as pynetdicom's time-out does). At
``dimse.max_associations`` (pynetdicom's and these together) the request is rejected
here as pynetdicom rejects it (PS3.8 Table 9-21: transient, local limit exceeded).

PDUs are read from a non-blocking socket into one buffer (``_Stream``: a small
instance's PDUs arrive in one ``recv_into``), and a data set fragment goes from that
buffer into the blob writer; nothing else copies it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pynetdicom import evt
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dimse.fastpath.associate import decode_request, encode_accept
from dimse.fastpath.command import (
    C_ECHO_RQ,
    C_STORE_RQ,
    NO_DATA_SET,
    parse_command,
    read_text,
    read_us,
)
from dimse.fastpath.contexts import negotiate
from dimse.fastpath.inline import storage_class
from dimse.fastpath.pdu import (
    ABORT,
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    ASSOCIATE_RQ,
    P_DATA_TF,
    PDU_HEADER,
    RELEASE_RP,
    RELEASE_RQ,
    pdu,
    read_exactly,
)
from dimse.fastpath.responses import echo_response_command, store_response_command
from dimse.fastpath.spool import ReceiveSpool
from dimse.status import SOP_CLASS_NOT_SUPPORTED, STORE_HANDLER_FAILED, SUCCESS
from noctis_pacs.core.logs import context_id

if TYPE_CHECKING:
    from pynetdicom import AE

    from dimse.fastpath import Counters

log = logging.getLogger("noctis.dimse.fastpath.direct")

#: PS3.4 A.4: the Verification SOP Class; PS3.7 A.2.1: the DICOM application context.
VERIFICATION = "1.2.840.10008.1.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: Seconds the listener waits for a new connection's A-ASSOCIATE-RQ to arrive whole.
PEEK_BUDGET = 0.005
#: The largest A-ASSOCIATE-RQ looked at (storescu's ~120 contexts are ~10 KB).
MAX_REQUEST = 65536
#: The largest PDU other than a P-DATA-TF read once established (an A-RELEASE-RQ is 10).
MAX_OTHER = 4096
#: The largest command set read (a C-STORE-RQ is ~150 bytes).
MAX_COMMAND = 65536
#: The longest wait (seconds) for the peer to close after a release or an abort.
ARTIM = 5.0
#: A peer that limits its PDUs below this is left to pynetdicom.
MIN_PEER_PDU = 256
#: Bytes of the buffer PDUs are read into.
BUFFER = 1 << 18

#: Distinct requests whose decision is kept (their bytes are the key: bounded).
PLANS = 256
#: Threads that stay, after their association, waiting for the next one.
IDLE_THREADS = 4

#: PS3.8 Table 9-26: A-ABORT source 2 (service provider) reasons.
_NOT_SPECIFIED, _UNRECOGNISED_PDU, _UNEXPECTED_PDU, _INVALID_PARAMETER = 0, 1, 2, 6
#: PS3.8 E.2: message control header bits; both: the last fragment of a command.
_COMMAND, _LAST = 0x01, 0x02
#: A PDV item's length, presentation context ID and message control header (PS3.8 9.3.5.1).
_ITEM_HEADER = struct.Struct(">IBB")

_RELEASE_RP_PDU = bytes([RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0])
#: PS3.8 9.3.4, Table 9-21: A-ASSOCIATE-RJ rejected-transient (2), DICOM UL service-provider
#: (presentation related function, 3), local-limit-exceeded (2).
_REJECT_LIMIT_PDU = bytes([ASSOCIATE_RJ, 0, 0, 0, 0, 4, 0, 2, 3, 2])


def _abort_pdu(reason: int) -> bytes:
    """An A-ABORT PDU from the service provider (PS3.8 9.3.8: source 2)."""
    return bytes([ABORT, 0, 0, 0, 0, 4, 0, 0, 2, reason])


#: Events whose handlers watch an association's PDUs or messages: any bound, and the
#: association is pynetdicom's to run.
WATCHING = (
    evt.EVT_PDU_RECV,
    evt.EVT_PDU_SENT,
    evt.EVT_DATA_RECV,
    evt.EVT_DATA_SENT,
    evt.EVT_ACSE_RECV,
    evt.EVT_ACSE_SENT,
    evt.EVT_DIMSE_RECV,
    evt.EVT_DIMSE_SENT,
    evt.EVT_FSM_TRANSITION,
    evt.EVT_ESTABLISHED,
    evt.EVT_ACCEPTED,
    evt.EVT_CONN_OPEN,
)

#: (calling AE title, peer address) of an association.
Caller = tuple[str, str]


class StoreSession(Protocol):
    """The C-STOREs of one association (``dimse.store.DirectStore.session``)."""

    def spool(self, sop_class: str, sop_instance: str, transfer_syntax: str) -> ReceiveSpool:
        """Where a data set is written as it arrives, its Part 10 header first."""
        ...

    def store(self, sop_class: str, sop_instance: str, received: ReceiveSpool) -> tuple[int, str]:
        """Store a received data set; its status and Error Comment."""
        ...

    def ended(self) -> None:
        """The association ended (its audit records)."""
        ...


class Stores(Protocol):
    """What storage associations need of the archive (``dimse.store.DirectStore``)."""

    def admits(self, calling: str, address: str) -> bool:
        """Whether the settings alone let this caller associate and store."""
        ...

    def session(self, caller: Caller) -> StoreSession: ...


@dataclass(frozen=True)
class Request:
    """A plain A-ASSOCIATE-RQ for Verification, or storage and Verification, decoded."""

    primitive: A_ASSOCIATE
    calling_ae_title: str
    #: The peer's Maximum Length Received (0: no limit).
    peer_max_pdu: int
    #: Whether it proposes a storage SOP class.
    stores: bool


@dataclass(frozen=True)
class _Plan:
    """What a request gets: its A-ASSOCIATE-AC, and the accepted contexts (ID: abstract
    syntax and transfer syntax)."""

    request: Request
    accept: bytes
    accepted: dict[int, tuple[str, str]]


#: (connection, peer address, plan, on_closed): an association handed to a thread.
_Job = tuple[socket.socket, tuple[str, int], _Plan, Callable[[], None]]


def _accepted(results: list[PresentationContext]) -> dict[int, tuple[str, str]]:
    return {
        int(cx.context_id): (str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
        for cx in results
        if cx.result == 0 and cx.context_id is not None and cx.transfer_syntax
    }


def plain_request(data: bytes, *, storage: bool = True) -> Request | None:
    """``data`` (a whole A-ASSOCIATE-RQ PDU) as a :class:`Request` when it proposes only
    the Verification SOP Class, or (with ``storage``) storage SOP classes and
    Verification, and holds nothing beyond the plain items; else None."""
    if len(data) < 6 or data[0] != ASSOCIATE_RQ:
        return None
    decoded = decode_request(data)
    if decoded is None or not decoded.protocol_version & 0x0001:
        return None
    primitive = decoded.to_primitive()
    if str(primitive.application_context_name) != APPLICATION_CONTEXT:
        return None
    contexts = primitive.presentation_context_definition_list
    if not contexts:
        return None
    stores = False
    for cx in contexts:
        abstract = str(cx.abstract_syntax)
        if abstract == VERIFICATION:
            continue
        if not storage or not storage_class(abstract):
            return None
        stores = True
    peer_max = None
    for item in primitive.user_information:
        if isinstance(item, MaximumLengthNotification):
            peer_max = int(item.maximum_length_received or 0)
        elif not isinstance(
            item, ImplementationClassUIDNotification | ImplementationVersionNameNotification
        ):
            return None  # user identity, role selection, async operations, extended
    if peer_max is None or 0 < peer_max < MIN_PEER_PDU:
        return None
    calling = str(primitive.calling_ae_title or "").strip()
    if not calling:
        return None
    return Request(primitive, calling, peer_max, stores)


def peek_request(sock: socket.socket, budget: float = PEEK_BUDGET) -> bytes | None:
    """The A-ASSOCIATE-RQ waiting whole in ``sock`` (left there: ``MSG_PEEK``), if one
    arrives within ``budget`` seconds; None otherwise (not yet whole, something else)."""
    try:
        try:  # usually there already: a requestor sends it as soon as it is connected
            data = sock.recv(MAX_REQUEST, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            if not select.select([sock], [], [], budget)[0]:
                return None
            data = sock.recv(MAX_REQUEST, socket.MSG_PEEK)
    except OSError:
        return None
    if len(data) < 6 or data[0] != ASSOCIATE_RQ:
        return None
    size = 6 + PDU_HEADER.unpack_from(data)[2]
    return data[:size] if len(data) >= size else None


class _Closed(Exception):
    """The peer closed the connection."""


class _Stream:
    """A non-blocking connection's bytes, read into one buffer with as few ``recv_into``
    calls as the data allows; a read waits at most until its deadline (TimeoutError)."""

    def __init__(self, sock: socket.socket, buffer: bytearray) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.buffer = buffer
        self.view = memoryview(buffer)
        self.start = 0
        self.end = 0

    def _fill(self, deadline: float | None) -> None:
        """Read what has arrived behind the bytes held (waiting for some)."""
        while True:
            try:
                got = self.sock.recv_into(self.view[self.end :])
            except BlockingIOError:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError("the peer sent nothing in time") from None
                if not select.select([self.sock], [], [], remaining)[0]:
                    raise TimeoutError("the peer sent nothing in time") from None
                continue
            if got == 0:
                raise _Closed
            self.end += got
            return

    def read(self, size: int, deadline: float | None) -> memoryview:
        """The next ``size`` bytes (at most ``BUFFER``), a view valid until the next read."""
        while self.end - self.start < size:
            if self.start == self.end:
                self.start = self.end = 0
            elif self.start + size > BUFFER:  # move what is held to the front
                held = bytes(self.view[self.start : self.end])
                self.buffer[: len(held)] = held
                self.start, self.end = 0, len(held)
            self._fill(deadline)
        found = self.view[self.start : self.start + size]
        self.start += size
        return found

    def pass_on(
        self, size: int, write: Callable[[memoryview], object], deadline: float | None
    ) -> None:
        """Hand the next ``size`` bytes to ``write`` as they arrive."""
        while size:
            if self.start == self.end:
                self.start = self.end = 0
                self._fill(deadline)
            take = min(size, self.end - self.start)
            write(self.view[self.start : self.start + take])
            self.start += take
            size -= take

    def send(self, data: bytes) -> None:
        """Send all of ``data`` (waiting while the peer does not read, up to ``ARTIM``)."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                if not select.select([], [self.sock], [], ARTIM)[1]:
                    raise TimeoutError("the peer reads nothing") from None
                continue
            view = view[sent:]


@dataclass
class _Receiving:
    """A C-STORE-RQ whose data set is arriving (into ``spool``; None: dropped, answered
    0122H)."""

    context_id: int
    message_id: int
    sop_class: str
    sop_instance: str
    spool: ReceiveSpool | None


class DirectServer:
    """Serves Verification and storage associations for one listener (see the module
    text); ``stores`` None: Verification-only associations alone."""

    def __init__(
        self,
        ae: AE,
        supported: list[PresentationContext],
        *,
        admits: Callable[[str, str], bool],
        echoed: Callable[[int, float], None],
        counters: Counters,
        stores: Stores | None = None,
    ) -> None:
        self.ae = ae
        self.supported = supported
        self.admits = admits
        self.echoed = echoed
        self.counters = counters
        self.stores = stores
        self._lock = threading.Lock()
        self._active = 0
        self._numbers = itertools.count(1)
        self._associations = itertools.count(1)
        #: What each distinct request (its bytes) gets: None when it is not ours.
        self._plans: dict[bytes, _Plan | None] = {}
        #: Threads waiting for their next association, and the associations handed to them.
        self._idle = 0
        self._work: queue.SimpleQueue[_Job] = queue.SimpleQueue()

    @property
    def waiting(self) -> int:
        """Threads waiting for their next association."""
        return self._idle

    def try_serve(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        on_closed: Callable[[], None],
        *,
        watched: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Take the connection when it opens with a request this server may accept; a
        thread of this server serves it and calls ``on_closed`` at the end. False:
        nothing was read, the connection is pynetdicom's."""
        data = peek_request(sock)
        plan = self._plan(data) if data is not None else None
        if data is None or plan is None:
            return False
        path = "storage" if plan.request.stores else "verification"
        reason = self._declined(plan.request, address, watched)
        if reason is not None:
            self.counters.fallback(path, reason)
            return False
        try:
            read_exactly(sock, len(data))  # the request, peeked above: now consumed
        except OSError:
            return False
        self.counters.hit(path)
        if len(self.ae.active_associations) + self._active >= self.ae.maximum_associations:
            # As pynetdicom rejects at dimse.max_associations (its count does not see
            # the associations served here, so the limit is kept here for these).
            log.warning("association from %s rejected: at the limit", address[0])
            with contextlib.suppress(OSError):
                sock.sendall(_REJECT_LIMIT_PDU)
            sock.close()
            on_closed()
            return True
        with self._lock:
            self._active += 1
        try:
            # Answered here, so that the serving thread wakes while the peer reads the
            # A-ASSOCIATE-AC and sends its first request (the wake-up is off the
            # association's path: docs/performance.md, issue 15).
            sock.sendall(plan.accept)
        except OSError as exc:
            log.debug("association from %s ended: %s", address[0], exc)
            self._unstarted(sock, on_closed)
            return True
        job = (sock, address, plan, on_closed)
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._work.put(job)  # under the lock: an idle thread is waiting for it
                return True
        thread = threading.Thread(
            target=self._serve_then_wait,
            args=(job,),
            name=f"direct-{next(self._numbers)}",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: aborted (PS3.8 9.3.8), not left hanging
            log.error("no thread for an association from %s", address[0])
            with contextlib.suppress(OSError):
                sock.sendall(_abort_pdu(_NOT_SPECIFIED))
            self._unstarted(sock, on_closed)
        return True

    def _unstarted(self, sock: socket.socket, on_closed: Callable[[], None]) -> None:
        """An association counted in ``try_serve`` that no thread will serve: closed."""
        with self._lock:
            self._active -= 1
        sock.close()
        on_closed()

    def _plan(self, data: bytes) -> _Plan | None:
        """The decision for a request: decoded, negotiated and answered once per distinct
        request (a modality sends the same bytes each time); None when it is not ours."""
        if data in self._plans:
            return self._plans[data]
        request = plain_request(data, storage=self.stores is not None)
        plan = None
        if request is not None:
            try:
                results = self._negotiate(request)
                plan = _Plan(request, self._accept(request, results), _accepted(results))
            except (ValueError, TypeError, AttributeError, UnicodeEncodeError) as exc:
                path = "storage" if request.stores else "verification"
                self.counters.fallback(path, f"negotiation: {type(exc).__name__}")
                return None
        if len(self._plans) < PLANS:
            self._plans[data] = plan
        return plan

    def _serve_then_wait(self, job: _Job) -> None:
        """Serve associations one after another: this one, then whichever is handed to
        this thread while it waits (at most ``IDLE_THREADS`` wait; a thread start costs
        ~0.1-0.4 ms on a 2-core VM, a hand-off to a waiting thread a wake-up). The
        thread's read buffer serves each of them (a new one is ``BUFFER`` bytes to
        zero-fill, a page fault per page)."""
        buffer = bytearray(BUFFER)
        while True:
            sock, address, plan, on_closed = job
            self._run(sock, address, plan, on_closed, buffer)
            with self._lock:
                if self._idle >= IDLE_THREADS:
                    return
                self._idle += 1
            job = self._work.get()

    def _declined(
        self, request: Request, address: tuple[str, int], watched: Callable[[], bool]
    ) -> str | None:
        """Why pynetdicom serves this request instead, if it does."""
        ae = self.ae
        if watched():
            return "the server's bindings watch PDUs or messages"
        if ae.require_calling_aet or ae.require_called_aet:
            return "AE titles are checked by pynetdicom"
        if request.stores:
            assert self.stores is not None  # plain_request(storage=False) otherwise
            if not self.stores.admits(request.calling_ae_title, str(address[0])):
                return "the access policy decides this caller"
        elif not self.admits(request.calling_ae_title, str(address[0])):
            return "the access policy decides this caller"
        return None

    def _negotiate(self, request: Request) -> list[PresentationContext]:
        """Each proposed context's result, as pynetdicom negotiates and orders them
        (accepted by context ID, then the rejected ones)."""
        results, _ = negotiate(
            request.primitive.presentation_context_definition_list, self.supported
        )
        accepted = sorted(
            (cx for cx in results if cx.result == 0), key=lambda cx: cx.context_id or 0
        )
        return accepted + [cx for cx in results if cx.result != 0]

    def _accept(self, request: Request, results: list[PresentationContext]) -> bytes:
        """The A-ASSOCIATE-AC pynetdicom's acceptor sends for ``request``."""
        ae = self.ae
        proposed = request.primitive
        primitive = A_ASSOCIATE()
        primitive.application_context_name = APPLICATION_CONTEXT
        primitive.calling_ae_title = proposed.calling_ae_title
        primitive.called_ae_title = proposed.called_ae_title
        primitive.result = 0x00
        primitive.result_source = 0x01
        primitive.presentation_context_definition_results_list = results
        maximum = MaximumLengthNotification()
        maximum.maximum_length_received = ae.maximum_pdu_size
        implementation = ImplementationClassUIDNotification()
        implementation.implementation_class_uid = ae.implementation_class_uid
        user: list[object] = [maximum, implementation]
        if ae.implementation_version_name:
            version = ImplementationVersionNameNotification()
            version.implementation_version_name = ae.implementation_version_name
            user.append(version)
        primitive.user_information = user  # type: ignore[assignment]
        return encode_accept(primitive)

    def _run(
        self,
        sock: socket.socket,
        address: tuple[str, int],
        plan: _Plan,
        on_closed: Callable[[], None],
        buffer: bytearray,
    ) -> None:
        once = threading.Lock()

        def ending() -> None:
            # Reported before the A-RELEASE-RP (or A-ABORT) goes out, as for pynetdicom's
            # associations (``listener``): a client's next association may arrive the
            # moment it has the answer, and must find this one ended.
            if once.acquire(blocking=False):
                with self._lock:
                    self._active -= 1
                on_closed()

        context_id.set(f"dimse:direct-{next(self._associations)}")
        caller = (plan.request.calling_ae_title, str(address[0]))
        stores = self.stores if plan.request.stores else None
        association = _Association(self, plan, _Stream(sock, buffer), ending, stores, caller)
        try:
            # The A-ASSOCIATE-AC went out from ``try_serve``. With nothing accepted (an AC
            # PS3.8 9.3.3.2 allows) the peer releases or aborts; anything else it sends is
            # a protocol error, as below.
            problem = association.serve()
            if problem is not None:
                log.warning("association from %s aborted: %s", address[0], problem)
            ending()
            self._await_close(sock)
        except (OSError, _Closed) as exc:
            log.debug("association from %s ended: %s", address[0], exc or "closed")
        except Exception:  # a fault here must not end the thread that serves the next
            log.exception("association from %s failed", address[0])
        finally:
            association.end()
            with contextlib.suppress(OSError):
                sock.close()
            ending()

    def _await_close(self, sock: socket.socket) -> None:
        """After an A-RELEASE-RP or an A-ABORT the requestor closes the connection
        (PS3.8 9.2, Sta13: ARTIM running, here at most ``ARTIM`` seconds); closing
        first with its bytes unread would reset it, losing what was just sent."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + min(float(self.ae.acse_timeout or ARTIM), ARTIM)
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], remaining)[0]:
                return
            try:
                if not sock.recv(MAX_OTHER):
                    return
            except BlockingIOError:
                continue


class _Association:
    """One established association of a :class:`DirectServer` (PS3.8 9.2, Sta6)."""

    def __init__(
        self,
        server: DirectServer,
        plan: _Plan,
        stream: _Stream,
        ending: Callable[[], None],
        stores: Stores | None,
        caller: Caller,
    ) -> None:
        self.server = server
        self.stream = stream
        self.ending = ending
        self.accepted = plan.accepted
        self.peer_max_pdu = plan.request.peer_max_pdu
        self.session = stores.session(caller) if stores is not None else None
        self.command = bytearray()
        self.receiving: _Receiving | None = None

    def serve(self) -> str | None:
        """Serve until the association ends (``ending`` called before its last PDU goes
        out); the protocol error that ended it, if one did (an A-ABORT was sent for it)."""
        stream = self.stream
        timeout = self.server.ae.network_timeout
        while True:
            deadline = time.monotonic() + timeout if timeout else None
            try:
                kind, _, length = PDU_HEADER.unpack(stream.read(6, deadline))
                if kind == P_DATA_TF:
                    problem = self._data(length, deadline)
                    if problem is not None:
                        return self._abort(_INVALID_PARAMETER, problem)
                    continue
                if length > MAX_OTHER:
                    return self._abort(_INVALID_PARAMETER, f"a PDU of {length} bytes")
                stream.read(length, deadline)
            except TimeoutError:
                return self._abort(_NOT_SPECIFIED, "no PDU within dimse.network_timeout")
            except _Closed:
                return None  # the peer closed the connection
            if kind == RELEASE_RQ:
                self.ending()
                stream.send(_RELEASE_RP_PDU)
                return None
            if kind == ABORT:
                return None
            if kind in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, RELEASE_RP):
                return self._abort(_UNEXPECTED_PDU, f"PDU type {kind:#04x} in Sta6")
            return self._abort(_UNRECOGNISED_PDU, f"unrecognised PDU type {kind:#04x}")

    def end(self) -> None:
        """The association is over: a data set still arriving is dropped, the store's
        records written."""
        receiving, self.receiving = self.receiving, None
        if receiving is not None and receiving.spool is not None:
            receiving.spool.discard()
        if self.session is not None:
            session, self.session = self.session, None
            try:
                session.ended()
            except Exception:  # the association is over either way
                log.exception("the end of an association could not be recorded")

    def _data(self, length: int, deadline: float | None) -> str | None:
        """Serve the PDV items of one P-DATA-TF (PS3.8 9.3.5.1); what is wrong with it,
        if anything."""
        stream = self.stream
        remaining = length
        while remaining:
            if remaining < _ITEM_HEADER.size:
                return "a malformed P-DATA-TF"
            item_length, context, control = _ITEM_HEADER.unpack(stream.read(6, deadline))
            if item_length < 2 or item_length + 4 > remaining:
                return "a malformed P-DATA-TF"
            remaining -= item_length + 4
            size = item_length - 2
            accepted = self.accepted.get(context)
            if accepted is None:
                return f"presentation context {context} was not accepted"
            if control & _COMMAND:
                if self.receiving is not None:
                    return "a command before the data set ended"
                if len(self.command) + size > MAX_COMMAND:
                    return "a command set too long"
                self.command += stream.read(size, deadline)
                if control & _LAST:
                    problem = self._command(context, accepted)
                    if problem is not None:
                        return problem
                continue
            receiving = self.receiving
            if receiving is None:
                return "a data set without its command"
            if receiving.context_id != context:
                return "a data set fragment on another presentation context"
            spool = receiving.spool
            stream.pass_on(size, spool.write if spool is not None else _drop, deadline)
            if control & _LAST:
                self.receiving = None
                self._stored(receiving)
        return None

    def _command(self, context: int, accepted: tuple[str, str]) -> str | None:
        """Act on a whole command set; what is wrong with it, if anything."""
        command = bytes(self.command)
        self.command.clear()
        try:
            elements = parse_command(command)
            field = read_us(elements, 0x0100)
            has_data_set = read_us(elements, 0x0800) != NO_DATA_SET
            message_id = read_us(elements, 0x0110)
            sop_class = read_text(elements, 0x0002)
            sop_instance = read_text(elements, 0x1000) if field == C_STORE_RQ else ""
        except (KeyError, ValueError, UnicodeDecodeError):
            return "a command set that does not decode"
        if field == C_ECHO_RQ and not has_data_set:
            started = time.perf_counter()
            status = SUCCESS if sop_class == accepted[0] else SOP_CLASS_NOT_SUPPORTED
            self._send(context, echo_response_command(sop_class, message_id, status))
            self.server.echoed(status, time.perf_counter() - started)
            return None
        if field == C_STORE_RQ and has_data_set and self.session is not None:
            spool = None
            if storage_class(sop_class):
                spool = self.session.spool(sop_class, sop_instance, accepted[1])
            self.receiving = _Receiving(context, message_id, sop_class, sop_instance, spool)
            return None
        return "a command other than C-ECHO-RQ or C-STORE-RQ"

    def _stored(self, receiving: _Receiving) -> None:
        """The data set of a C-STORE-RQ has arrived: store it and answer."""
        spool = receiving.spool
        if spool is None or self.session is None:
            status, comment = SOP_CLASS_NOT_SUPPORTED, ""
        else:
            try:
                status, comment = self.session.store(
                    receiving.sop_class, receiving.sop_instance, spool
                )
            except Exception:  # answered, as pynetdicom answers a handler that raised
                log.exception("the store failed; answering C211H")
                spool.discard()
                status, comment = STORE_HANDLER_FAILED, ""
        self._send(
            receiving.context_id,
            store_response_command(
                receiving.sop_class,
                receiving.sop_instance,
                receiving.message_id,
                status,
                comment,
            ),
        )

    def _send(self, context: int, command: bytes) -> None:
        """A command set as P-DATA-TF PDUs no longer than the peer accepts."""
        room = self.peer_max_pdu - 6 if self.peer_max_pdu else len(command)
        pdus = []
        for start in range(0, len(command), room):
            last = start + room >= len(command)
            pdus.append(
                pdu(context, _COMMAND | (_LAST if last else 0), command[start : start + room])
            )
        self.stream.send(b"".join(pdus))

    def _abort(self, reason: int, problem: str) -> str:
        self.ending()
        with contextlib.suppress(OSError, TimeoutError):
            self.stream.send(_abort_pdu(reason))
        return problem


def _drop(data: memoryview) -> None:
    """Where the data set of a C-STORE-RQ for a class that is not stored goes."""
