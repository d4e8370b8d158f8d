"""What an audit record says: who did what to which studies, when, and how it ended.

Pure vocabulary shared by both protocols, the CLI and the storage that keeps the
trail (``storage/audit_log.py``).  The actions follow the services of PS3.4 and
PS3.18; the record carries what an IHE ATNA / PS3.15 A.5 audit message needs
(active participant, network access point, participant objects, outcome).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from noctis_pacs.core.auth import Principal


class AuditAction(StrEnum):
    """Every kind of audited operation; the value is what ``noctis-pacs audit`` prints."""

    # DICOMweb (PS3.18) and the HTTP extensions
    QIDO = "qido"
    WADO = "wado-rs"
    WADO_METADATA = "wado-rs.metadata"
    WADO_FRAMES = "wado-rs.frames"
    WADO_BULKDATA = "wado-rs.bulkdata"
    WADO_RENDERED = "wado-rs.rendered"
    WADO_THUMBNAIL = "wado-rs.thumbnail"
    WADO_URI = "wado-uri"
    MPR = "mpr"
    MIP = "mip"
    STOW = "stow-rs"
    WORKFLOW_READ = "workflow.read"
    WORKFLOW_WRITE = "workflow.write"
    WORKFLOW_EVENTS = "workflow.events"
    DELETE = "delete"
    # DIMSE (PS3.4)
    C_STORE = "c-store"
    C_FIND = "c-find"
    C_MOVE = "c-move"
    C_GET = "c-get"
    MWL = "mwl-find"
    MPPS = "mpps"
    ASSOCIATION_REJECTED = "association-rejected"
    # Security events
    AUTH_FAILURE = "auth.failure"
    ACCESS_DENIED = "access.denied"
    TOKEN_CREATE = "token.create"
    TOKEN_REVOKE = "token.revoke"
    #: The web application's sign-in (API token or OIDC provider) and sign-out.
    LOGIN = "login"
    LOGOUT = "logout"
    CONFIG_REFUSED = "config.refused"
    AUDIT_READ = "audit.read"
    AUDIT_PRUNE = "audit.prune"
    # Local tools
    IMPORT = "import"


class AuditOutcome(StrEnum):
    """How the operation ended (PS3.15 A.5.1 EventOutcomeIndicator: 0, 4, 8, 12)."""

    SUCCESS = "success"
    #: Part of it failed (some sub-operations, some instances).
    PARTIAL = "partial"
    FAILURE = "failure"
    #: Refused for want of credentials or permission, or outside the caller's facilities.
    DENIED = "denied"


def utc_now() -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: sorts as text in both index dialects (the part up
    to the second formatted once per second: events are made on hot paths)."""
    global _second_text
    now = time.time()
    second = int(now)
    cached = _second_text
    if cached[0] != second:
        cached = _second_text = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"


_second_text: tuple[int, str] = (-1, "")


def _uids(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(str(value), None)
    return tuple(seen)


@dataclass(frozen=True)
class AuditEvent:
    """One audited operation.

    ``principal`` is the token, OIDC subject or AE title (``principal_kind`` says which);
    ``client`` the peer's address; ``query`` the matching keys as sent (the audit
    trail is the one place they are kept: logs never carry them).
    """

    action: str
    outcome: str = AuditOutcome.SUCCESS
    principal: str = ""
    principal_kind: str = ""
    client: str = ""
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()
    query: Mapping[str, str] = field(default_factory=dict)
    detail: str = ""
    time: str = field(default_factory=utc_now)

    @classmethod
    def of(
        cls,
        action: str,
        principal: Principal | None = None,
        *,
        client: str = "",
        outcome: str = AuditOutcome.SUCCESS,
        study_uids: Iterable[str] = (),
        series_uids: Iterable[str] = (),
        sop_uids: Iterable[str] = (),
        query: Mapping[str, str] | None = None,
        detail: str = "",
    ) -> AuditEvent:
        """An event by ``principal`` (its name and kind), UIDs de-duplicated in order."""
        return cls(
            action=str(action),
            outcome=str(outcome),
            principal=principal.name if principal is not None else "",
            principal_kind=principal.kind if principal is not None else "",
            client=client,
            study_uids=_uids(study_uids),
            series_uids=_uids(series_uids),
            sop_uids=_uids(sop_uids),
            query=dict(query or {}),
            detail=detail,
        )
