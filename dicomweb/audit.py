"""The audit trail of HTTP requests: one record per request that touches patient data,
and one per refused request (401, 403).

``AuditMiddleware`` sits outside ``AuthMiddleware`` so it sees refusals as well as
answers.  The action comes from the matched route template (never the raw path),
the UIDs from the path (or WADO-URI's query), the query keys from QIDO-RS and
workflow list parameters; handlers add what only they know (STOW-RS: the studies
stored) with ``note``.  Records are queued (``Archive.audit_later``) when the
response starts: the request never waits for the audit write, and a long response
(the event stream, a large retrieve) is on record from its start.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb.auth import SCOPE_KEY
from dicomweb.errors import BadRequest
from dicomweb.media import DICOMWEB_ROOT
from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from storage.archive import Archive

NOTE_KEY = "noctis.audit"
AUDIT_ROOT = "/audit"
WORKFLOW_ROOT = "/workflow"
#: QIDO-RS parameters that shape the answer rather than select studies (PS3.18 8.3.4).
_NOT_KEYS = frozenset({"includefield", "limit", "offset", "fuzzymatching", "orderby"})
_QUERY_TAILS = ("/studies", "/series", "/instances")
_SUFFIX_ACTIONS = (
    ("/metadata", AuditAction.WADO_METADATA),
    ("/rendered", AuditAction.WADO_RENDERED),
    ("/thumbnail", AuditAction.WADO_THUMBNAIL),
    ("/mpr", AuditAction.MPR),
    ("/mip", AuditAction.MIP),
    ("/frames/{frames}", AuditAction.WADO_FRAMES),
    ("/bulk/{tag}", AuditAction.WADO_BULKDATA),
)


def action_of(method: str, template: str) -> AuditAction | None:
    """The audited action of a request to route ``template``; ``None`` for routes that
    carry no patient data (health, metrics)."""
    if template == "/wado":
        return AuditAction.WADO_URI
    if template == AUDIT_ROOT or template.startswith(AUDIT_ROOT + "/"):
        return AuditAction.AUDIT_READ
    if template.startswith(WORKFLOW_ROOT + "/") or template == WORKFLOW_ROOT:
        if template.endswith("/events"):
            return AuditAction.WORKFLOW_EVENTS
        return AuditAction.WORKFLOW_READ if method == "GET" else AuditAction.WORKFLOW_WRITE
    if not template.startswith(DICOMWEB_ROOT):
        return None
    if method == "POST":
        return AuditAction.STOW
    if method == "DELETE":
        return AuditAction.DELETE
    if template.endswith(_QUERY_TAILS):
        return AuditAction.QIDO
    for suffix, action in _SUFFIX_ACTIONS:
        if template.endswith(suffix):
            return action
    return AuditAction.WADO


def outcome_of(status: int) -> AuditOutcome:
    if status in (401, 403):
        return AuditOutcome.DENIED
    if status == 202:  # STOW-RS: some instances stored, some not (PS3.18 10.5.3)
        return AuditOutcome.PARTIAL
    return AuditOutcome.SUCCESS if status < 400 else AuditOutcome.FAILURE


def note(
    conn: HTTPConnection,
    *,
    study_uids: Iterable[str] = (),
    series_uids: Iterable[str] = (),
    sop_uids: Iterable[str] = (),
    detail: str = "",
) -> None:
    """Add what the handler learnt (the studies a STOW-RS stored, a count) to the request's
    audit record."""
    noted: dict[str, Any] = conn.scope.setdefault(NOTE_KEY, {})
    for key, values in (
        ("study_uids", study_uids),
        ("series_uids", series_uids),
        ("sop_uids", sop_uids),
    ):
        noted.setdefault(key, []).extend(v for v in values if v)
    if detail:
        noted["detail"] = detail


def _uids(scope: Scope, query: list[tuple[str, str]]) -> tuple[list[str], list[str], list[str]]:
    params = scope.get("path_params") or {}
    studies = [str(params["study"])] if params.get("study") else []
    series = [str(params["series"])] if params.get("series") else []
    sops = [str(params["instance"])] if params.get("instance") else []
    if scope.get("path") == "/wado":  # WADO-URI names its object in the query (PS3.18 9.1.2)
        wanted = dict(query)
        studies += [wanted["studyUID"]] if wanted.get("studyUID") else []
        series += [wanted["seriesUID"]] if wanted.get("seriesUID") else []
        sops += [wanted["objectUID"]] if wanted.get("objectUID") else []
    return studies, series, sops


def event_for(scope: Scope, status: int) -> AuditEvent | None:
    """The audit record of a request answered with ``status``; ``None`` when not audited."""
    route = scope.get("route")
    template = str(getattr(route, "path", "") or "")
    method = str(scope.get("method", "GET"))
    action: str | None = action_of(method, template) if template else None
    if status == 401:
        action = AuditAction.AUTH_FAILURE
    elif status == 403:
        action = AuditAction.ACCESS_DENIED
    if action is None:
        return None
    conn = HTTPConnection(scope)
    query = list(conn.query_params.multi_items())
    studies, series, sops = _uids(scope, query)
    noted: dict[str, Any] = scope.get(NOTE_KEY) or {}
    keys: dict[str, str] = {}
    if action in (AuditAction.QIDO, AuditAction.WORKFLOW_READ):
        for name, value in query:
            if name.lower() not in _NOT_KEYS:
                keys[name] = f"{keys[name]}\\{value}" if name in keys else value
    principal = scope.get(SCOPE_KEY)
    client = scope.get("client")
    params = scope.get("path_params") or {}
    detail = noted.get("detail", "")
    if not detail:
        detail = f"HTTP {status}"
        other = [f"{k}={params[k]}" for k in ("item", "uid") if params.get(k)]
        if other:
            detail += " " + " ".join(other)
        if template == "" and status in (401, 403):
            detail += f" {method} {scope.get('path', '')}"[:200]
    return AuditEvent(
        action=str(action),
        outcome=str(outcome_of(status)),
        principal=str(getattr(principal, "name", "")) if principal is not None else "",
        principal_kind=str(getattr(principal, "kind", "")) if principal is not None else "",
        client=str(client[0]) if client else "",
        study_uids=tuple(dict.fromkeys(studies + noted.get("study_uids", []))),
        series_uids=tuple(dict.fromkeys(series + noted.get("series_uids", []))),
        sop_uids=tuple(dict.fromkeys(sops + noted.get("sop_uids", []))),
        query=keys,
        detail=detail,
    )


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, archive: Archive) -> None:
        self.app = app
        self.archive = archive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.archive.audit_enabled:
            await self.app(scope, receive, send)
            return
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            recorded = True
            event = event_for(scope, status)
            if event is not None:
                self.archive.audit_later(event)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and not recorded:
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if not recorded:
                record(500)


#: Records per ``GET /audit`` page at most (``after`` pages on).
MAX_AUDIT_PAGE = 10000


def _bounded_int(request: Request, name: str, default: int, maximum: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) > maximum:
        raise BadRequest(f"{name} must be an integer from 0 to {maximum}")
    return int(text)


def audit_routes(archive: Archive) -> list[BaseRoute]:
    """``GET /audit`` (admins, ``dicomweb.auth``): the audit trail as JSON, oldest first;
    filters ``since`` / ``until`` (ISO 8601 UTC), ``study``, ``principal``, ``action``;
    ``after`` (a record's ``seq``) and ``limit`` page through it."""

    def read(request: Request) -> Response:
        params = request.query_params
        limit = _bounded_int(request, "limit", 1000, MAX_AUDIT_PAGE)
        after = _bounded_int(request, "after", 0, 2**62)
        archive.flush_audit()
        records = archive.audit_records(
            since=params.get("since") or None,
            until=params.get("until") or None,
            study_uid=params.get("study") or None,
            principal=params.get("principal") or None,
            action=params.get("action") or None,
            after_seq=after,
            limit=limit,
        )
        return JSONResponse([r.to_json() for r in records])

    return [Route(AUDIT_ROOT, read, methods=["GET"])]
