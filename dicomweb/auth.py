"""The one place where a request's principal and the permission it needs are decided.

Every HTTP route passes through ``AuthMiddleware``: it asks the configured
``Authenticator`` who is calling, works out the permission the request needs
from its method and path (``required_permission``, the one table for every
route) and refuses the request before any handler runs: 401 with
``WWW-Authenticate: Bearer`` when the credentials are missing or invalid, 403
when a known principal lacks the permission.

Principals and permissions are ``noctis_pacs.core.auth`` types, shared with
DIMSE and the query engine.  Paths that no rule names need ``ADMIN`` (deny by
default): a new route is refused to everybody but admins until its rule is
written here.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb.errors import error_response
from dicomweb.media import DICOMWEB_ROOT
from noctis_pacs.core.auth import ANONYMOUS, Permission, Principal

WORKFLOW_ROOT = "/workflow"
#: The admin API (tokens, remote AEs, jobs, ...) and the audit trail.
ADMIN_ROOTS = ("/api", "/audit")
#: Routes anyone may call: liveness, readiness, Prometheus scrapes.  No patient data.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

SCOPE_KEY = "noctis.principal"


class Authenticator(Protocol):
    def authenticate(self, conn: HTTPConnection) -> Principal | None:
        """The caller, or ``None`` when credentials are missing or invalid (401)."""


class AnonymousAccess:
    """Everybody is ``anonymous`` with every permission (``auth.mode = "none"``)."""

    def authenticate(self, conn: HTTPConnection) -> Principal | None:
        return ANONYMOUS


_QUERY_RESOURCES = ("studies", "series", "instances")
#: The web application (dicomweb/ui.py); "/" redirects there.
UI_ROOT = "/ui"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def required_permission(method: str, path: str) -> Permission | None:
    """The permission a request needs; ``None`` only for public routes and CORS preflights."""
    if method == "OPTIONS" or path in PUBLIC_PATHS:
        return None
    if path == "/" or _under(path, UI_ROOT):
        # The web application's page, configuration and assets (dicomweb/ui.py) are
        # public; every request the page makes goes to an API that needs its permission.
        return None
    if path == "/wado":
        return Permission.RETRIEVE
    if _under(path, WORKFLOW_ROOT):
        return Permission.WORKFLOW
    if _under(path, DICOMWEB_ROOT):
        if method == "POST":
            return Permission.STORE
        if method == "DELETE":
            return Permission.DELETE
        last = path.rstrip("/").rsplit("/", 1)[-1]
        return Permission.QUERY if last in _QUERY_RESOURCES else Permission.RETRIEVE
    # /api, /audit and any path without a rule of its own.
    return Permission.ADMIN


def principal_of(conn: HTTPConnection) -> Principal:
    """The principal ``AuthMiddleware`` attached to this request."""
    principal = conn.scope.get(SCOPE_KEY)
    return principal if isinstance(principal, Principal) else ANONYMOUS


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator | None = None) -> None:
        self.app = app
        self.authenticator: Authenticator = authenticator or AnonymousAccess()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        permission = required_permission(scope["method"], scope["path"])
        principal = self.authenticator.authenticate(conn)
        if permission is not None:
            if principal is None:
                response = error_response(
                    401, "authentication required", {"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
            if not principal.may(permission):
                response = error_response(403, f"{principal.name} may not {permission}")
                await response(scope, receive, send)
                return
        scope[SCOPE_KEY] = principal or ANONYMOUS
        await self.app(scope, receive, send)
