"""C-STORE requests decoded without pydicom, on the association's DUL thread.

pynetdicom turns each received message into a primitive in two steps: it decodes the
command set into a pydicom ``Dataset`` (PS3.7 E.1) and copies every element of it, by
keyword and through pydicom's value conversion and validation, onto the primitive.
For a small C-STORE that is a visible share of the CPU the server spends per
instance (docs/performance.md).

This receiver stands in for ``DIMSEServiceProvider.receive_primitive`` on the
associations Noctis accepts. A message whose command set is a C-STORE-RQ with a
data set, on an accepted presentation context, is decoded here: the command's few
elements are read straight from their bytes (``dimse.fastpath.command.parse_command``), the
primitive's fields are set through pynetdicom's own setters (so they are validated
as before), and the data set fragments go into the association's spool
(``spool``: a blob writer of the store, behind the store's Part 10 header). The
finished primitive is queued exactly where pynetdicom queues it.

A C-ECHO-RQ (PS3.7 9.3.5, no data set) is decoded the same way into its primitive
(Message ID and Affected SOP Class UID) and queued; pynetdicom's decode of its command
set through pydicom was a quarter of a C-ECHO round trip (docs/performance.md, issue
15).

Every other message, and a C-STORE whose command set does not decode, is handed to
pynetdicom's own ``receive_primitive`` unchanged: the P-DATA primitives held while
the command set was incomplete are passed on in order, so pynetdicom sees the
message whole and answers it (or aborts on it) as it always did.

The P-DATA-TF PDUs themselves (PS3.8 9.3.5) are read here too, while the association
is established (state Sta6): the DUL thread's ``_read_pdu_data`` reads the PDU header
and body, splits the body into its PDV items as views of the one buffer it was read
into, and passes them on as a P-DATA primitive. pynetdicom copied each PDU twice,
built an object per PDV item and ran its state machine once per PDU (event DT-2,
which leaves the state as it is), for every PDU of a data set.
Any other PDU, any other state, and any association whose received data or PDUs
someone watches (``EVT_DATA_RECV``, ``EVT_PDU_RECV``) keep pynetdicom's reading.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import config
from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu_primitives import P_DATA

from dimse.fastpath.command import (
    C_ECHO_RQ,
    C_STORE_RQ,
    NO_DATA_SET,
    parse_command,
    read_text,
    read_us,
)
from dimse.fastpath.pdu import P_DATA_TF, PDU_HEADER, PduReader, pdv_items
from dimse.fastpath.spool import FileMeta, ReceiveSpool, open_spool
from dimse.fastpath.uids import conformant

if TYPE_CHECKING:
    from dimse.fastpath import Counters

log = logging.getLogger("noctis.dimse.fastpath.receive")

#: PS3.8 E.2: Message Control Header bits.
_COMMAND = 0x01
_LAST = 0x02


class StoreReceiver:
    """Receives the P-DATA primitives of one association (on its DUL thread)."""

    def __init__(
        self,
        assoc: Association,
        pynetdicom_receive: Callable[[P_DATA], None],
        counters: Counters,
    ) -> None:
        self.assoc = assoc
        self.pynetdicom_receive = pynetdicom_receive
        self.counters = counters
        self.held: list[P_DATA] = []  # P-DATA primitives of a command set not yet complete
        self.command = bytearray()
        self.request: C_STORE | None = None  # the C-STORE whose data set is arriving
        self.context_id = 0
        self.spool: ReceiveSpool | None = None

    def __call__(self, primitive: P_DATA) -> None:
        if self.spool is not None:
            self._data(primitive.presentation_data_value_list)
        elif self.held or self.assoc.dimse.message is None:
            self._command(primitive)
        else:
            self.pynetdicom_receive(primitive)  # pynetdicom is inside a message of its own

    def _command(self, primitive: P_DATA) -> None:
        self.held.append(primitive)
        values = primitive.presentation_data_value_list
        for index, (context_id, data) in enumerate(values):
            control = data[0]
            if not control & _COMMAND:
                self._to_pynetdicom()  # a data set before its command: pynetdicom's to judge
                return
            self.command += data[1:]
            if control & _LAST:
                if not self._begin(context_id):
                    self._to_pynetdicom()
                    return
                self.held.clear()
                self.command.clear()
                rest = values[index + 1 :]
                if self.spool is not None:
                    self._data(rest)
                elif rest:  # a C-ECHO, answered; the next message began in the same PDU
                    following = P_DATA()
                    following.presentation_data_value_list.extend(rest)
                    self(following)
                return

    def _to_pynetdicom(self) -> None:
        held, self.held = self.held, []
        self.command.clear()
        for primitive in held:
            self.pynetdicom_receive(primitive)

    def _begin(self, context_id: int) -> bool:
        """Start receiving the data set of a C-STORE-RQ, or queue a C-ECHO-RQ; False for
        anything else (a C-STORE-RQ with a data set left to pynetdicom counts as a
        fallback)."""
        try:
            elements = parse_command(bytes(self.command))
            field = read_us(elements, 0x0100)
            if field == C_ECHO_RQ:
                return self._echo(elements, context_id)
            if field != C_STORE_RQ:
                return False
            if read_us(elements, 0x0800) == NO_DATA_SET:
                return False
        except (KeyError, ValueError):
            return False  # pynetdicom decodes it and says what is wrong
        request = self._request(elements, context_id)
        if isinstance(request, str):
            self.counters.fallback("receive", request)
            return False
        self.counters.hit("receive")
        return True

    def _not_here(self, context_id: int) -> str | None:
        """Why a request on ``context_id`` is pynetdicom's to decode, if it is."""
        if self.assoc.get_handlers(evt.EVT_DIMSE_RECV):
            return "EVT_DIMSE_RECV is bound"  # someone watches decoded messages
        if context_id not in self.assoc._accepted_cx:
            return "no accepted presentation context"
        return None

    def _echo(self, elements: dict[int, bytes], context_id: int) -> bool:
        """Queue a C-ECHO request decoded here; False where pynetdicom decodes it."""
        if self._not_here(context_id) is not None:
            return False
        try:
            if read_us(elements, 0x0800) != NO_DATA_SET:
                return False
            request = C_ECHO()
            request.MessageID = read_us(elements, 0x0110)
            _set_uid(request, "AffectedSOPClassUID", read_text(elements, 0x0002))
        except (KeyError, ValueError, TypeError):
            return False  # pynetdicom decodes it and says what is wrong
        if not request.AffectedSOPClassUID:
            return False
        self.assoc.dimse.msg_queue.put((context_id, request))
        return True

    def _request(self, elements: dict[int, bytes], context_id: int) -> C_STORE | str:
        """The C-STORE request, its spool open; or why pynetdicom receives it instead."""
        reason = self._not_here(context_id)
        if reason is not None:
            return reason
        context = self.assoc._accepted_cx[context_id]
        try:
            request = C_STORE()
            request.MessageID = read_us(elements, 0x0110)
            _set_uid(request, "AffectedSOPClassUID", read_text(elements, 0x0002))
            _set_uid(request, "AffectedSOPInstanceUID", read_text(elements, 0x1000))
            request.Priority = read_us(elements, 0x0700)
            if 0x1030 in elements:
                request.MoveOriginatorApplicationEntityTitle = read_text(elements, 0x1030)
            if 0x1031 in elements:
                request.MoveOriginatorMessageID = read_us(elements, 0x1031)
        except (KeyError, ValueError, TypeError):
            return "a command element pynetdicom's setters refuse"
        if not (request.AffectedSOPClassUID and request.AffectedSOPInstanceUID):
            return "no affected SOP class or instance"
        meta = FileMeta(
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
            str(context.transfer_syntax[0]),
        )
        spool = open_spool(self.assoc.dul, meta)
        if spool is None:
            return "the association has no spool"
        request.DataSet = BytesIO()
        request._context_id = context_id
        # No ``_dataset_path``: the Noctis handler reads the spool itself (``dimse.store``),
        # and naming a file for a data set that stays in memory costs a UUID and path work.
        request._dataset_file = spool  # type: ignore[assignment]
        self.request, self.context_id, self.spool = request, context_id, spool
        return request

    def _data(self, values: list[tuple[int, bytes]]) -> None:
        spool = self.spool
        assert spool is not None
        for index, (_context_id, data) in enumerate(values):
            control = data[0]
            if control & _COMMAND:
                # A new command before the data set ended (PS3.8 E.2 forbids it).
                self.discard()
                self.assoc.dul.event_queue.put("Evt19")
                return
            spool.write(data[1:])
            if control & _LAST:
                request, context_id = self.request, self.context_id
                assert request is not None
                self.request, self.spool = None, None
                self.assoc.dimse.msg_queue.put((context_id, request))
                rest = values[index + 1 :]
                if rest:  # the next message began in the same PDU
                    following = P_DATA()
                    following.presentation_data_value_list.extend(rest)
                    self(following)
                return

    def discard(self) -> None:
        """Drop a data set still arriving (the association ended under it)."""
        spool, self.spool, self.request = self.spool, None, None
        if spool is not None:
            spool.discard()


