"""Transport tuning of pynetdicom: everything in ``dimse/`` that reaches past its public API.

The DICOM services (``dimse/store.py``, ``find.py``, ``retrieve.py``, ``worklist.py``,
``mpps_scp.py``, ``access.py``) are plain pynetdicom handlers. This package makes the
same handlers cheaper to run by replacing parts of pynetdicom's machinery; each module
holds one of those changes and ``privates.py`` lists every private name they touch:

- ``listener``: the association server (TCP_NODELAY, the hand-off to DIMSE worker
  processes, the TLS handshake off the accept loop) and the request handler that gives
  each accepted association the fast paths below; PDUs read with ``recv_into``;
- ``wakeup``: pynetdicom's two 1 ms polling loops wake on work instead;
- ``receive`` and ``spool``: a C-STORE-RQ decoded from its bytes on the network thread,
  its data set written into a blob writer of the store as it arrives (the store writes
  the Part 10 header and checks the SOP identity);
- ``inline``: that C-STORE served on the network thread, its response written as bytes;
- ``responses``: C-STORE, C-FIND and pending C-MOVE/C-GET responses written as bytes;
- ``sender``: C-MOVE sub-operations send a stored file as it lies on disk;
- ``encoded``: C-FIND identifiers Noctis encoded itself are sent as they are;
- ``contexts``: a cheap per-association copy of the supported presentation contexts;
- ``uids``: the UIDs of association negotiation converted and validated once per value;
- ``direct``: a Verification or storage association (only those SOP classes, plain
  user information) served without pynetdicom's association layer, on one thread of
  its own.

All of it is behind a gate and a switch (:func:`enable`): the installed pynetdicom must
be the version validated here (``privates.VALIDATED_VERSION``; any other logs one
warning and the server runs on stock pynetdicom) and ``dimse.fast_path`` must be on
(``NOCTIS_DIMSE_FAST_PATH=0`` turns every patch off). Each fast path counts the cases
it served and those it handed back to pynetdicom (``noctis_dimse_fast_path_total``), so
a fast path that silently stopped serving shows in the tests and in ``/metrics``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass

import pynetdicom
from prometheus_client import Counter
from pynetdicom.association import Association

from dimse.fastpath.privates import VALIDATED_VERSION
from noctis_pacs.core.metrics import Metrics

log = logging.getLogger("noctis.dimse.fastpath")

#: The fast paths that count what they serve (label ``path``).
PATHS = (
    "receive",
    "store",
    "response",
    "move",
    "get",
    "echo",
    "associate",
    "verification",
    "storage",
)

#: The attribute on an accepted association that holds its fast path.
_ATTRIBUTE = "noctis_fast_path"


class Counters:
    """Hits (served by the fast path) and fallbacks (a case the fast path is meant to
    serve, handed to pynetdicom) per path; cases it never serves are not counted."""

    def __init__(self, counter: Counter) -> None:
        self._hits = {path: counter.labels(path=path, outcome="hit") for path in PATHS}
        self._fallbacks = {path: counter.labels(path=path, outcome="fallback") for path in PATHS}

    def hit(self, path: str) -> None:
        self._hits[path].inc()

    def fallback(self, path: str, reason: str) -> None:
        self._fallbacks[path].inc()
        log.debug("fast path %s fell back: %s", path, reason)


@dataclass(frozen=True)
class FastPath:
    """The fast path of this process: on once the gate passed and the patches are in."""

    counters: Counters
    #: Seconds between pending C-MOVE / C-GET responses (``dimse.pending_interval``).
    pending_interval: float = 0.0


def configure_pynetdicom() -> None:
    """pynetdicom's library globals, set in this one place (STYLE.md rule 4), in both
    modes (they are documented options, in a module named private):

    - C-STORE data sets are written to a file as they arrive (with the fast path: into
      a blob of the store), never held whole in memory and never decoded;
    - request and response identifiers hold patient attributes: pynetdicom must not
      log them (STYLE.md rule 7).
    """
    from pynetdicom import _config

    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.LOG_HANDLER_LEVEL = "none"


def gate(*, enabled: bool, version: str) -> str | None:
    """Why the fast path stays off (``None``: it may run)."""
    if not enabled:
        return "dimse.fast_path is off"
    if version != VALIDATED_VERSION:
        return (
            f"pynetdicom {version} is not the validated {VALIDATED_VERSION}: "
            "DIMSE fast paths off, running on stock pynetdicom"
        )
    return None


def enable(*, enabled: bool, metrics: Metrics, pending_interval: float = 0.0) -> FastPath | None:
    """Install the process-wide patches and return the fast path, or ``None`` (with one
    log line: a warning for a pynetdicom version not validated here)."""
    reason = gate(enabled=enabled, version=pynetdicom.__version__)
    if reason is not None:
        if enabled:
            log.warning(reason)
        else:
            log.info("DIMSE fast paths off (dimse.fast_path = false): stock pynetdicom")
        return None
    from dimse.fastpath import contexts, encoded, spool, uids, wakeup

    contexts.install()
    wakeup.install()
    spool.install()
    encoded.install()
    uids.install()
    return FastPath(Counters(metrics.dimse_fast_path), pending_interval=pending_interval)


def of(assoc: Association | None) -> FastPath | None:
    """The fast path an accepted association was given, if any."""
    found = getattr(assoc, _ATTRIBUTE, None)
    return found if isinstance(found, FastPath) else None


def mark(assoc: Association, fast: FastPath) -> None:
    """Record that ``assoc`` runs with ``fast`` (see :func:`of`)."""
    setattr(assoc, _ATTRIBUTE, fast)


def set_nodelay(assoc: Association) -> None:
    """Turn off Nagle's algorithm on an association's socket (public attributes only:
    both modes). A PDU written in two parts otherwise waits for the peer's delayed ACK."""
    transport = assoc.dul.socket
    sock = transport.socket if transport is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tune_sub_association(sub: Association, parent: Association | None) -> None:
    """A C-MOVE sub-association the destination accepted (its ``EVT_ACCEPTED``): no
    Nagle delay; with the fast path of the C-MOVE's association, wake-ups and instances
    sent from their files (``sender``)."""
    tune_requested_association(sub, of(parent))


def tune_requested_association(assoc: Association, fast: FastPath | None) -> None:
    """An association Noctis requested to store to a peer (a C-MOVE sub-association, a
    send job, a routing delivery; its ``EVT_ACCEPTED``): no Nagle delay; with ``fast``
    (this process's fast path), wake-ups and instances sent from their files
    (``sender``, counted under the ``move`` path)."""
    set_nodelay(assoc)
    if fast is None:
        return
    from dimse.fastpath import sender, wakeup

    wakeup.attach(assoc)
    sender.attach(assoc, fast.counters)
    mark(assoc, fast)


def tune_get_association(assoc: Association) -> bool:
    """An accepted association about to serve a C-GET: with this process's fast path, its
    sub-operations send stored instances from their files (``sender.attach_get``).
    Whether they will."""
    fast = of(assoc)
    if fast is None:
        return False
    from dimse.fastpath import sender

    return sender.attach_get(assoc, fast.counters)


def sends_from_files(assoc: Association | None) -> bool:
    """Whether ``assoc`` sends a ``sender.StoredInstance`` from its file."""
    from dimse.fastpath import sender

    return assoc is not None and sender.attached(assoc)
