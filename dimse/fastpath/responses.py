"""C-FIND and C-STORE responses and pending C-MOVE / C-GET responses encoded directly.

pynetdicom turns every response primitive into a DIMSE message by building its
command set as a pydicom ``Dataset`` (each value validated on assignment), encoding
it once to learn the group length and again to send it, then splitting it into
P-DATA primitives. A C-FIND answers each match with its own pending response, so
that work is paid per match, a large share of what a match costs once the identifier
itself is encoded directly (docs/performance.md).

An association Noctis accepts sends its C-FIND pending and success responses through
:func:`fast_send_msg` instead: the C-FIND-RSP command set (PS3.7 Table 9.3-3:
Affected SOP Class UID, Command Field 8020H, Message ID Being Responded To, Command
Data Set Type, Status) is written as Implicit VR Little Endian bytes, and the command
and identifier go to the DUL as the PDVs pynetdicom would queue, in the same order on
the same queue; when both fit in one PDU they share it (two PDVs of one P-DATA-TF
PDU, PS3.8 9.3.5.1), so that a C-FIND answer costs the peer one PDU per match.
Pending C-MOVE and C-GET responses (pynetdicom sends one after every sub-operation, with
the four sub-operation counts and no identifier) go the same way, and at most one per
``pending_interval`` seconds (``dimse.pending_interval``): PS3.4 C.4.2.3.1 makes them
optional, and one per instance costs a message and a wake-up of the association's
network thread each. The first
sub-operation is always reported, and the final response carries the counts. C-STORE
responses (PS3.7 Table 9.3-2), one per received instance, are written the same way
(``send_store_response``, used by ``inline``).
Every other message (and any response carrying an Error Comment or Offending Element)
keeps pynetdicom's encoding.
"""

from __future__ import annotations

import functools
import math
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE, C_STORE, DimsePrimitiveType
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA

from dimse.fastpath.command import C_STORE_RSP, command_set, text, uid, us

if TYPE_CHECKING:
    from dimse.fastpath import Counters

#: ``DIMSEServiceProvider.send_msg``.
SendMsg = Callable[[DimsePrimitiveType, int], None]

#: PS3.7 E.2: C-FIND-RSP command field.
_C_FIND_RSP = 0x8020
#: Statuses sent directly: pending (FF00H, FF01H) and success.
_DIRECT_STATUSES = frozenset({0xFF00, 0xFF01, 0x0000})
#: PS3.7 E.2: C-GET-RSP and C-MOVE-RSP command fields.
_RETRIEVE_RSP: dict[type[C_GET | C_MOVE], int] = {C_GET: 0x8010, C_MOVE: 0x8021}
#: (0000,1020)-(0000,1023): remaining, completed, failed, warning sub-operations.
_SUB_OPERATION_COUNTS = (
    (0x1020, "NumberOfRemainingSuboperations"),
    (0x1021, "NumberOfCompletedSuboperations"),
    (0x1022, "NumberOfFailedSuboperations"),
    (0x1023, "NumberOfWarningSuboperations"),
)


def find_response_command(
    sop_class: str, responding_to: int, status: int, has_identifier: bool
) -> bytes:
    """The C-FIND-RSP command set (PS3.7 9.3.2.2)."""
    return command_set(
        [
            (0x0002, uid(sop_class)),
            (0x0100, us(_C_FIND_RSP)),
            (0x0120, us(responding_to)),
            (0x0800, us(0x0001 if has_identifier else 0x0101)),
            (0x0900, us(status)),
        ]
    )


def store_response_command(
    sop_class: str, sop_instance: str, responding_to: int, status: int, comment: str = ""
) -> bytes:
    """The C-STORE-RSP command set (PS3.7 9.3.1.2), with an Error Comment (0000,0902) when
    one is given; no Offending Element."""
    elements = [
        (0x0002, uid(sop_class)),
        (0x0100, us(C_STORE_RSP)),
        (0x0120, us(responding_to)),
        (0x0800, us(0x0101)),
        (0x0900, us(status)),
    ]
    if comment:  # LO (PS3.7 C.11.2): 64 characters of the default repertoire
        plain = comment[:64].encode("ascii", "replace").decode("ascii")
        elements.append((0x0902, text(plain)))
    elements.append((0x1000, uid(sop_instance)))
    return command_set(elements)