#: pynetdicom's attribute behind each UID field of a C-STORE primitive.
_UID_FIELDS = {
    "AffectedSOPClassUID": "_affected_sop_class_uid",
    "AffectedSOPInstanceUID": "_affected_sop_instance_uid",
}


def _set_uid(request: C_STORE | C_ECHO, field: str, value: str) -> None:
    """Set a UID field of the request: a conformant UID directly (it passes every check
    pynetdicom's setter makes, which are costly), anything else through the setter
    (which warns, or raises ``ValueError`` for an invalid one)."""
    checked = _class_uid(value) if field == "AffectedSOPClassUID" else _conformant(value)
    if checked is not None:
        setattr(request, _UID_FIELDS[field], checked)
    else:
        setattr(request, field, value)


def _conformant(value: str) -> UID | None:
    if conformant(value):
        # Checked just above: pydicom's own check (a second regular expression) skipped.
        return UID(value, validation_mode=config.IGNORE)
    return None


#: SOP Class UIDs recur on every request of an association (bounded: the peer sends them).
_class_uid = functools.lru_cache(maxsize=256)(_conformant)


def attach(assoc: Association, counters: Counters) -> None:
    """Read this accepted association's P-DATA-TF PDUs and decode its C-STORE requests
    here (see the module text)."""
    receiver = StoreReceiver(assoc, assoc.dimse.receive_primitive, counters)
    assoc.dimse.receive_primitive = receiver  # type: ignore[method-assign]
    read_data_pdus(assoc)


