"""C-STORE and C-ECHO requests served on the association's network thread (the DUL thread).

pynetdicom decodes every DIMSE message on the association's DUL thread, queues it for
the association's reactor thread, which runs the service class and our handler and
queues the response back to the DUL thread to be sent. For a C-STORE that is two
thread hand-offs per instance, each a wake-up of another thread that must then win
the GIL, while the peer waits for the response and sends nothing else; on a machine
whose cores the sending modality shares, those hand-offs and context switches are a
visible share of the server's CPU per instance (docs/performance.md).

Here a C-STORE request is served where it was decoded: the DIMSE message queue's
``put`` (``wakeup``) calls the association's own ``_serve_request``, which runs
pynetdicom's Storage service class, our handler, and queues the response, which the
same thread sends on its next turn. Every other message still goes to the reactor, and
so does a C-STORE that arrives before the reactor has finished accepting the
association (pynetdicom's Storage service class sends no response on an association
not yet marked established).
The peer does not send another request before the response (PS3.7 D.3.3.3: no
asynchronous operations are negotiated), so nothing queues up behind the store; an
A-ABORT that arrives meanwhile is read when it is done.

A C-STORE for a storage SOP class is served without pynetdicom's Storage service class
(:func:`store_directly`): the bound EVT_C_STORE handler runs as pynetdicom runs it
(``evt.trigger``, C211H on an exception, the received file closed and removed after),
and a plain response (a status, at most an Error Comment) is written as its command
set (``responses``) instead of being built as a validated response primitive and
encoded again. Anything else (an
unusual status data set, a SOP class pynetdicom maps to another service) keeps
pynetdicom's path.

A C-ECHO (PS3.4 Annex A) is served the same way (:func:`echo_directly`): the bound
EVT_C_ECHO handler runs on the network thread and a Success, or any plain status it
returns, is written as the C-ECHO-RSP command set; the round trip then costs no
thread hand-off at all (docs/performance.md, issue 15).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_STORE, DIMSEPrimitive
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import uid_to_service_class

from dimse.fastpath import responses
from dimse.fastpath.spool import ReceiveSpool
from dimse.fastpath.wakeup import RingingQueue
from dimse.status import STORE_HANDLER_FAILED

if TYPE_CHECKING:
    from dimse.fastpath import Counters

log = logging.getLogger("noctis.dimse.fastpath.inline")


def serve_stores_inline(assoc: Association, counters: Counters) -> None:
    """Serve this accepted association's C-STORE requests on its DUL thread."""

    def serve(item: tuple[int, DIMSEPrimitive]) -> bool:
        context_id, message = item
        if (
            type(message) not in (C_STORE, C_ECHO)
            or not message.is_valid_request
            or threading.current_thread() is not assoc.dul
            or not assoc.is_established
            or assoc._sent_release
        ):
            # Before the reactor has finished accepting the association (it sets
            # is_established after sending the A-ASSOCIATE-AC, which a fast peer answers
            # at once), the request waits for the reactor as pynetdicom intends.
            return False
        if type(message) is C_ECHO:
            assert isinstance(message, C_ECHO)
            if echo_directly(assoc, message, context_id):
                counters.hit("echo")
            else:
                counters.fallback("echo", "served by pynetdicom's Verification service class")
                assoc._serve_request(message, context_id)
            return True
        assert isinstance(message, C_STORE)
        if store_directly(assoc, message, context_id):
            counters.hit("store")
        else:
            counters.fallback("store", "served by pynetdicom's Storage service class")
            assoc._serve_request(message, context_id)
        return True

    queue = assoc.dimse.msg_queue
    assert isinstance(queue, RingingQueue), "wakeup.attach first"
    queue.serve_inline = serve


@functools.lru_cache(maxsize=256)  # bounded: the SOP class comes from the sender
def storage_class(sop_class: str) -> bool:
    """Whether pynetdicom serves ``sop_class`` with its Storage service class."""
    return uid_to_service_class(sop_class) is StorageServiceClass


def store_directly(assoc: Association, request: C_STORE, context_id: int) -> bool:
    """Serve one C-STORE request as pynetdicom's Storage service class would, with the
    response written directly; False (nothing done) where pynetdicom must serve it."""
    sop_class = str(request.AffectedSOPClassUID)
    context = assoc._accepted_cx.get(context_id)
    if (
        context is None
        or not storage_class(sop_class)
        or assoc.acceptor._common_ext  # SOP Class Common Extended Negotiation: pynetdicom's
        or not assoc.get_handlers(evt.EVT_C_STORE)
    ):
        return False
    assoc.dimse.cancel_req = {}
    try:
        status: Any = evt.trigger(
            assoc, evt.EVT_C_STORE, {"request": request, "context": context.as_tuple}
        )
    except Exception:
        log.exception("exception in the EVT_C_STORE handler; answering C211H")
        status = STORE_HANDLER_FAILED
    finally:
        received = request._dataset_file
        if isinstance(received, ReceiveSpool):
            received.discard()  # memory, or a file the store did not adopt
        elif received:
            received.close()
            with contextlib.suppress(OSError):
                os.unlink(received.name)
    if not assoc.is_established:
        return True
    code, comment = _plain_status(status)
    if code is None:  # an unusual status: pynetdicom validates and encodes it
        response = C_STORE()
        response.MessageIDBeingRespondedTo = request.MessageID
        response.AffectedSOPClassUID = request.AffectedSOPClassUID
        response.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
        assoc.dimse.send_msg(
            StorageServiceClass(assoc).validate_status(status, response), context_id
        )
        return True
    responses.send_store_response(
        assoc.dimse,
        context_id,
        sop_class=sop_class,
        sop_instance=str(request.AffectedSOPInstanceUID),
        responding_to=int(request.MessageID or 0),
        status=code,
        comment=comment,
    )
    return True


def echo_directly(assoc: Association, request: C_ECHO, context_id: int) -> bool:
    """Serve one C-ECHO request as pynetdicom's Verification service class would (an
    exception in the handler answers Success, as there), the response written
    directly; False (nothing done) where pynetdicom must serve it."""
    if assoc._accepted_cx.get(context_id) is None or not assoc.get_handlers(evt.EVT_C_ECHO):
        return False
    context = assoc._accepted_cx[context_id]
    try:
        status: Any = evt.trigger(
            assoc, evt.EVT_C_ECHO, {"request": request, "context": context.as_tuple}
        )
    except Exception:
        log.exception("exception in the EVT_C_ECHO handler; answering Success")
        status = 0x0000
    code, comment = _plain_status(status)
    if code is None or comment:  # more than a status: a primitive pynetdicom encodes
        response = C_ECHO()
        response.MessageIDBeingRespondedTo = request.MessageID
        response.AffectedSOPClassUID = request.AffectedSOPClassUID
        response.Status = code if code is not None else int(getattr(status, "Status", 0))
        assoc.dimse.send_msg(response, context_id)
        return True
    responses.send_echo_response(
        assoc.dimse,
        context_id,
        sop_class=str(request.AffectedSOPClassUID),
        responding_to=int(request.MessageID or 0),
        status=code,
    )
    return True


_PLAIN_KEYWORDS = frozenset({"Status", "ErrorComment"})


def _plain_status(status: Any) -> tuple[int | None, str]:
    """(status, error comment) of a handler's answer that needs nothing more."""
    if isinstance(status, int):
        return status, ""
    if not isinstance(status, Dataset) or "Status" not in status:
        return None, ""
    if any(element.keyword not in _PLAIN_KEYWORDS for element in status):
        return None, ""
    return int(status.Status), str(status.get("ErrorComment", "") or "")
