"""The one place where a request's principal and permissions are decided.

Every HTTP route passes through ``AuthMiddleware``: it asks the configured
``Authenticator`` who is calling, works out the permission the request needs
from its method and path (``required_permission``) and refuses it before any
handler runs.  Authentication (tokens, OIDC, mTLS) will be a new
``Authenticator``; nothing else changes.  The default grants anonymous full
access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb.errors import error_response
from dicomweb.media import DICOMWEB_ROOT

STORE = "store"
QUERY = "query"
RETRIEVE = "retrieve"
DELETE = "delete"
#: The worklist / study-tracking REST API and its event stream (``/workflow``).
WORKFLOW = "workflow"
WORKFLOW_ROOT = "/workflow"
ALL_PERMISSIONS = frozenset({STORE, QUERY, RETRIEVE, DELETE, WORKFLOW})

SCOPE_KEY = "noctis.principal"


@dataclass(frozen=True)
class Principal:
    name: str
    permissions: frozenset[str]

    def may(self, permission: str) -> bool:
        return permission in self.permissions


ANONYMOUS = Principal("anonymous", ALL_PERMISSIONS)


class Authenticator(Protocol):
    def authenticate(self, conn: HTTPConnection) -> Principal | None:
        """The caller, or ``None`` when credentials are missing or invalid (401)."""


class AnonymousAccess:
    """Everybody is ``anonymous`` with every permission (the default until auth lands)."""

    def authenticate(self, conn: HTTPConnection) -> Principal | None:
        return ANONYMOUS


_QUERY_RESOURCES = ("studies", "series", "instances")


def required_permission(method: str, path: str) -> str | None:
    """The permission a request needs; ``None`` for open routes (health, metrics, CORS)."""
    if method == "OPTIONS":
        return None
    if path == "/wado":
        return RETRIEVE
    if path == WORKFLOW_ROOT or path.startswith(WORKFLOW_ROOT + "/"):
        return WORKFLOW
    if not path.startswith(DICOMWEB_ROOT):
        return None
    if method == "POST":
        return STORE
    if method == "DELETE":
        return DELETE
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return QUERY if last in _QUERY_RESOURCES else RETRIEVE


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