def receiving(assoc: Association) -> StoreReceiver | None:
    """The association's receiver, if it has one."""
    receiver = getattr(assoc.dimse, "receive_primitive", None)
    return receiver if isinstance(receiver, StoreReceiver) else None


#: The association state that receives P-DATA-TF PDUs (PS3.8 9.2: DT-2).
_ESTABLISHED = "Sta6"


def read_data_pdus(assoc: Association) -> None:
    """Read this association's P-DATA-TF PDUs here (see the module text)."""
    dul = assoc.dul
    reader = dul.socket.recv if dul.socket is not None else None
    pynetdicom_read = dul._read_pdu_data
    if not isinstance(reader, PduReader):
        return  # not read through PduReader (``pdu.attach_reader``)

    def read_pdu_data() -> None:
        if (
            dul.state_machine.current_state != _ESTABLISHED
            or assoc.get_handlers(evt.EVT_DATA_RECV)
            or assoc.get_handlers(evt.EVT_PDU_RECV)
        ):
            pynetdicom_read()
            return
        try:
            header = reader(6)
        except (OSError, TimeoutError):
            log.error("connection closed before the entire PDU was received")
            dul.event_queue.put("Evt17")
            return
        if len(header) < 6 or header[0] != P_DATA_TF:
            reader.unread(header)
            pynetdicom_read()
            return
        _, _, length = PDU_HEADER.unpack(header)
        try:
            body = reader(length)
        except (OSError, TimeoutError):
            body = bytearray()
        if len(body) != length:
            log.error("connection closed before the entire PDU was received")
            dul.event_queue.put("Evt17")
            return
        items = pdv_items(body)
        if items is None:
            log.error("malformed P-DATA-TF PDU: its PDV items do not fit its length")
            dul.event_queue.put("Evt19")  # invalid PDU: the state machine aborts (AA-8)
            return
        primitive = P_DATA()
        primitive.presentation_data_value_list.extend(items)  # type: ignore[arg-type]
        assoc.dimse.receive_primitive(primitive)

    dul._read_pdu_data = read_pdu_data  # type: ignore[method-assign]


def discard_partial_receive(assoc: Association) -> None:
    """Remove what an unfinished C-STORE left (the association ended mid-transfer):
    the data set this receiver was spooling, or pynetdicom's receive file, which it
    creates on the first data fragment and deletes only after the handler ran. Runs in
    both modes (a stock association has no receiver; ``getattr`` keeps a renamed
    pynetdicom attribute from failing, at worst leaving a temporary file)."""
    receiver = receiving(assoc)
    if receiver is not None:
        receiver.discard()
    message = getattr(assoc.dimse, "message", None)
    handle = getattr(message, "_data_set_file", None)
    path = getattr(message, "_data_set_path", None)
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    if isinstance(path, str | Path):
        Path(path).unlink(missing_ok=True)
