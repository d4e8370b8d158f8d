"""C-MOVE and C-GET sub-operations that send a stored file's data set as it lies on disk.

pynetdicom's Move SCP sends each sub-operation with ``Association.send_c_store``,
which takes a ``Dataset``: the stored file is read into pydicom, encoded again,
split into P-DATA fragments of the destination's maximum PDU (dcmtk's default is
16 KiB: 32 fragments for a 512x512 CT slice) and each fragment is passed through
the DUL thread's state machine.

When an instance goes out in its stored transfer syntax over a plain TCP
association, this module sends it instead: the C-STORE-RQ command set is written
directly (PS3.7 9.3.1.1, Implicit VR Little Endian), the stored data set bytes
follow in P-DATA-TF PDUs (PS3.8 9.3.5) of the negotiated size, written straight
to the socket, and the sending thread reads the C-STORE-RSP off the socket itself
(its Status and Message ID Being Responded To, PS3.7 9.3.1.2) while it holds the
association's socket (``dimse.fastpath.wakeup``: the DUL thread neither reads the socket nor
waits on it meanwhile). Handing the response through pynetdicom's DUL thread, state
machine, command-set decoding with pydicom and message queue cost about as much
again as the send. Anything but a P-DATA-TF answer (an A-ABORT, say) aborts the
sub-association: the sub-operation fails and so do the rest.

pynetdicom still negotiates and releases the association, runs the sub-operation
loop and counts the results. Conversions, TLS and anything unusual keep
pynetdicom's own ``send_c_store``.

C-GET (``attach_get``): the sub-operations go out on the association that carries the
C-GET, over the storage contexts the requestor accepted in the SCP role (PS3.7 D.3.3.4),
with the same sender. Two things differ from a sub-association: pynetdicom's own
messages (the pending C-GET responses) are written by the DUL thread on the same
socket, so the DUL's ``send`` takes the socket lock too and no message can interleave
with a C-STORE-RQ being written; and the requestor may send a C-CANCEL-RQ (PS3.4
C.4.3.3.1) before the C-STORE response, which the sender reads and hands to pynetdicom
as the DIMSE provider would (``cancel_req``) before it reads on.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, Protocol

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_CANCEL

from dimse.fastpath import wakeup
from dimse.fastpath.command import (
    C_STORE_RQ,
    C_STORE_RSP,
    command_set,
    parse_command,
    read_us,
    text,
    uid,
    us,
)
from dimse.fastpath.pdu import P_DATA_TF, PDU_HEADER, pdu, pdu_header, pdv_items, read_exactly
from storage.archive import data_set_offset

if TYPE_CHECKING:
    from dimse.fastpath import Counters

log = logging.getLogger("noctis.dimse.fastpath.sender")

#: Largest P-DATA fragment when the destination sets no maximum PDU length.
UNLIMITED_FRAGMENT = 1 << 20
#: Bytes gathered before one ``sendall`` (several PDUs per system call).
SEND_BATCH = 256 << 10
#: Seconds to wait for a response when the association sets no DIMSE timeout.
DEFAULT_RESPONSE_TIMEOUT = 60.0


class StoredInstance(Dataset):
    """A sub-operation's instance sent as stored, read with ``opener`` (a file of its own
    or a record in a pack; ``size`` bytes); the SOP UIDs are set so that pynetdicom lists
    it in the Failed SOP Instance UID List if it fails.

    The two UIDs are put in as raw elements, read by pydicom only if pynetdicom asks
    (pydicom's attribute setters validate and convert each value); the sender takes them from ``noctis_source``."""

    def __init__(
        self,
        opener: Callable[[], BinaryIO],
        size: int,
        sop_class: str,
        sop_instance: str,
        syntax: str,
    ) -> None:
        super().__init__()
        for tag, value in ((_SOP_CLASS, sop_class), (_SOP_INSTANCE, sop_instance)):
            encoded = uid(value)
            self._dict[tag] = RawDataElement(tag, "UI", len(encoded), encoded, 0, True, True)
        source = _Source(opener, size, syntax, sop_class, sop_instance)
        object.__setattr__(self, "noctis_source", source)


class _Source(NamedTuple):
    opener: Callable[[], BinaryIO]
    size: int
    syntax: str
    sop_class: str
    sop_instance: str


_SOP_CLASS = BaseTag(0x00080016)
_SOP_INSTANCE = BaseTag(0x00080018)


def command_set_c_store(
    *,
    sop_class: str,
    sop_instance: str,
    message_id: int,
    priority: int,
    originator_aet: str | None,
    originator_id: int | None,
) -> bytes:
    """The C-STORE-RQ command set (PS3.7 Table 9.3-1)."""
    elements = [
        (0x0002, uid(sop_class)),
        (0x0100, us(C_STORE_RQ)),
        (0x0110, us(message_id)),
        (0x0700, us(priority)),
        (0x0800, us(0x0001)),  # a data set follows
        (0x1000, uid(sop_instance)),
    ]
    if originator_aet and originator_id is not None:
        elements += [(0x1030, text(originator_aet.strip()[:16])), (0x1031, us(originator_id))]
    return command_set(elements)


class _Unsendable(Exception):
    """The instance cannot go out directly: fall back to pynetdicom's send."""


def _context_id(assoc: Association, sop_class: str, syntax: str) -> int:
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == syntax and cx.as_scu:
            return int(cx.context_id or 0)
    raise _Unsendable("no accepted context for the stored syntax")


def _stream(
    sock: socket.socket, context_id: int, command: bytes, fh: BinaryIO, size: int, fragment: int
) -> None:
    """Send the command and the stored data set as P-DATA-TF PDUs of ``fragment`` bytes.

    The file is read in batches of whole fragments into one buffer, and each batch goes
    out in one ``sendmsg`` of the PDU headers and views of the buffer: no fragment is
    copied in Python (a 512x512 CT slice is one read and one system call)."""
    offset = data_set_offset(fh.read(512))
    if offset is None:
        raise _Unsendable("not a standard Part 10 file")
    remaining = size - offset
    fh.seek(offset)
    per_batch = max(1, SEND_BATCH // fragment) * fragment
    buffer = memoryview(bytearray(min(per_batch, max(remaining, 0))))
    parts: list[bytes | memoryview] = [pdu(context_id, 0x03, command)]  # command, last
    while remaining > 0:
        size = fh.readinto(buffer[: min(per_batch, remaining)])  # type: ignore[attr-defined]
        if not size:
            raise OSError("stored file shorter than it was")
        remaining -= size
        for start in range(0, size, fragment):
            chunk = buffer[start : min(start + fragment, size)]
            last = remaining == 0 and start + fragment >= size
            parts += (pdu_header(context_id, 0x02 if last else 0x00, len(chunk)), chunk)
        _send_all(sock, parts)
        parts = []
    if parts:
        _send_all(sock, parts)


#: Buffers per ``sendmsg`` (POSIX guarantees at least 16, Linux takes 1,024).
_MAX_BUFFERS = 1024


def _send_all(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """``sendall`` for a list of buffers, in as few ``sendmsg`` calls as it takes."""
    views = [memoryview(p) for p in parts]
    while views:
        sent = sock.sendmsg(views[:_MAX_BUFFERS])
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


class _ProtocolError(Exception):
    """The destination answered with something other than the C-STORE response."""


def _read_exactly(sock: socket.socket, size: int, deadline: float) -> bytearray:
    data = read_exactly(sock, size, deadline=deadline)
    if len(data) < size:
        raise _ProtocolError("the move destination closed the connection")
    return data


#: PS3.7 E.2: C-CANCEL-RQ command field.
_C_CANCEL_RQ = 0x0FFF


def read_store_response(
    sock: socket.socket,
    message_id: int,
    timeout: float,
    on_cancel: Callable[[int], None] | None = None,
) -> Dataset:
    """Read P-DATA-TF PDUs until the command set of a C-STORE-RSP is complete (PS3.8
    9.3.5, E.2); its Status (and Error Comment) as a ``Dataset``. With ``on_cancel`` a
    C-CANCEL-RQ read first is handed to it (its Message ID Being Responded To)."""
    deadline = time.monotonic() + timeout
    while True:
        elements = _read_command(sock, deadline)
        try:
            field = read_us(elements, 0x0100)
            if field == _C_CANCEL_RQ and on_cancel is not None:
                on_cancel(read_us(elements, 0x0120))
                continue
            responding_to, code = (read_us(elements, e) for e in (0x0120, 0x0900))
        except (KeyError, ValueError):
            raise _ProtocolError("malformed command set in the response") from None
        break
    if field != C_STORE_RSP or responding_to != message_id:
        raise _ProtocolError("the response is not the C-STORE response to this request")
    status = Dataset()
    status.Status = code
    comment = elements.get(0x0902)
    if comment:
        status.ErrorComment = comment.decode("ascii", "replace").strip("\0 ")
    return status


def _read_command(sock: socket.socket, deadline: float) -> dict[int, bytes]:
    """The next command set on the socket (P-DATA-TF PDUs of command fragments)."""
    command = bytearray()
    while True:
        pdu_type, _, length = PDU_HEADER.unpack(_read_exactly(sock, 6, deadline))
        body = _read_exactly(sock, length, deadline)
        if pdu_type != P_DATA_TF:
            raise _ProtocolError(f"PDU type 0x{pdu_type:02X} instead of the C-STORE response")
        items = pdv_items(body)
        if items is None:
            raise _ProtocolError("malformed P-DATA-TF PDU in the response")
        last = False
        for _, value in items:
            control = value[0]
            if not control & 0x01:
                raise _ProtocolError("a data set fragment instead of the C-STORE response")
            command += value[1:]
            last = bool(control & 0x02)
        if last:
            break
    try:
        return parse_command(bytes(command))
    except (KeyError, ValueError):
        raise _ProtocolError("malformed command set in the response") from None


class _SendCStore(Protocol):
    def __call__(
        self,
        dataset: str | Path | Dataset,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset: ...


def fast_send_c_store(
    assoc: Association,
    fallback: _SendCStore,
    counters: Counters,
    *,
    path: str = "move",
    on_cancel: Callable[[int], None] | None = None,
) -> _SendCStore:
    """A ``send_c_store`` for ``assoc`` (a C-MOVE sub-association, or with ``on_cancel``
    the association of a C-GET): instances given as ``StoredInstance`` go out from their
    file; anything else through ``fallback``. Counted under ``path``."""
    contexts: dict[tuple[str, str], int] = {}  # (SOP class, syntax) -> context ID

    def send_c_store(
        dataset: str | Path | Dataset,
        msg_id: int = 1,
        priority: int = 2,
        originator_aet: str | None = None,
        originator_id: int | None = None,
    ) -> Dataset:
        source: _Source | None = getattr(dataset, "noctis_source", None)
        if source is None:
            return fallback(dataset, msg_id, priority, originator_aet, originator_id)

        def through_pynetdicom(reason: str = "") -> Dataset:
            if reason:
                counters.fallback(path, reason)
            with source.opener() as fh:
                dataset = dcmread(fh)
            return fallback(dataset, msg_id, priority, originator_aet, originator_id)

        transport = assoc.dul.socket
        sock = transport.socket if transport is not None else None
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return through_pynetdicom()  # TLS: pynetdicom's send, by design
        syntax = source.syntax
        key = (source.sop_class, syntax)
        context_id = contexts.get(key)
        if context_id is None:
            try:
                context_id = contexts[key] = _context_id(assoc, source.sop_class, syntax)
            except _Unsendable as exc:
                return through_pynetdicom(str(exc))
        command = command_set_c_store(
            sop_class=source.sop_class,
            sop_instance=source.sop_instance,
            message_id=msg_id,
            priority=priority,
            originator_aet=originator_aet,
            originator_id=originator_id,
        )
        max_pdu = int(assoc.dimse.maximum_pdu_size or 0)
        fragment = max_pdu - 6 if max_pdu > 6 else UNLIMITED_FRAGMENT
        wakeups = wakeup.of(assoc)
        if wakeups is None:
            return through_pynetdicom("the sub-association has no wake-ups")
        try:
            fh = source.opener()
        except OSError as exc:  # a failed sub-operation; the association goes on
            log.warning("cannot read a stored instance to send: %s", exc)
            return Dataset()
        timeout = float(assoc.dimse_timeout or DEFAULT_RESPONSE_TIMEOUT)
        try:
            with fh, wakeups.socket_lock:
                if not assoc.is_established:
                    return Dataset()
                if getattr(getattr(transport, "recv", None), "pending", b""):
                    raise _Unsendable("bytes read ahead by the network thread")
                _stream(sock, context_id, command, fh, source.size, fragment)
                status = read_store_response(sock, msg_id, timeout, on_cancel)
        except _Unsendable as exc:
            return through_pynetdicom(str(exc))
        except (OSError, _ProtocolError) as exc:
            log.warning("C-STORE sub-operation failed, aborting the sub-association: %s", exc)
            assoc.abort()
            return Dataset()
        assoc.dul._idle_timer.restart()  # what the DUL does for every PDU it reads
        counters.hit(path)
        return status

    send_c_store.noctis_sender = True  # type: ignore[attr-defined]
    return send_c_store


def attach(assoc: Association, counters: Counters) -> None:
    """Send this sub-association's ``StoredInstance`` sub-operations from their files."""
    assoc.send_c_store = fast_send_c_store(  # type: ignore[method-assign]
        assoc, assoc.send_c_store, counters
    )


def attach_get(assoc: Association, counters: Counters) -> bool:
    """Send the ``StoredInstance`` sub-operations of C-GETs on ``assoc`` (an accepted
    association with wake-ups) from their files; ``False`` when it cannot (no wake-ups,
    TLS). Once per association."""
    if attached(assoc):
        return True
    wakeups = wakeup.of(assoc)
    transport = assoc.dul.socket
    if wakeups is None or transport is None or isinstance(transport.socket, ssl.SSLSocket):
        return False
    lock, send = wakeups.socket_lock, transport.send

    def send_locked(bytestream: bytes) -> None:
        with lock:  # never inside a C-STORE-RQ the sender is writing
            send(bytestream)

    transport.send = send_locked  # type: ignore[method-assign]

    def on_cancel(message_id: int) -> None:
        cancel = C_CANCEL()
        cancel.MessageIDBeingRespondedTo = message_id
        assoc.dimse.cancel_req[message_id] = cancel

    assoc.send_c_store = fast_send_c_store(  # type: ignore[method-assign]
        assoc, assoc.send_c_store, counters, path="get", on_cancel=on_cancel
    )
    return True


def attached(assoc: Association) -> bool:
    """Whether :func:`attach` gave ``assoc`` the sender."""
    return bool(getattr(assoc.send_c_store, "noctis_sender", False))
