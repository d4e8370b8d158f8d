"""Browser sessions for the web application: an API token exchanged for a cookie.

``POST /ui/session`` with ``{"token": "..."}`` checks the token with the configured
authenticator and answers with two cookies, both ``SameSite=Strict`` (and
``Secure`` under TLS):

- ``noctis_session``: the token itself, ``HttpOnly`` (page scripts never see it).
  ``SessionAuthenticator`` accepts it wherever an ``Authorization`` header is
  absent, through the same authenticator, so a revoked or expired token ends
  the session within the token cache's lifetime.
- ``noctis_csrf``: a random value the page reads and echoes in ``X-CSRF-Token``
  on every state-changing request (double submit).  ``CsrfMiddleware``
  refuses (403) a cookie-authenticated POST / PUT / PATCH / DELETE without it.

``GET /ui/session`` says whether the caller is signed in (and who), and
``DELETE /ui/session`` signs out (both cookies expire).
"""

from __future__ import annotations

import hmac
import inspect
import json
import secrets
from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb.auth import AnonymousAccess, AuthenticationFailed, Authenticator
from dicomweb.errors import error_response
from noctis_pacs.core.audit import AuditAction, AuditEvent
from noctis_pacs.core.auth import ANONYMOUS, Principal

SESSION_COOKIE = "noctis_session"
CSRF_COOKIE = "noctis_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BODY = 8192
#: Signing in again over a stale cookie needs no CSRF token: the sign-in takes JSON only,
#: which no cross-site form can send (see ``sign_in``).
CSRF_EXEMPT = frozenset({("POST", "/ui/session")})


def _with_authorization(scope: Scope, secret: str) -> HTTPConnection:
    headers = [(k, v) for k, v in scope.get("headers", []) if k != b"authorization"]
    headers.append((b"authorization", f"Bearer {secret}".encode("latin-1")))
    return HTTPConnection({**scope, "headers": headers})


def _session_secret(conn: HTTPConnection) -> str | None:
    if "authorization" in conn.headers:
        return None
    secret = conn.cookies.get(SESSION_COOKIE)
    return secret or None


class SessionAuthenticator:
    """The configured authenticator, also fed the session cookie when no header is sent."""

    def __init__(self, inner: Authenticator) -> None:
        self.inner = inner

    async def _ask(self, conn: HTTPConnection) -> Principal | None:
        found = self.inner.authenticate(conn)
        return await found if inspect.isawaitable(found) else found

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        secret = _session_secret(conn)
        if secret is None:
            return await self._ask(conn)
        return await self._ask(_with_authorization(conn.scope, secret))

    async def check_secret(self, scope: Scope, secret: str) -> Principal | None:
        return await self._ask(_with_authorization(scope, secret))


def with_sessions(authenticator: Authenticator) -> Authenticator:
    """``authenticator`` accepting the session cookie too (unchanged with ``auth.mode = "none"``)."""
    if isinstance(authenticator, AnonymousAccess):
        return authenticator
    return SessionAuthenticator(authenticator)


