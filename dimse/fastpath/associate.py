"""The A-ASSOCIATE-RQ of an accepted association read, and its A-ASSOCIATE-AC written,
without pynetdicom's PDU item objects (PS3.8 9.3.2, 9.3.3).

pynetdicom decodes an A-ASSOCIATE-RQ into an object per item and sub-item (a
presentation context is three: the context, its abstract syntax, each transfer
syntax), converts those into the A-ASSOCIATE primitive the association negotiates
with, and for the answer builds an object per result item again and encodes them one
field at a time. For a modality's storescu, which proposes ~120 presentation
contexts, that was ~1.1 ms to decode and ~0.7 ms to encode of a new association's
~5 ms on loopback (docs/performance.md, issue 15).

Here the presentation context items are read straight from the PDU's bytes into the
primitive's ``PresentationContext`` objects (through their own setters, so every value
is validated as pynetdicom validates it) and the result items are written as bytes.
The application context item and the user information item, one each, still go
through pynetdicom's item classes, as do the PDU's own fields: what the association
negotiates with is the primitive pynetdicom would have built
(``tests/test_dimse_associate.py`` compares the two).

Anything else keeps pynetdicom's decoding and encoding unchanged: an item or sub-item
of another type, lengths that do not add up, a presentation context without exactly
one abstract syntax or without a transfer syntax, and any association whose received
or sent PDUs someone watches (``EVT_DATA_RECV``, ``EVT_PDU_RECV``, ``EVT_PDU_SENT``).
pynetdicom then reads the same bytes (given back to the socket reader) and answers or
aborts as it always did.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from pynetdicom import evt, fsm
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_items import ApplicationContextItem, UserInformationItem
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from dimse.fastpath.contexts import copy_context
from dimse.fastpath.pdu import ASSOCIATE_AC, ASSOCIATE_RQ, PDU_HEADER, PduReader
from dimse.fastpath.uids import conformant

if TYPE_CHECKING:
    from dimse.fastpath import Counters

log = logging.getLogger("noctis.dimse.fastpath.associate")

#: PS3.8 9.3.2: item types of the A-ASSOCIATE-RQ variable field and its sub-items.
_APPLICATION_CONTEXT = 0x10
_PRESENTATION_CONTEXT_RQ = 0x20
_PRESENTATION_CONTEXT_AC = 0x21
_ABSTRACT_SYNTAX = 0x30
_TRANSFER_SYNTAX = 0x40
_USER_INFORMATION = 0x50
#: The fixed part of an A-ASSOCIATE-RQ / -AC PDU after its 6-byte header (PS3.8 Table 9-11).
_FIXED = 68
_ITEM_HEADER = struct.Struct(">BBH")
#: The states of an acceptor awaiting its A-ASSOCIATE-RQ (PS3.8 9.2: Sta2, where Evt6 is
#: AE-6; and Sta1, where pynetdicom's DUL reads the PDU in the same turn as it queues the
#: connection's Evt5 ahead of it).
_AWAITING_REQUEST = frozenset({"Sta1", "Sta2"})
#: The attribute that marks a DUL whose A-ASSOCIATE-AC is written here.
_MARK = "_noctis_associate"


class _Unusual(Exception):
    """Something pynetdicom decodes (and judges) itself."""


def _items(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """The (type, value start, value end) of each item in ``data[start:end]``."""
    items = []
    pos = start
    while pos < end:
        if pos + 4 > end:
            raise _Unusual("an item header past the end")
        kind, _, length = _ITEM_HEADER.unpack_from(data, pos)
        value = pos + 4
        pos = value + length
        if pos > end:
            raise _Unusual("an item longer than what holds it")
        items.append((kind, value, pos))
    return items


def _uid_bytes(data: bytes, start: int, end: int) -> bytes:
    """A UID field's bytes as pynetdicom's sub-items keep them (one trailing NUL dropped)."""
    value = data[start:end]
    return value[:-1] if value[-1:] == b"\x00" else value


def _context(data: bytes, start: int, end: int) -> PresentationContext:
    """A Presentation Context Item (RQ) as pynetdicom's ``to_primitive`` makes it (its
    syntaxes as :func:`_syntaxes` made them, its context ID checked as the setter does)."""
    if end - start < 4:
        raise _Unusual("a presentation context item too short")
    sub_items = data[start + 4 : end]
    model = (
        _syntaxes(sub_items) if len(sub_items) <= _CACHED_ITEM else _syntaxes.__wrapped__(sub_items)
    )
    return copy_context(model, data[start])


#: Sub-items up to this size are decoded once per distinct value (a storescu proposes the
#: same ~120 on every association); the bound keeps a peer from filling the cache.
_CACHED_ITEM = 512


@functools.lru_cache(maxsize=1024)
def _syntaxes(sub_items: bytes) -> PresentationContext:
    """A context holding the abstract and transfer syntaxes of a presentation context
    item's sub-items, set through pynetdicom's setters in the order they come."""
    found = _items(sub_items, 0, len(sub_items))
    kinds = [kind for kind, _, _ in found]
    if kinds.count(_ABSTRACT_SYNTAX) != 1 or _TRANSFER_SYNTAX not in kinds:
        raise _Unusual("a presentation context without its syntaxes")
    context = PresentationContext()
    for kind, value, stop in found:
        name = _uid_bytes(sub_items, value, stop).decode("ascii")
        if not conformant(name):  # a mistaken UID: pynetdicom says what is wrong
            raise _Unusual("a UID pynetdicom judges itself")
        if kind == _ABSTRACT_SYNTAX:
            context.abstract_syntax = name
        elif kind == _TRANSFER_SYNTAX:
            context.add_transfer_syntax(name)
        else:
            raise _Unusual("a sub-item pynetdicom reads itself")
    context._transfer_syntax = tuple(context._transfer_syntax)  # type: ignore[assignment]
    return context


class DecodedRequest(A_ASSOCIATE_RQ):
    """An A-ASSOCIATE-RQ read here: pynetdicom's PDU with its fixed fields set through its
    own setters, and the primitive its ``to_primitive`` returns built from the bytes."""

    def __init__(self, primitive: A_ASSOCIATE) -> None:
        super().__init__()
        self.noctis_primitive = primitive

    def to_primitive(self) -> A_ASSOCIATE:
        return self.noctis_primitive


def decode_request(pdu: bytes) -> DecodedRequest | None:
    """The A-ASSOCIATE-RQ PDU ``pdu`` (header included) decoded as pynetdicom decodes it;
    None when it holds anything pynetdicom should read itself (see the module text)."""
    try:
        return _decode(pdu)
    except Exception:  # noqa: BLE001 - whatever it is, pynetdicom's own decode judges it
        return None


def _decode(pdu: bytes) -> DecodedRequest:
    if len(pdu) < 6 + _FIXED or pdu[0] != ASSOCIATE_RQ:
        raise _Unusual("not an A-ASSOCIATE-RQ")
    application: ApplicationContextItem | None = None
    user: UserInformationItem | None = None
    contexts: list[PresentationContext] = []
    for kind, value, end in _items(pdu, 6 + _FIXED, len(pdu)):
        if kind == _PRESENTATION_CONTEXT_RQ:
            contexts.append(_context(pdu, value, end))
        elif kind == _APPLICATION_CONTEXT and application is None:
            application = ApplicationContextItem()
            application.decode(pdu[value - 4 : end])
        elif kind == _USER_INFORMATION and user is None:
            user = UserInformationItem()
            user.decode(pdu[value - 4 : end])
        else:
            raise _Unusual("an item pynetdicom reads itself")
    if application is None or user is None:
        raise _Unusual("no application context or user information item")
    request = DecodedRequest(A_ASSOCIATE())
    (request.protocol_version,) = struct.unpack_from(">H", pdu, 6)
    request.called_ae_title = pdu[10:26]
    request.calling_ae_title = pdu[26:42]
    primitive = request.noctis_primitive
    primitive.calling_ae_title = request.calling_ae_title
    primitive.called_ae_title = request.called_ae_title
    primitive.application_context_name = application.application_context_name
    primitive.presentation_context_definition_list = contexts
    primitive.user_information = user.to_primitive()
    return request


def encode_accept(primitive: A_ASSOCIATE) -> bytes:
    """The A-ASSOCIATE-AC PDU for an accepting ``primitive``, byte for byte what
    pynetdicom's ``A_ASSOCIATE_AC(primitive).encode()`` writes (PS3.8 9.3.3)."""
    application = ApplicationContextItem()
    application.application_context_name = primitive.application_context_name  # type: ignore[assignment]
    user = UserInformationItem()
    user.from_primitive(primitive.user_information)
    parts = [
        struct.pack(">H", 0x0001),  # protocol version
        b"\x00\x00",
        str(primitive.called_ae_title).ljust(16).encode("ascii"),
        str(primitive.calling_ae_title).ljust(16).encode("ascii"),
        bytes(32),
        application.encode(),
    ]
    parts += [
        _result_item(context.context_id, context.result, context._transfer_syntax[0])
        for context in primitive.presentation_context_definition_results_list
    ]
    parts.append(user.encode())
    body = b"".join(parts)
    return PDU_HEADER.pack(ASSOCIATE_AC, 0, len(body)) + body


