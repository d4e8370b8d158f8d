"""Noctis as an SCU: C-ECHO a remote AE (saying why it failed) and send stored
instances to one with C-STORE (PS3.4 Annex B), for the admin API and the job runner.

Instances go out in their stored transfer syntax when the peer accepts it (with the
fast path, sent from the file as stored by ``dimse.fastpath.sender``), else converted
to a native syntax it accepts (``noctis_pacs.core.transcode``, the one converter),
exactly as C-MOVE sub-operations do; the presentation contexts offered are C-MOVE's
(``send_contexts``: each stored syntax alone, then the native ones).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dimse import fastpath
from dimse.fastpath import FastPath
from dimse.retrieve import MAX_CONTEXTS, dataset_to_send
from noctis_pacs.core.remotes import Remote
from noctis_pacs.core.transcode import NATIVE_SYNTAXES
from storage.archive import Archive, InstanceLocation

log = logging.getLogger("noctis.dimse.scu")

#: PS3.7 Annex C: Success and the Warning statuses of C-STORE (B000, B006, B007).
STORE_SUCCESS = 0x0000
STORE_WARNINGS = frozenset({0xB000, 0xB006, 0xB007})


@dataclass(frozen=True)
class Echo:
    ok: bool
    reason: str
    milliseconds: float

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "milliseconds": round(self.milliseconds, 1)}


def _reach(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection to ``host:port`` fails, ``None`` when it opens."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (nothing listens there)"
    except TimeoutError:
        return f"timeout: no answer from {host}:{port} within {timeout:g} s"
    except socket.gaierror:
        return f"host {host!r} not found (name resolution failed)"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _application_entity(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    return ae


def _refusal(assoc: Association, remote: Remote, timeout: float) -> str:
    """Why an association to ``remote`` was not established (PS3.8 9.3.4): a TCP
    connection that could not be opened is probed again to say why (the probe is not
    made before: a single-threaded SCP such as dcmtk's storescp would serve the probe's
    empty connection first)."""
    if assoc.is_rejected:
        primitive = getattr(assoc.acceptor, "primitive", None)
        reason = getattr(primitive, "result_reason", None)
        meaning = {
            1: "no reason given",
            2: "application context name not supported",
            3: "calling AE title not recognized",
            7: "called AE title not recognized",
        }.get(int(reason) if reason is not None else 0, f"reason {reason}")
        return f"association rejected by {remote.ae_title}: {meaning}"
    if assoc.is_aborted and assoc.rejected_contexts and not assoc.accepted_contexts:
        return (
            f"no common presentation context: {remote.ae_title} accepted none of the "
            f"{len(assoc.rejected_contexts)} offered (PS3.8 9.3.3.2)"
        )
    if not assoc.rejected_contexts and not assoc.accepted_contexts:
        unreachable = _reach(remote.host, remote.port, min(timeout, 5.0))
        if unreachable:
            return unreachable
    if assoc.is_aborted:
        return f"association aborted by {remote.ae_title} or no answer within {timeout:g} s"
    return f"no association with {remote.ae_title} (no answer within {timeout:g} s)"


def echo(remote: Remote, *, calling_ae: str, timeout: float) -> Echo:
    """C-ECHO ``remote`` (PS3.7 9.1.5) and say why it failed: refused, timeout, rejected,
    no common presentation context, or the status it answered."""
    started = time.monotonic()

    def done(ok: bool, reason: str) -> Echo:
        return Echo(ok, reason, (time.monotonic() - started) * 1000)

    ae = _application_entity(calling_ae, timeout)
    ae.add_requested_context(Verification)
    assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title)
    if not assoc.is_established:
        return done(False, _refusal(assoc, remote, timeout))
    try:
        if not assoc.accepted_contexts:
            return done(False, "no common presentation context: Verification was not accepted")
        status = assoc.send_c_echo()
        code = getattr(status, "Status", None)
        if code is None:
            return done(False, f"no C-ECHO response within {timeout:g} s")
        if int(code) != STORE_SUCCESS:
            return done(False, f"C-ECHO answered status 0x{int(code):04X}")
        return done(True, "success")
    finally:
        if assoc.is_established:
            assoc.release()


#: (sop_uid, "sent" | "failed", detail) for each instance as it is done.
Outcome = Callable[[str, str, str], None]


def send_contexts(locations: Sequence[InstanceLocation]) -> list[Any]:
    """Presentation contexts for a send: each (SOP class, stored syntax) alone, so the
    peer can take every instance as stored (no conversion), then each SOP class with
    the native fallbacks; at most 128 (PS3.8 9.3.2.2), the rest go in a next
    association."""
    pairs = list(dict.fromkeys((loc.sop_class_uid, loc.transfer_syntax_uid) for loc in locations))
    classes = list(dict.fromkeys(sop for sop, _ in pairs))
    contexts = [build_context(sop, [syntax]) for sop, syntax in pairs]
    contexts += [build_context(sop, list(NATIVE_SYNTAXES)) for sop in classes]
    return contexts[:MAX_CONTEXTS]


def _on_accepted(event: Event, fast: FastPath | None) -> None:
    fastpath.tune_requested_association(event.assoc, fast)


def store(
    archive: Archive,
    remote: Remote,
    locations: Sequence[InstanceLocation],
    *,
    calling_ae: str,
    timeout: float,
    outcome: Outcome,
    cancelled: Callable[[], bool] = lambda: False,
    fast: FastPath | None = None,
) -> str | None:
    """C-STORE ``locations`` to ``remote`` over one association (more when the contexts
    needed exceed one request's 128). Each instance's outcome goes to ``outcome``; the
    return value says why the rest could not be tried (``None``: all were tried).
    ``fast`` is this process's DIMSE fast path (``None``: stock pynetdicom)."""
    remaining = list(locations)
    while remaining:
        if cancelled():
            return "cancelled"
        contexts = send_contexts(remaining)
        ae = _application_entity(calling_ae, timeout)
        ae.requested_contexts = contexts
        assoc = ae.associate(
            remote.host,
            remote.port,
            ae_title=remote.ae_title,
            evt_handlers=[(evt.EVT_ACCEPTED, _on_accepted, [fast])],
        )
        if not assoc.is_established:
            return _refusal(assoc, remote, timeout)
        try:
            remaining = _send_over(archive, assoc, contexts, remaining, outcome, cancelled)
        finally:
            if assoc.is_established:
                assoc.release()
        if remaining and not assoc.is_established and assoc.is_aborted:
            return f"association with {remote.ae_title} aborted"
    return None


def _send_over(
    archive: Archive,
    assoc: Association,
    contexts: list[PresentationContext],
    locations: list[InstanceLocation],
    outcome: Outcome,
    cancelled: Callable[[], bool],
) -> list[InstanceLocation]:
    """Send what this association can carry; the locations left for another one."""
    accepted: dict[str, set[str]] = {}
    for cx in assoc.accepted_contexts:
        accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    offered = {str(cx.abstract_syntax) for cx in contexts}
    left: list[InstanceLocation] = []
    for index, location in enumerate(locations):
        if cancelled() or not assoc.is_established:
            return locations[index:] + left
        if location.sop_class_uid not in offered:
            left.append(location)
            continue
        syntaxes = accepted.get(location.sop_class_uid, set())
        if not syntaxes:
            outcome(location.sop_uid, "failed", "the peer accepted no context for its SOP class")
            continue
        direct = fastpath.sends_from_files(assoc)
        dataset = dataset_to_send(archive, location, syntaxes, direct=direct)
        try:
            status = assoc.send_c_store(dataset)
        except (ValueError, AttributeError, RuntimeError) as exc:
            outcome(location.sop_uid, "failed", f"cannot send: {exc}")
            continue
        code = getattr(status, "Status", None)
        if code is None:
            outcome(location.sop_uid, "failed", "no C-STORE response (association lost)")
        elif int(code) == STORE_SUCCESS:
            outcome(location.sop_uid, "sent", "")
        elif int(code) in STORE_WARNINGS:
            outcome(location.sop_uid, "sent", f"warning 0x{int(code):04X}")
        else:
            comment = str(getattr(status, "ErrorComment", "") or "")
            detail = f"status 0x{int(code):04X}" + (f": {comment}" if comment else "")
            outcome(location.sop_uid, "failed", detail)
    return left
