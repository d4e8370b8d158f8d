"""Verification-only associations served without pynetdicom's association layer.

A peer that proposes nothing but the Verification SOP Class (echoscu, a modality's
"DICOM echo" button, a monitoring probe: PS3.4 Annex A) gets the whole association
here, on one thread: its A-ASSOCIATE-RQ read and negotiated, its A-ASSOCIATE-AC
written, each C-ECHO-RQ answered, its A-RELEASE-RQ answered and the connection closed.
pynetdicom builds an ``Association`` for it (ACSE, DIMSE and DUL providers, queues,
timers) and runs two threads with a state machine between them: ~3.5 ms of a new
association with one context and ~0.3 ms of each C-ECHO on the 2-core VM of
docs/performance.md (issue 15), where Orthanc takes ~0.6 ms and ~0.13 ms.

The listener peeks (``MSG_PEEK``) at a new connection for at most ``PEEK_BUDGET``
seconds (a peer that connects and stays silent costs the accept loop that long; the
request of a client that sends it at once arrives within ~0.1 ms): only an
A-ASSOCIATE-RQ that has arrived whole and that :func:`verification_request` accepts is
taken here. Everything else stays in the socket for pynetdicom, which reads and judges
it as before: a request that proposes
another SOP class or carries anything beyond the plain items (user identity, role
selection, asynchronous operations, extended negotiation), a caller the access policy
does not admit by its settings alone (its rejection and audit record are pynetdicom's
path, ``dimse.access``), TLS, a server whose
bindings watch PDUs, or a request still arriving.

The decisions are pynetdicom's: the request is decoded by ``associate.decode_request``
(the primitive pynetdicom builds), negotiated by pynetdicom's ``negotiate_as_acceptor``
through the shared supported contexts (``contexts.negotiate``), answered with the
A-ASSOCIATE-AC pynetdicom writes, byte for byte (``associate.encode_accept``; accepted
contexts by ID, then the rejected ones, as pynetdicom orders them), and the C-ECHO-RSP
is the command set ``responses`` writes (PS3.7 9.3.5.2).

Once established (PS3.8 9.2, Sta6): a P-DATA-TF whose PDVs name an accepted context and
hold a C-ECHO-RQ command set without a data set gets its C-ECHO-RSP (Success, or 0122H
"SOP class not supported" when the request names another class); an A-RELEASE-RQ gets
its A-RELEASE-RP and the connection closes; an A-ABORT closes it. Anything else is a
protocol error answered with an A-ABORT from the service provider (PS3.8 9.3.8, Table
9-26): an unrecognised PDU type (reason 1), an association PDU in this state (2), a
malformed P-DATA-TF, a context not accepted, a data set, another command (6); so is a
peer silent past ``dimse.network_timeout`` (0, as pynetdicom's time-out does). At
``dimse.max_associations`` (pynetdicom's and these together) the request is rejected
here as pynetdicom rejects it (PS3.8 Table 9-21: transient, local limit exceeded).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pynetdicom import evt
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from dimse.fastpath.associate import decode_request, encode_accept
from dimse.fastpath.command import C_ECHO_RQ, NO_DATA_SET, parse_command, read_text, read_us
from dimse.fastpath.contexts import negotiate
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
    pdv_items,
    read_exactly,
)
from dimse.fastpath.responses import echo_response_command

if TYPE_CHECKING:
    from pynetdicom import AE

    from dimse.fastpath import Counters

log = logging.getLogger("noctis.dimse.fastpath.verification")

#: PS3.4 A.4: the Verification SOP Class; PS3.7 A.2.1: the DICOM application context.
VERIFICATION = "1.2.840.10008.1.1"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: Seconds the listener waits for a new connection's A-ASSOCIATE-RQ to arrive whole.
PEEK_BUDGET = 0.005
#: The largest A-ASSOCIATE-RQ looked at (a Verification-only request is ~200 bytes).
MAX_REQUEST = 4096
#: The largest P-DATA-TF a Verification association reads (a C-ECHO-RQ is ~80 bytes).
MAX_DATA = 65536
#: The longest wait (seconds) for the peer to close after a release or an abort.
ARTIM = 5.0
#: A peer that limits its PDUs below this is left to pynetdicom (which fragments).
MIN_PEER_PDU = 256

#: Distinct requests whose decision is kept (their bytes are the key: bounded).
PLANS = 256
#: Threads that stay, after their association, waiting for the next one.
IDLE_THREADS = 4

#: PS3.8 Table 9-26: A-ABORT source 2 (service provider) reasons.
_NOT_SPECIFIED, _UNRECOGNISED_PDU, _UNEXPECTED_PDU, _INVALID_PARAMETER = 0, 1, 2, 6
#: PS3.8 E.2: message control header bits; both: the last fragment of a command.
_COMMAND, _LAST = 0x01, 0x02
#: PS3.7 C.5.2 / 9.1.5.1.4: Success, and Refused: SOP Class not supported.
SUCCESS, SOP_CLASS_NOT_SUPPORTED = 0x0000, 0x0122

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


@dataclass(frozen=True)
class Request:
    """A Verification-only A-ASSOCIATE-RQ, decoded."""

    primitive: A_ASSOCIATE
    calling_ae_title: str


@dataclass(frozen=True)
class _Plan:
    """What a request gets: its A-ASSOCIATE-AC, and the accepted contexts (ID: SOP class)."""

    request: Request
    accept: bytes
    accepted: dict[int, str]


#: (connection, peer address, plan, on_closed): an association handed to a thread.
_Job = tuple[socket.socket, tuple[str, int], _Plan, Callable[[], None]]


def _accepted(results: list[PresentationContext]) -> dict[int, str]:
    return {
        int(cx.context_id): str(cx.abstract_syntax)
        for cx in results
        if cx.result == 0 and cx.context_id is not None
    }


def verification_request(data: bytes) -> Request | None:
    """``data`` (a whole A-ASSOCIATE-RQ PDU) as a :class:`Request` when it proposes only
    the Verification SOP Class and holds nothing beyond the plain items; else None."""
    if len(data) < 6 or data[0] != ASSOCIATE_RQ:
        return None
    decoded = decode_request(data)
    if decoded is None or not decoded.protocol_version & 0x0001:
        return None
    primitive = decoded.to_primitive()
    if str(primitive.application_context_name) != APPLICATION_CONTEXT:
        return None
    contexts = primitive.presentation_context_definition_list
    if not contexts or any(str(cx.abstract_syntax) != VERIFICATION for cx in contexts):
        return None
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
    return Request(primitive, calling)


def peek_request(sock: socket.socket, budget: float = PEEK_BUDGET) -> bytes | None:
    """The A-ASSOCIATE-RQ waiting whole in ``sock`` (left there: ``MSG_PEEK``), if one
    arrives within ``budget`` seconds; None otherwise (not yet whole, something else)."""
    try:
        if not select.select([sock], [], [], budget)[0]:
            return None
        data = sock.recv(MAX_REQUEST, socket.MSG_PEEK)
    except OSError:
        return None
    if len(data) < 6 or data[0] != ASSOCIATE_RQ:
        return None
    size = 6 + PDU_HEADER.unpack_from(data)[2]
    return data[:size] if len(data) >= size else None


class VerificationServer:
    """Serves Verification-only associations for one listener (see the module text)."""

    def __init__(
        self,
        ae: AE,
        supported: list[PresentationContext],
        *,
        admits: Callable[[str, str], bool],
        echoed: Callable[[int, float], None],
        counters: Counters,
    ) -> None:
        self.ae = ae
        self.supported = supported
        self.admits = admits
        self.echoed = echoed
        self.counters = counters
        self._lock = threading.Lock()
        self._active = 0
        self._numbers = itertools.count(1)
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
        """Take the connection when it opens with a Verification-only A-ASSOCIATE-RQ this
        server may accept; a thread of this server serves it and calls ``on_closed`` at
        the end. False: nothing was read, the connection is pynetdicom's."""
        data = peek_request(sock)
        plan = self._plan(data) if data is not None else None
        if data is None or plan is None:
            return False
        reason = self._declined(plan.request, address, watched)
        if reason is not None:
            self.counters.fallback("verification", reason)
            return False
        try:
            read_exactly(sock, len(data))  # the request, peeked above: now consumed
        except OSError:
            return False
        self.counters.hit("verification")
        if len(self.ae.active_associations) + self._active >= self.ae.maximum_associations:
            # As pynetdicom rejects at dimse.max_associations (its count does not see
            # the associations served here, so the limit is kept here for these).
            log.warning("verification association from %s rejected: at the limit", address[0])
            with contextlib.suppress(OSError):
                sock.sendall(_REJECT_LIMIT_PDU)
            sock.close()
            on_closed()
            return True
        with self._lock:
            self._active += 1
            job = (sock, address, plan, on_closed)
            if self._idle:
                self._idle -= 1
                self._work.put(job)  # under the lock: an idle thread is waiting for it
                return True
        thread = threading.Thread(
            target=self._serve_then_wait,
            args=(job,),
            name=f"verification-{next(self._numbers)}",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: the connection is closed, not lost
            log.error("no thread for a verification association from %s", address[0])
            with self._lock:
                self._active -= 1
            sock.close()
            on_closed()
        return True

    def _plan(self, data: bytes) -> _Plan | None:
        """The decision for a request: decoded, negotiated and answered once per distinct
        request (a monitoring probe sends the same bytes each time); None when the
        request is not ours."""
        if data in self._plans:
            return self._plans[data]
        request = verification_request(data)
        plan = None
        if request is not None:
            try:
                results = self._negotiate(request)
                plan = _Plan(request, self._accept(request, results), _accepted(results))
            except (ValueError, TypeError, AttributeError, UnicodeEncodeError) as exc:
                self.counters.fallback("verification", f"negotiation: {type(exc).__name__}")
                return None
        if len(self._plans) < PLANS:
            self._plans[data] = plan
        return plan

    def _serve_then_wait(self, job: _Job) -> None:
        """Serve associations one after another: this one, then whichever is handed to
        this thread while it waits (at most ``IDLE_THREADS`` wait; a thread start costs
        ~0.1-0.4 ms on a 2-core VM, a hand-off to a waiting thread a wake-up)."""
        while True:
            sock, address, plan, on_closed = job
            self._run(sock, address, plan.accept, plan.accepted, on_closed)
            with self._lock:
                if self._idle >= IDLE_THREADS:
                    return
                self._idle += 1
            job = self._work.get()

    def _declined(
        self, request: Request, address: tuple[str, int], watched: Callable[[], bool]
    ) -> str | None:
        """Why pynetdicom serves this Verification-only request instead, if it does."""
        ae = self.ae
        if watched():
            return "the server's bindings watch PDUs or messages"
        if ae.require_calling_aet or ae.require_called_aet:
            return "AE titles are checked by pynetdicom"
        if not self.admits(request.calling_ae_title, str(address[0])):
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
        accept: bytes,
        accepted: dict[int, str],
        on_closed: Callable[[], None],
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

        try:
            sock.sendall(accept)
            # With nothing accepted (an AC PS3.8 9.3.3.2 allows) the peer releases or
            # aborts; anything else it sends is a protocol error, as below.
            problem = self._established(sock, accepted, ending)
            if problem is not None:
                log.warning("verification association from %s aborted: %s", address[0], problem)
            ending()
            self._await_close(sock)
        except OSError as exc:
            log.debug("verification association from %s ended: %s", address[0], exc)
        except Exception:  # a fault here must not end the thread that serves the next
            log.exception("verification association from %s failed", address[0])
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            ending()

    def _established(
        self, sock: socket.socket, accepted: dict[int, str], ending: Callable[[], None]
    ) -> str | None:
        """Serve the established association until it ends (``ending`` called before its
        last PDU goes out); the protocol error that ended it, if one did (an A-ABORT was
        sent for it)."""
        abort = functools.partial(self._abort, sock, ending)
        timeout = self.ae.network_timeout
        command = bytearray()
        while True:
            deadline = time.monotonic() + timeout if timeout else None
            try:
                header = read_exactly(sock, 6, deadline=deadline)
            except TimeoutError:
                return abort(_NOT_SPECIFIED, "no PDU within dimse.network_timeout")
            if len(header) < 6:
                return None  # the peer closed the connection
            kind, _, length = PDU_HEADER.unpack(header)
            if length > (MAX_DATA if kind == P_DATA_TF else MAX_REQUEST):
                return abort(_INVALID_PARAMETER, f"a PDU of {length} bytes")
            try:
                body = read_exactly(sock, length, deadline=deadline)
            except TimeoutError:
                return abort(_NOT_SPECIFIED, "a PDU cut short")
            if len(body) < length:
                return None  # the peer closed the connection
            if kind == P_DATA_TF:
                problem = self._data(sock, body, accepted, command)
                if problem is not None:
                    return abort(_INVALID_PARAMETER, problem)
            elif kind == RELEASE_RQ:
                ending()
                sock.sendall(_RELEASE_RP_PDU)
                return None
            elif kind == ABORT:
                return None
            elif kind in (ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ, RELEASE_RP):
                return abort(_UNEXPECTED_PDU, f"PDU type {kind:#04x} in Sta6")
            else:
                return abort(_UNRECOGNISED_PDU, f"unrecognised PDU type {kind:#04x}")

    def _data(
        self, sock: socket.socket, body: bytearray, accepted: dict[int, str], command: bytearray
    ) -> str | None:
        """Answer the C-ECHO-RQs of one P-DATA-TF; what is wrong with it, if anything."""
        items = pdv_items(body)
        if items is None:
            return "a malformed P-DATA-TF"
        for context_id, fragment in items:
            abstract = accepted.get(context_id)
            if abstract is None:
                return f"presentation context {context_id} was not accepted"
            control = fragment[0]
            if not control & _COMMAND:
                return "a data set on a Verification context"
            command += fragment[1:]
            if control & _LAST:
                started = time.perf_counter()
                answer = self._echo(bytes(command), abstract)
                command.clear()
                if answer is None:
                    return "a command other than C-ECHO-RQ"
                response, status = answer
                sock.sendall(pdu(context_id, _COMMAND | _LAST, response))
                self.echoed(status, time.perf_counter() - started)
        return None

    @staticmethod
    def _echo(command: bytes, abstract: str) -> tuple[bytes, int] | None:
        """The C-ECHO-RSP command set for a C-ECHO-RQ command set, and its status; None
        for anything else."""
        try:
            elements = parse_command(command)
            if read_us(elements, 0x0100) != C_ECHO_RQ:
                return None
            if read_us(elements, 0x0800) != NO_DATA_SET:
                return None
            message_id = read_us(elements, 0x0110)
            sop_class = read_text(elements, 0x0002)
        except (KeyError, ValueError, UnicodeDecodeError):
            return None
        status = SUCCESS if sop_class == abstract else SOP_CLASS_NOT_SUPPORTED
        return echo_response_command(sop_class, message_id, status), status

    @staticmethod
    def _abort(sock: socket.socket, ending: Callable[[], None], reason: int, problem: str) -> str:
        ending()
        with contextlib.suppress(OSError):
            sock.sendall(_abort_pdu(reason))
        return problem

    def _await_close(self, sock: socket.socket) -> None:
        """After an A-RELEASE-RP or an A-ABORT the requestor closes the connection
        (PS3.8 9.2, Sta13: ARTIM running, here at most ``ARTIM`` seconds); closing
        first with its bytes unread would reset it, losing what was just sent."""
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + min(float(self.ae.acse_timeout or ARTIM), ARTIM)
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], remaining)[0] or not sock.recv(MAX_REQUEST):
                return
