"""Every pynetdicom internal the fast path touches, and why: the list to walk on upgrade.

pynetdicom's public API (``AE``, ``Association``'s public methods, ``evt`` handlers,
``AE.make_server(server_class=..., request_handler=...)``) is all the DICOM services in
``dimse/`` use. The names below are not public: module globals replaced process-wide,
attributes of one association replaced by ours, and private state read. They are used
only by the modules of ``dimse/fastpath/``, only when the version gate passes (the
installed pynetdicom is ``VALIDATED_VERSION``) and the switch (``dimse.fast_path``) is
on; ``tests/test_dimse_fence.py`` checks that no module outside ``dimse/fastpath/``
imports pynetdicom's internal modules or reads an underscore attribute, and that each
underscore name used in ``dimse/fastpath/`` is listed here.

Kinds:

- ``global``: a module attribute of pynetdicom replaced for the whole process (threads
  without a fast path keep the original behaviour);
- ``swap``: an attribute of one association (or its DUL / DIMSE provider / socket)
  replaced by ours;
- ``read``: private state read (or a private method called).
"""

from __future__ import annotations

from typing import NamedTuple


class Private(NamedTuple):
    """One pynetdicom name the fast path relies on."""

    name: str
    kind: str
    module: str
    why: str


VALIDATED_VERSION = "3.0.4"