#: PS3.7 E.2: C-ECHO-RSP command field.
_C_ECHO_RSP = 0x8030


def send_echo_response(
    dimse: DIMSEServiceProvider, context_id: int, *, sop_class: str, responding_to: int, status: int
) -> None:
    """Queue a C-ECHO-RSP (PS3.7 9.3.5.2: Affected SOP Class UID, Command Field 8030H,
    Message ID Being Responded To, no data set, Status) for the DUL thread to send."""
    command = echo_response_command(sop_class, responding_to, status)
    _queue(dimse.dul, context_id, command, command=True, max_pdu=int(dimse.maximum_pdu_size or 0))


def echo_response_command(sop_class: str, responding_to: int, status: int) -> bytes:
    """A C-ECHO-RSP command set (PS3.7 9.3.5.2)."""
    head, tail = _echo_response_around(sop_class, status)
    return head + us(responding_to) + tail


@functools.lru_cache(maxsize=64)  # bounded: the SOP class is an accepted context's
def _echo_response_around(sop_class: str, status: int) -> tuple[bytes, bytes]:
    """A C-ECHO-RSP command set before and after its Message ID Being Responded To
    (a fixed two bytes: only those differ from one response to the next)."""
    command = command_set(
        [
            (0x0002, uid(sop_class)),
            (0x0100, us(_C_ECHO_RSP)),
            (0x0120, us(0)),
            (0x0800, us(0x0101)),
            (0x0900, us(status)),
        ]
    )
    at = command.index(struct.pack("<HHI", 0x0000, 0x0120, 2)) + 8
    return command[:at], command[at + 2 :]


def send_store_response(
    dimse: DIMSEServiceProvider,
    context_id: int,
    *,
    sop_class: str,
    sop_instance: str,
    responding_to: int,
    status: int,
    comment: str = "",
) -> None:
    """Queue a C-STORE-RSP for the association's DUL thread to send."""
    command = store_response_command(sop_class, sop_instance, responding_to, status, comment)
    _queue(dimse.dul, context_id, command, command=True, max_pdu=int(dimse.maximum_pdu_size or 0))


def _store_response(primitive: DimsePrimitiveType) -> bytes | None:
    """The command set of a C-STORE response, or None when it carries more than the
    required fields (an Error Comment or Offending Element: pynetdicom encodes those)."""
    if (
        type(primitive) is not C_STORE
        or primitive.MessageIDBeingRespondedTo is None
        or primitive.Status is None
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
        or primitive.AffectedSOPClassUID is None
        or primitive.AffectedSOPInstanceUID is None
    ):
        return None
    return store_response_command(
        str(primitive.AffectedSOPClassUID),
        str(primitive.AffectedSOPInstanceUID),
        int(primitive.MessageIDBeingRespondedTo),
        int(primitive.Status),
    )


def pending_retrieve_command(
    field: int, sop_class: str, responding_to: int, counts: list[int]
) -> bytes:
    """A pending C-MOVE-RSP or C-GET-RSP command set with its sub-operation counts and
    no identifier (PS3.7 9.3.3.2 / 9.3.4.2)."""
    return command_set(
        [
            (0x0002, uid(sop_class)),
            (0x0100, us(field)),
            (0x0120, us(responding_to)),
            (0x0800, us(0x0101)),
            (0x0900, us(0xFF00)),
        ]
        + [(tag, us(n)) for (tag, _), n in zip(_SUB_OPERATION_COUNTS, counts, strict=True)]
    )


def _pending_retrieve(primitive: DimsePrimitiveType) -> bytes | None:
    """The command set of a pending C-MOVE / C-GET response, or None when it is not
    one we encode directly (final statuses, identifiers, comments)."""
    if not isinstance(primitive, C_GET | C_MOVE):
        return None
    field = _RETRIEVE_RSP[type(primitive)]
    if (
        primitive.MessageIDBeingRespondedTo is None
        or primitive.Status != 0xFF00
        or primitive.Identifier is not None
        or primitive.ErrorComment is not None
        or primitive.AffectedSOPClassUID is None
    ):
        return None
    counts = [getattr(primitive, name) for _, name in _SUB_OPERATION_COUNTS]
    if any(n is None for n in counts):
        return None
    return pending_retrieve_command(
        field,
        str(primitive.AffectedSOPClassUID),
        int(primitive.MessageIDBeingRespondedTo),
        [int(n) for n in counts],
    )


