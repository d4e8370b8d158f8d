"""The one place where a request's principal and the permission it needs are decided.

Every HTTP route passes through ``AuthMiddleware``.  In order: the client
address against ``[http] allow`` / ``deny`` (403); an address blocked after
repeated authentication failures (429); the per-address rate (429); who is
calling, from the configured ``Authenticator`` (401 with
``WWW-Authenticate: Bearer`` when credentials are missing or invalid); the
per-principal rate (429); and the permission the request needs
(``required_permission``, the one table for every route; 403 when a known
principal lacks it).  Nothing runs in a handler before all of that passed.

Principals and permissions are ``noctis_pacs.core.auth`` types, shared with
DIMSE and the query engine.  Paths that no rule names need ``ADMIN`` (deny by
default): a new route is refused to everybody but admins until its rule is
written here.  Error bodies never carry credentials.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb.errors import error_response
from dicomweb.limits import FailureTracker, RateLimiter, retry_after
from dicomweb.media import DICOMWEB_ROOT
from noctis_pacs.core.auth import ANONYMOUS, Permission, Principal
from noctis_pacs.core.netfilter import AddressFilter
from noctis_pacs.core.settings import Settings

log = logging.getLogger("noctis.auth")

WORKFLOW_ROOT = "/workflow"
#: The admin API (API tokens, remote AEs, jobs, ...) and the audit trail.
ADMIN_ROOTS = ("/api", "/audit")
#: Routes anyone may call: liveness, readiness, Prometheus scrapes.  No patient data.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

SCOPE_KEY = "noctis.principal"
#: The principal of a public route when auth is on: no permission at all.
UNAUTHENTICATED = Principal("unauthenticated", frozenset())
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="noctis"'}
INVALID_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="noctis", error="invalid_token"'}


class AuthenticationFailed(Exception):
    """Credentials were sent but are unusable; the message is safe to show."""


class Authenticator(Protocol):
    def authenticate(self, conn: HTTPConnection) -> Principal | None | Awaitable[Principal | None]:
        """The caller; ``None`` when no credentials were sent (401); raises
        ``AuthenticationFailed`` for invalid ones (401, counted against the address).
        May be a coroutine (index and JWKS reads go to the threadpool) or plain."""


class AnonymousAccess:
    """Everybody is ``anonymous`` with every permission (``auth.mode = "none"``)."""

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
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
    if any(_under(path, root) for root in ADMIN_ROOTS):
        # The admin API (statistics, remotes, jobs, API tokens: dicomweb/admin_api.py,
        # dicomweb/tokens_api.py) and the audit trail.
        return Permission.ADMIN
    # Any path without a rule of its own (deny by default).
    return Permission.ADMIN


def principal_of(conn: HTTPConnection) -> Principal:
    """The principal ``AuthMiddleware`` attached to this request."""
    principal = conn.scope.get(SCOPE_KEY)
    return principal if isinstance(principal, Principal) else ANONYMOUS


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


#: ``(event, client, principal, outcome, detail)``: a security event for the log and the
#: audit trail.  Called on the event loop: a sink must not block (queue, do not write).
SecurityEvents = Callable[[str, str, str, str, str], None]


def log_security_event(event: str, client: str, principal: str, outcome: str, detail: str) -> None:
    log.warning(
        "security: %s from %s (%s): %s %s", event, client, principal or "-", outcome, detail
    )


@dataclass
class Guard:
    """Address lists, rate limits and failure blocking: built once per application."""

    addresses: AddressFilter = field(default_factory=AddressFilter)
    by_address: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=0, burst=0))
    by_principal: RateLimiter = field(default_factory=lambda: RateLimiter(per_minute=0, burst=0))
    failures: FailureTracker = field(
        default_factory=lambda: FailureTracker(limit=0, window=0, block_seconds=0)
    )
    events: SecurityEvents = log_security_event
    #: ``Strict-Transport-Security`` value when TLS is on.
    hsts: str = ""

    @classmethod
    def from_settings(cls, settings: Settings, events: SecurityEvents | None = None) -> Guard:
        http = settings.http
        limits = http.limits
        tls = bool(http.tls_cert)
        return cls(
            addresses=AddressFilter.from_lists(http.allow, http.deny),
            by_address=RateLimiter(per_minute=limits.requests_per_minute, burst=limits.burst),
            by_principal=RateLimiter(per_minute=limits.requests_per_minute, burst=limits.burst),
            failures=FailureTracker(
                limit=limits.auth_failures,
                window=limits.auth_failure_window_seconds,
                block_seconds=limits.block_seconds,
            ),
            events=events or log_security_event,
            hsts=f"max-age={http.hsts_max_age}" if tls and http.hsts_max_age > 0 else "",
        )


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.app = app
        self.authenticator: Authenticator = authenticator or AnonymousAccess()
        self.open = isinstance(self.authenticator, AnonymousAccess)
        self.guard = guard or Guard()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.guard.hsts:
            send = self._with_hsts(send)
        refusal = await self._check(scope)
        if refusal is not None:
            status, detail, headers = refusal
            await error_response(status, detail, headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _with_hsts(self, send: Send) -> Send:
        value = self.guard.hsts.encode("latin-1")

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"strict-transport-security", value)]
                message = {**message, "headers": headers}
            await send(message)

        return sender

    async def _check(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """``None`` when the request may go on (its principal set in the scope)."""
        guard = self.guard
        address = client_address(scope)
        if not guard.addresses.admits(address):
            guard.events("address-refused", address, "", "denied", "not in [http] allow / deny")
            return 403, "client address not allowed", {}
        wait = guard.failures.blocked(address)
        if wait:
            return 429, "too many failed authentications", {"Retry-After": retry_after(wait)}
        wait = guard.by_address.take(address)
        if wait:
            return 429, "too many requests from this address", {"Retry-After": retry_after(wait)}
        permission = required_permission(scope["method"], scope["path"])
        if permission is None:
            scope[SCOPE_KEY] = ANONYMOUS if self.open else UNAUTHENTICATED
            return None
        try:
            found = self.authenticator.authenticate(HTTPConnection(scope))
            principal = await found if inspect.isawaitable(found) else found
        except AuthenticationFailed as exc:
            self._failed(address, str(exc))
            return 401, str(exc), INVALID_CHALLENGE
        if principal is None:
            return 401, "authentication required", CHALLENGE
        if principal is not ANONYMOUS:
            wait = guard.by_principal.take(f"{principal.kind}:{principal.name}")
            if wait:
                return 429, "too many requests", {"Retry-After": retry_after(wait)}
        scope[SCOPE_KEY] = principal
        if not principal.may(permission):
            detail = f"{scope['method']} needs {permission}"
            guard.events("access-denied", address, principal.name, "denied", detail)
            return 403, f"{principal.name} may not {permission}", {}
        return None

    def _failed(self, address: str, reason: str) -> None:
        blocked = self.guard.failures.failed(address)
        events = self.guard.events
        events("authentication", address, "", "failure", reason)
        if blocked:
            detail = f"blocked for {self.guard.failures.block_seconds:.0f} s"
            events("address-blocked", address, "", "blocked", detail)