PRIVATES: tuple[Private, ...] = (
    # -- process-wide module globals ------------------------------------------------------
    Private(
        "pynetdicom.association.time", "global", "wakeup",
        "the reactor's 1 ms sleep becomes a wait that a queued message ends",
    ),
    Private(
        "pynetdicom.dul.time", "global", "wakeup",
        "the DUL's 1 ms sleep becomes a select() on its socket and a doorbell",
    ),
    Private(
        "pynetdicom.acse.negotiate_as_acceptor", "global", "contexts",
        "each distinct proposed context negotiated once against the shared supported list "
        "(by pynetdicom's own function); other lists and role selection as before",
    ),
    Private(
        "pynetdicom.fsm.ACTIONS['AE-7']", "global", "associate",
        "an accepted association's A-ASSOCIATE-AC written as bytes (other DULs: pynetdicom's)",
    ),
    Private(
        "pynetdicom.dimse_messages.NamedTemporaryFile", "global", "spool",
        "a received data set goes to a memory-then-file spool inside the store",
    ),
    Private(
        "pynetdicom.dimse_messages.create_file_meta", "global", "spool",
        "the spool's File Meta values without building a pydicom Dataset",
    ),
    Private(
        "pynetdicom.dimse_messages.write_file_meta_info", "global", "spool",
        "the spool's File Meta written by storage.part10 instead of pydicom",
    ),
    Private(
        "pynetdicom.pdu_items.set_uid", "global", "uids",
        "negotiation UIDs converted and validated once per value (also in "
        "pdu_primitives and presentation)",
    ),
    Private(
        "pynetdicom.presentation.PresentationContext.add_transfer_syntax", "global", "uids",
        "a context's transfer syntaxes checked once per value (public method, wrapped)",
    ),
    Private(
        "pynetdicom.service_class.encode", "global", "encoded",
        "a C-FIND identifier Noctis encoded itself is sent as its bytes",
    ),
    # -- per-association swaps ---------------------------------------------------------
    Private(
        "Association.run", "swap", "listener",
        "the listener learns when an association it handed out has ended",
    ),
    Private(
        "Association.kill", "swap", "listener",
        "an aborted association counts as ended before pynetdicom's 10 ms teardown sleeps",
    ),
    Private(
        "AssociationSocket.close", "swap", "listener",
        "a connection closed before its A-ASSOCIATE-RQ counts as ended at once",
    ),
    Private(
        "ACSE.send_release", "swap", "listener",
        "a released association counts as ended before its A-RELEASE-RP is sent",
    ),
    Private(
        "Association._reactor_checkpoint", "swap", "wakeup",
        "clearing the pause checkpoint rings the reactor",
    ),
    Private(
        "Association.send_c_store", "swap", "sender",
        "C-MOVE and C-GET sub-operations send a stored file as it lies on disk",
    ),
    Private(
        "AssociationSocket.send", "swap", "sender",
        "on a C-GET association the DUL's writes take the socket lock, so that none falls "
        "inside a C-STORE-RQ the sender is writing",
    ),
    Private(
        "DIMSEServiceProvider.cancel_req", "read", "sender",
        "a C-CANCEL-RQ the C-GET sender reads off the socket is filed where the DIMSE "
        "provider files it (Event.is_cancelled looks there)",
    ),
    Private(
        "DIMSEServiceProvider.msg_queue", "swap", "wakeup, inline",
        "a queued message rings the reactor; a C-STORE is served on the DUL thread",
    ),
    Private(
        "DIMSEServiceProvider.receive_primitive", "swap", "receive",
        "a C-STORE-RQ command set is decoded from its bytes, its data set spooled",
    ),
    Private(
        "DIMSEServiceProvider.send_msg", "swap", "responses",
        "C-STORE, C-FIND and pending C-MOVE/C-GET responses written as bytes",
    ),
    Private(
        "DULServiceProvider.to_provider_queue", "swap", "wakeup",
        "a primitive queued for sending rings the DUL's doorbell",
    ),
    Private(
        "DULServiceProvider.to_user_queue", "swap", "wakeup",
        "a received A-RELEASE / A-ABORT rings an idle acceptor's reactor",
    ),
    Private(
        "DULServiceProvider._is_transport_event", "swap", "wakeup",
        "the DUL leaves the socket alone while the C-MOVE sender reads it",
    ),
    Private(
        "DULServiceProvider._read_pdu_data", "swap", "receive, associate",
        "P-DATA-TF PDUs read into one buffer, PDV items as views of it; the A-ASSOCIATE-RQ "
        "decoded from its bytes",
    ),
    Private(
        "DULServiceProvider._recv_pdu / event_queue 'Evt6'", "read", "associate",
        "the decoded A-ASSOCIATE-RQ queued where pynetdicom's read queues it, for AE-6",
    ),
    Private(
        "DULServiceProvider._send", "read", "associate",
        "an A-ASSOCIATE-AC the direct encoding declines goes out as AE-7 sends it",
    ),
    Private(
        "AssociationSocket.recv", "swap", "listener",
        "a PDU read with recv_into into one buffer instead of 4 KiB recv calls",
    ),
    # -- private state read, private methods called -------------------------------------
    Private(
        "RequestHandler._create_association", "read", "listener",
        "the accepted association, before it starts, to attach the fast path",
    ),
    Private(
        "Association._serve_request", "read", "inline",
        "a C-STORE the direct path declines is served by pynetdicom on the DUL thread",
    ),
    Private(
        "Association._accepted_cx", "read", "inline, receive",
        "the presentation context of a request by its ID (no sorted copy per message)",
    ),
    Private(
        "Association._sent_release", "read", "inline",
        "no inline store once a release is under way",
    ),
    Private(
        "Association._is_paused", "read", "tests only",
        "the reactor has reached its pause point (raw-PDU receive tests)",
    ),
    Private(
        "ServiceUser._common_ext", "read", "inline",
        "SOP Class Common Extended Negotiation: pynetdicom's Storage service class serves it",
    ),
    Private(
        "DIMSEServiceProvider.message", "read", "receive, cleanup",
        "pynetdicom is inside a message of its own; its partial receive file on abort",
    ),
    Private(
        "DIMSEServiceProvider.cancel_req", "read", "inline",
        "reset per request as pynetdicom's _serve_request does",
    ),
    Private(
        "DIMSEMessage._data_set_file / _data_set_path", "read", "cleanup",
        "the receive file of a C-STORE cut short by an abort is removed",
    ),
    Private(
        "C_STORE._dataset_file", "read", "inline, receive, store",
        "the spool the data set was received into (pynetdicom's receive file)",
    ),
    Private(
        "C_STORE._context_id", "read", "receive",
        "set on a request decoded here, as pynetdicom sets it",
    ),
    Private(
        "C_STORE._affected_sop_class_uid / _affected_sop_instance_uid", "read", "receive",
        "a conformant UID set without the setter's validators (~10 us each)",
    ),
    Private(
        "DULServiceProvider.event_queue 'Evt17' / 'Evt19'", "read", "receive",
        "transport closed / invalid PDU: the state machine aborts as pynetdicom's read would",
    ),
    Private(
        "StateMachine.current_state 'Sta6'", "read", "receive",
        "P-DATA-TF PDUs are read here only in the established state (PS3.8 9.2)",
    ),
    Private(
        "DULServiceProvider._idle_timer", "read", "sender",
        "restarted for each response the C-MOVE sender reads itself, as the DUL does",
    ),
    Private(
        "PresentationContext._transfer_syntax", "swap", "contexts, associate",
        "the supported contexts all associations share hold tuples: no copy per association; "
        "a requested context is a copy of one decoded before",
    ),
    Private(
        "pynetdicom._config.STORE_RECV_CHUNKED_DATASET / LOG_*", "read", "configure",
        "documented options of a private module, set in one function (both modes)",
    ),
)  # fmt: skip


def names() -> frozenset[str]:
    """Every underscore name listed above (``_serve_request``, ``_config``, ...)."""
    found: set[str] = set()
    for private in PRIVATES:
        for word in private.name.replace("/", " ").replace(".", " ").split():
            if word.startswith("_") and not word.startswith("__"):
                found.add(word)
    return frozenset(found)
