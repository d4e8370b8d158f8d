"""API tokens: how a secret is made, how it is kept, and the principal it stands for.

A secret is 32 random bytes (256 bits) from ``secrets``, URL-safe encoded
behind a recognisable prefix (so leaked secrets can be found by scanners).
Only its SHA-256 digest is stored: the secret is random with 256 bits of
entropy, so a slow password hash (bcrypt, Argon2) would add nothing against
guessing and would cost every request milliseconds; the digest also lets the
index find the token with one indexed look-up.  Digests are compared with
``hmac.compare_digest`` (constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from noctis_pacs.core.auth import Principal, Role

SECRET_PREFIX = "noctis_"
SECRET_BYTES = 32
#: Longest credential ever looked at; anything longer is refused unread.
MAX_SECRET_LENGTH = 8192
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class TokenNameError(ValueError):
    """A token name that is empty, too long or has characters outside ``[A-Za-z0-9._@-]``."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TokenNameError(
            f"token name {name!r}: 1 to 64 characters of letters, digits, '.', '_', '@', '-'"
        )
    return name


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> str:
    """The stored form of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(text: str | None) -> datetime | None:
    return None if not text else datetime.fromisoformat(text)


@dataclass(frozen=True)
class ApiToken:
    """One API token as the index keeps it (never the secret)."""

    name: str
    role: Role
    facilities: tuple[str, ...]
    digest: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def issue(
        cls,
        name: str,
        role: Role,
        *,
        facilities: tuple[str, ...] = (),
        expires_days: float | None = None,
        now: datetime | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token and its secret (shown once, never stored)."""
        moment = now or utc_now()
        secret = new_secret()
        expires = None if expires_days is None else moment + timedelta(days=expires_days)
        token = cls(check_name(name), role, facilities, digest(secret), moment, expires)
        return token, secret

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utc_now()):
            return "expired"
        return "active"

    def principal(self) -> Principal:
        return Principal.with_role(self.name, self.role, facilities=self.facilities, kind="token")
