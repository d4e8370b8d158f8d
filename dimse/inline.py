"""C-STORE requests served on the association's network thread (the DUL thread).

pynetdicom decodes every DIMSE message on the association's DUL thread, queues it for
the association's reactor thread, which runs the service class and our handler and
queues the response back to the DUL thread to be sent. For a C-STORE that is two
thread hand-offs per instance, each a wake-up of another thread that must then win
the GIL, while the peer waits for the response and sends nothing else: on two cores
shared with the sending modality, the hand-offs and context switches were about a
tenth of the server's CPU per CT slice.

Here a C-STORE request is served where it was decoded: the DIMSE message queue's
``put`` (``dimse.wakeup``) calls the association's own ``_serve_request``, which runs
pynetdicom's Storage service class, our handler, and queues the response, which the
same thread sends on its next turn. Every other message still goes to the reactor, and
so does a C-STORE that arrives before the reactor has finished accepting the
association (pynetdicom's Storage service class sends no response on an association
not yet marked established).
The peer does not send another request before the response (PS3.7 D.3.3.3: no
asynchronous operations are negotiated), so nothing queues up behind the store; an
A-ABORT that arrives meanwhile is read when it is done.
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom.dimse_primitives import C_STORE


def serve_stores_inline(assoc: Any) -> None:
    """Serve this accepted association's C-STORE requests on its DUL thread."""

    def serve(item: Any) -> bool:
        context_id, message = item
        if (
            type(message) is not C_STORE
            or not message.is_valid_request
            or threading.current_thread() is not assoc.dul
            or not assoc.is_established
            or assoc._sent_release
        ):
            # Before the reactor has finished accepting the association (it sets
            # is_established after sending the A-ASSOCIATE-AC, which a fast peer answers
            # at once), the request waits for the reactor as pynetdicom intends.
            return False
        assoc._serve_request(message, context_id)
        return True

    assoc.dimse.msg_queue.serve_inline = serve
