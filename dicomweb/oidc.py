"""OpenID Connect bearer tokens: JWTs verified with PyJWT against the provider's JWKS.

What is checked: the signature, with a key of the provider's JWKS chosen by
``kid`` and an algorithm from ``auth.oidc.algorithms`` that matches the key
(RS256 / ES256 only: ``none`` and HMAC algorithms are never accepted, so a
token "signed" with the public key as an HMAC secret fails); ``iss`` and
``aud``; ``exp`` (required) and ``nbf`` with ``leeway_seconds`` of clock skew.
The principal's name, roles and facilities come from the configured claims.

The JWKS is cached for ``jwks_cache_seconds``; a token with an unknown ``kid``
(the provider rotated its keys) re-reads it, at most once per
``jwks_min_refresh_seconds`` so that forged ``kid`` values cannot make the
server hammer the provider.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from noctis_pacs.core.auth import ROLE_PERMISSIONS, Permission, Principal, Role
from noctis_pacs.core.settings import OidcSettings

log = logging.getLogger("noctis.auth.oidc")

#: Role precedence when a token carries several: the principal's ``role`` is the first.
ROLE_ORDER = (Role.ADMIN, Role.TECHNOLOGIST, Role.RADIOLOGIST, Role.UPLOADER, Role.VIEWER)
_FETCH_TIMEOUT = 5.0
_MAX_JWKS_BYTES = 1 << 20


class InvalidToken(Exception):
    """Why a JWT was refused (for DEBUG logs; never shown with the token)."""


class JwksCache:
    """The provider's signing keys by ``kid``, read from ``url`` or ``path``."""

    def __init__(
        self,
        *,
        url: str = "",
        path: str = "",
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.path = path
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._tried_at: float | None = None
        self._lock = threading.Lock()

    def _read(self) -> dict[str, Any]:
        if self.path:
            data: Any = json.loads(Path(self.path).read_text("utf-8"))
        else:
            request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as response:  # noqa: S310
                data = json.loads(response.read(_MAX_JWKS_BYTES))
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWKS (no 'keys' list)")
        return data

    def _refresh(self) -> None:
        self._tried_at = self.clock()
        try:
            data = self._read()
        except (OSError, ValueError) as exc:
            log.warning("could not read the OIDC JWKS: %s", exc)
            return
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in data["keys"]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError as exc:
                log.debug("JWKS key skipped: %s", exc)
                continue
            keys[key.key_id] = key
        self._keys = keys
        self._loaded_at = self._tried_at
        log.info("OIDC JWKS loaded: %d signing key(s)", len(keys))

    def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid`` (a JWKS of one key also serves tokens without ``kid``)."""
        with self._lock:
            now = self.clock()
            may_refresh = self._tried_at is None or now - self._tried_at >= self.min_refresh_seconds
            stale = self._loaded_at is None or now - self._loaded_at >= self.cache_seconds
            if stale and may_refresh:
                self._refresh()
                may_refresh = False
            found = self._match(kid)
            if found is None and may_refresh:
                self._refresh()
                found = self._match(kid)
            return found

    def _match(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)


def claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path (``realm_access.roles``); ``None`` when absent."""
    value: Any = claims
    for part in path.split(".") if path else ():
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int)]
    return []


def principal_from_claims(claims: dict[str, Any], oidc: OidcSettings) -> Principal:
    """The principal a verified token stands for: the union of its known roles."""
    names = {r.strip().lower() for r in _strings(claim(claims, oidc.roles_claim))}
    roles = [role for role in ROLE_ORDER if role.value in names]
    name = claim(claims, oidc.name_claim) or claims.get("sub") or "oidc-subject"
    permissions: frozenset[Permission] = frozenset().union(*(ROLE_PERMISSIONS[r] for r in roles))
    role = roles[0] if roles else None
    facilities = frozenset(_strings(claim(claims, oidc.facilities_claim)))
    if role is Role.ADMIN:
        facilities = frozenset()
    return Principal(str(name)[:128], permissions, facilities, "oidc", role)


class OidcVerifier:
    def __init__(self, oidc: OidcSettings, jwks: JwksCache | None = None) -> None:
        self.oidc = oidc
        self.algorithms: tuple[str, ...] = tuple(oidc.algorithms)
        self.jwks = jwks or JwksCache(
            url=oidc.jwks_url,
            path=oidc.jwks_file,
            cache_seconds=oidc.jwks_cache_seconds,
            min_refresh_seconds=oidc.jwks_min_refresh_seconds,
        )

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; ``InvalidToken`` otherwise (blocking: JWKS I/O)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"unreadable header: {exc}") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidToken(f"algorithm {alg!r} not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("kid is not a string")
        key = self.jwks.key(kid)
        if key is None:
            raise InvalidToken("no key for this kid")
        if key.algorithm_name != alg:
            raise InvalidToken(f"key {kid!r} is {key.algorithm_name}, token says {alg}")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.oidc.audience,
                issuer=self.oidc.issuer,
                leeway=self.oidc.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(type(exc).__name__) from None
        return principal_from_claims(claims, self.oidc)