@functools.lru_cache(maxsize=4096)  # bounded: 255 IDs, 5 results, the syntaxes served
def _result_item(context_id: int | None, result: int | None, syntax: str) -> bytes:
    """A Presentation Context Item (AC) with its Transfer Syntax Sub-item (PS3.8 9.3.3.2)."""
    name = str(syntax).encode("ascii")
    header = struct.pack(
        ">BBHBBBBBBH", _PRESENTATION_CONTEXT_AC, 0, 8 + len(name), context_id, 0, result, 0,
        _TRANSFER_SYNTAX, 0, len(name),
    )  # fmt: skip
    return header + name


def _watched(assoc: Association, *events: Any) -> bool:
    return any(assoc.get_handlers(event) for event in events)


def _send_accept(original: Callable[[DULServiceProvider], str]) -> Callable[..., str]:
    """pynetdicom's AE-7 (send the A-ASSOCIATE-AC PDU, PS3.8 9.2.2), the PDU written here
    for a marked DUL."""

    def ae_7(dul: DULServiceProvider) -> str:
        if not getattr(dul, _MARK, False) or _watched(dul.assoc, evt.EVT_PDU_SENT):
            return original(dul)
        primitive = cast(A_ASSOCIATE, dul.to_provider_queue.get(False))
        try:
            data = encode_accept(primitive)
        except (ValueError, TypeError, IndexError, AttributeError, UnicodeEncodeError):
            data = None
        if data is None or dul.socket is None:
            # pynetdicom's own encoding (it says what is wrong, or that the connection
            # is closed), as AE-7 would have sent it.
            dul._send(A_ASSOCIATE_AC(primitive))
        else:
            dul.socket.send(data)
        return "Sta6"

    ae_7.noctis_associate = True  # type: ignore[attr-defined]
    return ae_7


