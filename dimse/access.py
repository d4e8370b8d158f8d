"""Who may associate and which services each calling AE may use.

``open`` (the default, for a single-machine start) admits every calling AE
with every permission.  ``allow_list`` admits only the AE titles of
``[dimse.remotes.*]`` and of the remotes kept in the index (``noctis-pacs remote
add``, ``POST /api/remotes``: looked up per association, so one added at run
time is admitted at once, in every process sharing the index); an unknown caller
gets A-ASSOCIATE-RJ with result
"rejected-permanent", source "DICOM UL service-user" and reason "calling-AE-title
not recognized" (PS3.8 9.3.4, Table 9-21).  A remote with ``check_host`` must
also come from its configured host.  Permissions (store, query, retrieve) are
checked per request; a refused request gets 0124H "Refused: Not Authorized"
(PS3.7 Annex C).  Permissions are ``noctis_pacs.core.auth.Permission`` values.

``[dimse] allow`` / ``deny`` (CIDR) are checked first, whatever ``access_control``
says: a peer outside them gets A-ASSOCIATE-RJ, rejected-permanent, service-user,
reason 1 "no-reason-given" (PS3.8 Table 9-21), and a security event.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pynetdicom.association import Association
from pynetdicom.events import Event

from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from noctis_pacs.core.auth import Permission, Principal
from noctis_pacs.core.netfilter import AddressFilter
from noctis_pacs.core.remotes import DIMSE, Remote
from noctis_pacs.core.settings import DimseSettings
from storage.archive import Archive

log = logging.getLogger("noctis.dimse.access")

STORE, QUERY, RETRIEVE = Permission.STORE, Permission.QUERY, Permission.RETRIEVE
#: What a DIMSE caller can be granted (``[dimse.remotes.NAME] permissions``).
ALL_PERMISSIONS: frozenset[Permission] = frozenset({STORE, QUERY, RETRIEVE})

#: PS3.8 Table 9-21: A-ASSOCIATE-RJ result / source / reason.
RJ_PERMANENT = 0x01
RJ_SOURCE_SERVICE_USER = 0x01
RJ_CALLING_AE_NOT_RECOGNIZED = 0x03
RJ_NO_REASON = 0x01


@dataclass(frozen=True)
class Caller:
    permissions: frozenset[Permission]
    host: str
    check_host: bool
    facilities: frozenset[str] = frozenset()


#: DIMSE permission names as the core permissions a principal holds.
_CORE_PERMISSIONS = {
    STORE: Permission.STORE,
    QUERY: Permission.QUERY,
    RETRIEVE: Permission.RETRIEVE,
}


@dataclass(frozen=True)
class AccessPolicy:
    """Built once from the settings; pure look-ups afterwards."""

    allow_list: bool
    callers: Mapping[str, Caller]
    addresses: AddressFilter = field(default_factory=AddressFilter)
    #: Remotes kept in the index, by AE title (``RemoteDirectory.by_ae_title``).
    lookup: Callable[[str], Remote | None] | None = None

    @classmethod
    def from_settings(
        cls, dimse: DimseSettings, lookup: Callable[[str], Remote | None] | None = None
    ) -> AccessPolicy:
        callers = {
            remote.ae_title.strip(): Caller(
                permissions=frozenset(Permission(p) for p in remote.permissions),
                host=remote.host,
                check_host=remote.check_host,
                facilities=frozenset(remote.facilities),
            )
            for remote in dimse.remotes.values()
        }
        return cls(
            allow_list=dimse.access_control == "allow_list",
            callers=callers,
            addresses=AddressFilter.from_lists(dimse.allow, dimse.deny),
            lookup=lookup,
        )

    def caller(self, calling_ae: str) -> Caller | None:
        """The configured caller, else the one kept in the index."""
        title = calling_ae.strip()
        caller = self.callers.get(title)
        if caller is not None or self.lookup is None:
            return caller
        remote = self.lookup(title)
        if remote is None or remote.kind != DIMSE:
            return None
        return Caller(
            frozenset(Permission(p) for p in remote.permissions), remote.host, remote.check_host
        )

    def admits(self, calling_ae: str, address: str) -> bool:
        """May ``calling_ae`` connecting from ``address`` associate at all?"""
        if not self.allow_list:
            return True
        caller = self.caller(calling_ae)
        if caller is None:
            return False
        return not caller.check_host or _same_host(caller.host, address)

    def admits_by_settings(self, calling_ae: str, address: str) -> bool:
        """Whether the settings alone admit ``calling_ae`` connecting from ``address``
        (``[dimse] allow`` / ``deny`` and ``[dimse.remotes.*]``; no look-up in the index, no
        name resolution). False means: ask the full check (``EVT_REQUESTED``)."""
        if not self.addresses.admits(address):
            return False
        if not self.allow_list:
            return True
        caller = self.callers.get(calling_ae.strip())
        return caller is not None and (not caller.check_host or caller.host == address)

    def stores_by_settings(self, calling_ae: str, address: str) -> bool:
        """Whether the settings alone admit ``calling_ae`` from ``address`` and let it use
        every storage context (``open``, or a ``[dimse.remotes.*]`` caller with ``store``):
        its association then needs no narrowing of the supported contexts."""
        if not self.admits_by_settings(calling_ae, address):
            return False
        if not self.allow_list:
            return True
        return STORE in self.callers[calling_ae.strip()].permissions

    def allows(self, calling_ae: str, permission: Permission) -> bool:
        """May ``calling_ae`` use the service that needs ``permission``?"""
        if not self.allow_list:
            return True
        caller = self.caller(calling_ae)
        return caller is not None and permission in caller.permissions

    def principal(self, calling_ae: str) -> Principal:
        """The calling AE as a core principal: its permissions, and the facilities of its
        ``[dimse.remotes.NAME]`` entry (the query engine shows it only their studies; an AE
        without one, in ``open`` mode, sees every study)."""
        title = calling_ae.strip()
        # In open mode a remote kept in the index changes nothing (all permissions, no
        # facilities), so a C-STORE does not read the index for it: an index outage then
        # stays the store's typed outcome (0xA701), not a failed look-up here.
        caller = self.caller(title) if self.allow_list else self.callers.get(title)
        if caller is None:
            granted = ALL_PERMISSIONS if not self.allow_list else frozenset()
            return Principal(title, frozenset(_CORE_PERMISSIONS[p] for p in granted), kind="ae")
        granted = ALL_PERMISSIONS if not self.allow_list else caller.permissions
        return Principal(
            title,
            frozenset(_CORE_PERMISSIONS[p] for p in granted if p in _CORE_PERMISSIONS),
            caller.facilities,
            kind="ae",
        )


def _same_host(configured: str, address: str) -> bool:
    if configured == address:
        return True
    try:
        infos = socket.getaddrinfo(configured, None)
    except OSError:
        return False
    return any(info[4][0] == address for info in infos)


def calling_ae_of(assoc: Association) -> str:
    return str(assoc.requestor.ae_title or "").strip()


def handle_requested(
    event: Event,
    policy: AccessPolicy,
    permissions: Mapping[str, str | None],
    archive: Archive | None = None,
) -> None:
    """EVT_REQUESTED: reject callers the policy does not admit, before negotiation.

    An admitted caller is offered only the presentation contexts its permissions
    cover, so a refused service is a rejected context (PS3.8 9.3.3.2); storage
    contexts stay for callers that retrieve with C-GET, whose stores are then
    refused per request.
    """
    assoc = event.assoc
    # The requestor's ae_title is set after EVT_REQUESTED: read the request itself.
    request = assoc.requestor.primitive
    calling = str(request.calling_ae_title if request is not None else "").strip()
    address = str(assoc.requestor.address or "")
    reason = ""
    if not policy.addresses.admits(address):
        reason, diagnostic = "peer address not allowed ([dimse] allow / deny)", RJ_NO_REASON
    elif not policy.admits(calling, address):
        reason, diagnostic = "calling AE title not recognized", RJ_CALLING_AE_NOT_RECOGNIZED
    if reason:
        log.warning("association rejected from %s (AE %r): %s", address, calling, reason)
        if archive is not None:
            archive.audit_later(
                AuditEvent(
                    action=AuditAction.ASSOCIATION_REJECTED,
                    outcome=AuditOutcome.DENIED,
                    principal=calling,
                    principal_kind="ae",
                    client=address,
                    detail=reason,
                )
            )
        assoc.acse.send_reject(RJ_PERMANENT, RJ_SOURCE_SERVICE_USER, diagnostic)
        # As pynetdicom's own rejections do: wait for the DUL to send the A-ASSOCIATE-RJ
        # before the connection is closed.
        assoc.kill()
        return
    if not policy.allow_list:
        return
    granted: set[str] = {p for p in ALL_PERMISSIONS if policy.allows(calling, p)}
    if RETRIEVE in granted:
        granted.add(STORE)
    assoc.acceptor.supported_contexts = [
        cx
        for cx in assoc.acceptor.supported_contexts
        if permissions.get(str(cx.abstract_syntax)) in (None, *granted)
    ]