#: Bytes a PDV item adds to its fragment: item length, context ID, control header.
_PDV_OVERHEAD = 6


def _fragments(data: bytes, max_pdu: int) -> list[bytes]:
    size = max_pdu - 6 if max_pdu > 6 else len(data) or 1
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def _queue(
    dul: DULServiceProvider, context_id: int, data: bytes, *, command: bool, max_pdu: int
) -> None:
    parts = _fragments(data, max_pdu)
    kind = 0x01 if command else 0x00
    for index, part in enumerate(parts):
        pdata = P_DATA()
        last = 0x02 if index == len(parts) - 1 else 0x00
        pdata.presentation_data_value_list.append((context_id, bytes([kind | last]) + part))
        dul.send_pdu(pdata)


def fast_send_msg(
    dimse: DIMSEServiceProvider,
    fallback: SendMsg,
    pending_interval: float = 0.0,
    counters: Counters | None = None,
) -> SendMsg:
    """A ``send_msg`` for an association's DIMSE provider that encodes C-STORE responses,
    C-FIND pending and success responses and pending C-MOVE / C-GET responses directly
    (these at most one per ``pending_interval`` seconds), and hands everything else to
    ``fallback``."""
    last_pending = -math.inf

    def send_msg(primitive: DimsePrimitiveType, context_id: int) -> None:
        nonlocal last_pending
        command = _store_response(primitive)
        if (
            command is None
            and isinstance(primitive, C_GET | C_MOVE)
            and type(primitive) in _RETRIEVE_RSP
            and primitive.Status == 0xFF00
        ):
            now = time.monotonic()
            if pending_interval > 0 and now - last_pending < pending_interval:
                return  # reported with the next one, or with the final response
            command = _pending_retrieve(primitive)
            if command is not None:
                last_pending = now
        if command is not None:
            max_pdu = int(dimse.maximum_pdu_size or 0)
            _queue(dimse.dul, context_id, command, command=True, max_pdu=max_pdu)
            if counters is not None:
                counters.hit("response")
            return
        if (
            not isinstance(primitive, C_FIND)
            or primitive.MessageIDBeingRespondedTo is None
            or primitive.Status not in _DIRECT_STATUSES
            or primitive.ErrorComment is not None
            or primitive.OffendingElement is not None
            or primitive.AffectedSOPClassUID is None
        ):
            fallback(primitive, context_id)
            return
        if counters is not None:
            counters.hit("response")
        identifier = primitive.Identifier
        data = identifier.getvalue() if identifier is not None else b""
        command = find_response_command(
            str(primitive.AffectedSOPClassUID),
            int(primitive.MessageIDBeingRespondedTo),
            int(primitive.Status),
            bool(data),
        )
        max_pdu = int(dimse.maximum_pdu_size or 0)
        if data and (not max_pdu or len(command) + len(data) + 2 * _PDV_OVERHEAD <= max_pdu):
            # Command and identifier as two PDVs of one P-DATA-TF PDU (PS3.8 9.3.5.1):
            # the peer reads and decodes one PDU per match instead of two.
            pdata = P_DATA()
            pdata.presentation_data_value_list.append((context_id, b"\x03" + command))
            pdata.presentation_data_value_list.append((context_id, b"\x02" + data))
            dimse.dul.send_pdu(pdata)
            return
        _queue(dimse.dul, context_id, command, command=True, max_pdu=max_pdu)
        if data:
            _queue(dimse.dul, context_id, data, command=False, max_pdu=max_pdu)

    return send_msg


def attach(assoc: Association, counters: Counters, pending_interval: float = 0.0) -> None:
    """Send this association's C-STORE, C-FIND and pending retrieve responses through
    ``fast_send_msg``."""
    assoc.dimse.send_msg = fast_send_msg(  # type: ignore[method-assign, assignment]
        assoc.dimse, assoc.dimse.send_msg, pending_interval, counters
    )