def install() -> None:
    """Route pynetdicom's AE-7 through :func:`_send_accept` (once per process; a DUL
    without the mark sends as before)."""
    description, action, state = fsm.ACTIONS["AE-7"]
    if not getattr(action, "noctis_associate", False):
        fsm.ACTIONS["AE-7"] = (description, _send_accept(action), state)


def attach(assoc: Association, counters: Counters) -> None:
    """Read this accepted association's A-ASSOCIATE-RQ and write its A-ASSOCIATE-AC here
    (its socket reads through ``PduReader``; before the association starts). Counted
    under the ``associate`` path."""
    dul = assoc.dul
    reader = dul.socket.recv if dul.socket is not None else None
    if not isinstance(reader, PduReader):
        return
    install()
    setattr(dul, _MARK, True)
    pynetdicom_read = dul._read_pdu_data

    def read_pdu_data() -> None:
        if dul.state_machine.current_state not in _AWAITING_REQUEST or _watched(
            assoc, evt.EVT_DATA_RECV, evt.EVT_PDU_RECV
        ):
            pynetdicom_read()
            return
        try:
            header = reader(6)
            if len(header) < 6 or header[0] != ASSOCIATE_RQ:
                reader.unread(header)
                pynetdicom_read()
                return
            body = reader(PDU_HEADER.unpack(header)[2])
        except (OSError, TimeoutError):
            log.error("connection closed before the entire PDU was received")
            dul.event_queue.put("Evt17")  # transport closed, as pynetdicom's read reports it
            return
        pdu = bytes(header + body)
        request = decode_request(pdu) if len(body) == len(pdu) - 6 else None
        if request is None:
            counters.fallback("associate", "an A-ASSOCIATE-RQ pynetdicom decodes itself")
            reader.unread(pdu)
            pynetdicom_read()
            return
        counters.hit("associate")
        dul._recv_pdu.put(request)
        dul.event_queue.put("Evt6")

    dul._read_pdu_data = read_pdu_data  # type: ignore[method-assign]
