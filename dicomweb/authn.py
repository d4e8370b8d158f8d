"""Who is calling: API tokens (``auth.mode = "token"``), and OIDC JWTs with API tokens
(``"oidc"``).  ``build_authenticator`` picks the one the settings ask for.

A token secret is recognised by its prefix; its SHA-256 digest is looked up
in the index through a short per-process cache (``auth.token_cache_seconds``),
so a token created or revoked by the CLI or another process applies within
that time, without a restart.  Index reads and JWKS fetches run in the
threadpool, never on the event loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from dicomweb.auth import (
    AnonymousAccess,
    AuthenticationFailed,
    Authenticator,
    SecurityEvents,
    log_security_event,
)
from dicomweb.credentials import BadCredentials, credentials_of
from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from noctis_pacs.core.auth import Principal
from noctis_pacs.core.settings import Settings
from noctis_pacs.core.tokens import SECRET_PREFIX, digest, same_digest
from storage.archive import Archive, TokenCache

if TYPE_CHECKING:  # PyJWT and cryptography load only in oidc mode (start-up time)
    from dicomweb.oidc import OidcVerifier

log = logging.getLogger("noctis.auth")

_INVALID = "invalid or expired credentials"


class CredentialAuthenticator:
    """API tokens, and JWTs when an ``OidcVerifier`` is given."""

    def __init__(self, tokens: TokenCache, oidc: OidcVerifier | None = None) -> None:
        self.tokens = tokens
        self.oidc = oidc

    async def authenticate(self, conn: HTTPConnection) -> Principal | None:
        try:
            credentials = credentials_of(conn.headers.get("authorization"))
        except BadCredentials as exc:
            raise AuthenticationFailed(str(exc)) from None
        if credentials is None:
            return None
        secret = credentials.secret
        if secret.startswith(SECRET_PREFIX):
            return await self._token(secret)
        if self.oidc is not None and secret.count(".") == 2:
            from dicomweb.oidc import InvalidToken

            try:
                return await run_in_threadpool(self.oidc.verify, secret)
            except InvalidToken as exc:
                log.debug("JWT refused: %s", exc)
                raise AuthenticationFailed(_INVALID) from None
        raise AuthenticationFailed(_INVALID)

    async def _token(self, secret: str) -> Principal:
        wanted = digest(secret)
        hit, token = self.tokens.cached(wanted)
        if not hit:
            token = await run_in_threadpool(self.tokens.get, wanted)
        if token is None or not same_digest(token.digest, wanted):
            raise AuthenticationFailed(_INVALID)
        if token.state() != "active":
            log.debug("token %s refused: %s", token.name, token.state())
            raise AuthenticationFailed(_INVALID)
        return token.principal()


def build_authenticator(settings: Settings, archive: Archive) -> Authenticator:
    mode = settings.auth.mode
    if mode == "none":
        return AnonymousAccess()
    tokens = TokenCache(archive.tokens.by_digest, ttl=settings.auth.token_cache_seconds)
    oidc = None
    if mode == "oidc":
        from dicomweb.oidc import OidcVerifier

        oidc = OidcVerifier(settings.auth.oidc)
    return CredentialAuthenticator(tokens, oidc)


#: Security events the audit trail gets from here.  Every refused request (401, 403)
#: is recorded by the audit middleware (``dicomweb/audit.py``), which sees the
#: answers; what only the guard knows is that an address was blocked.
_AUDITED = {"address-blocked": (AuditAction.ACCESS_DENIED, AuditOutcome.DENIED)}


def audit_events(archive: Archive) -> SecurityEvents:
    """Security events to the log, and to the audit trail (queued: never blocks)."""

    def record(event: str, client: str, principal: str, outcome: str, detail: str) -> None:
        log_security_event(event, client, principal, outcome, detail)
        audited = _AUDITED.get(event)
        if audited is not None:
            action, audit_outcome = audited
            archive.audit_later(
                AuditEvent(
                    action=str(action),
                    outcome=str(audit_outcome),
                    principal=principal,
                    client=client,
                    detail=f"{event}: {detail}",
                )
            )

    return record