class CsrfMiddleware:
    """State-changing requests authenticated by the session cookie must echo the CSRF
    cookie in ``X-CSRF-Token`` (403 otherwise). Requests with an ``Authorization``
    header are not cookie-authenticated and pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and (scope["method"], scope["path"]) not in CSRF_EXEMPT
        ):
            conn = HTTPConnection(scope)
            if _session_secret(conn) is not None and not _csrf_ok(conn):
                response = error_response(403, "missing or wrong CSRF token (X-CSRF-Token)")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _csrf_ok(conn: HTTPConnection) -> bool:
    expected = conn.cookies.get(CSRF_COOKIE, "")
    given = conn.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def start_session(response: Response, secret: str, *, secure: bool) -> None:
    """Set the session cookie (``secret``: an API token or an OIDC JWT, HttpOnly) and a new
    CSRF cookie on ``response``; both ``SameSite=Strict``, ``Secure`` under TLS."""
    response.set_cookie(
        SESSION_COOKIE, secret, httponly=True, samesite="strict", secure=secure, path="/"
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        httponly=False,
        samesite="strict",
        secure=secure,
        path="/",
    )


def _describe(principal: Principal) -> dict[str, Any]:
    """What the page needs to follow the principal's role: its name, role, permissions
    (the sections and actions it offers) and facilities (shown)."""
    return {
        "name": principal.name,
        "kind": principal.kind,
        "role": str(principal.role) if principal.role is not None else None,
        "permissions": sorted(str(p) for p in principal.permissions),
        "facilities": sorted(principal.facilities),
    }


#: Where sign-ins and sign-outs go (``Archive.audit_later``: queued, never blocks).
AuditSink = Callable[[AuditEvent], None]


def audit_session(
    record: AuditSink | None,
    action: AuditAction,
    principal: Principal | None,
    conn: HTTPConnection,
    how: str,
) -> None:
    """A web sign-in or sign-out on the audit trail (PS3.15 A.5.3.8 User Authentication)."""
    if record is not None:
        client = conn.client.host if conn.client else ""
        record(AuditEvent.of(action, principal, client=client, detail=f"web application, {how}"))


def session_routes(
    *, authenticator: Authenticator, mode: str, root: str, record: AuditSink | None = None
) -> list[Route]:
    """``GET`` (who is signed in), ``POST`` (sign in), ``DELETE`` (sign out) ``{root}/session``."""
    open_access = not isinstance(authenticator, SessionAuthenticator)
    sessions = (
        authenticator
        if isinstance(authenticator, SessionAuthenticator)
        else SessionAuthenticator(authenticator)
    )

    async def current(request: Request) -> Response:
        if open_access:
            return JSONResponse({"auth": mode, "signed_in": True, **_describe(ANONYMOUS)})
        secret = _session_secret(request)
        principal = None
        if secret is not None:
            try:
                principal = await sessions.check_secret(request.scope, secret)
            except AuthenticationFailed:
                principal = None
        body: dict[str, Any] = {"auth": mode, "signed_in": principal is not None}
        if principal is not None:
            body.update(_describe(principal))
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def sign_in(request: Request) -> Response:
        # A cross-site form cannot send application/json without a CORS preflight:
        # no "login CSRF" (an attacker's token planted in the victim's browser).
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error_response(415, 'sign in with a JSON body: {"token": "..."}')
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return error_response(413, "the sign-in body is too large")
        try:
            token = json.loads(raw or b"{}").get("token", "")
        except (ValueError, AttributeError):
            return error_response(400, 'the body must be JSON: {"token": "..."}')
        if not isinstance(token, str) or not token.strip():
            return error_response(400, "a token is required")
        try:
            principal = await sessions.check_secret(request.scope, token.strip())
        except AuthenticationFailed:
            principal = None
        if principal is None:
            return error_response(401, "invalid or expired token")
        audit_session(record, AuditAction.LOGIN, principal, request, "API token")
        response = JSONResponse({"auth": mode, "signed_in": True, **_describe(principal)})
        start_session(response, token.strip(), secure=request.url.scheme == "https")
        response.headers["Cache-Control"] = "no-store"
        return response

    async def sign_out(request: Request) -> Response:
        secret = None if open_access else _session_secret(request)
        if secret is not None:
            try:
                principal = await sessions.check_secret(request.scope, secret)
            except AuthenticationFailed:
                principal = None  # an ended session: signed out all the same
            audit_session(record, AuditAction.LOGOUT, principal, request, "sign-out")
        response = JSONResponse({"auth": mode, "signed_in": False})
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            response.delete_cookie(name, path="/", samesite="strict")
        return response

    return [
        Route(f"{root}/session", current, methods=["GET"]),
        Route(f"{root}/session", sign_in, methods=["POST"]),
        Route(f"{root}/session", sign_out, methods=["DELETE"]),
    ]
