"""Reading the ``Authorization`` header: Bearer (RFC 6750) or Basic (RFC 7617).

Basic carries an API token as its password (any user name): Weasis, the
dcm4che tools and OHIF's ``requestOptions.auth`` only send Basic.  Anything
malformed or longer than ``MAX_SECRET_LENGTH`` is refused without further
work; the secret never appears in an error message.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from noctis_pacs.core.tokens import MAX_SECRET_LENGTH

#: A base64 Basic value of a ``MAX_SECRET_LENGTH`` secret plus a user name.
_MAX_HEADER = MAX_SECRET_LENGTH * 2


class BadCredentials(ValueError):
    """The header is present but unusable; the message is safe to show (no secret)."""


@dataclass(frozen=True)
class Credentials:
    scheme: str
    secret: str = ""

    def __repr__(self) -> str:
        return f"Credentials({self.scheme}, <secret>)"


def credentials_of(header: str | None) -> Credentials | None:
    """The credentials in an ``Authorization`` value; ``None`` when there is none."""
    if header is None:
        return None
    if len(header) > _MAX_HEADER:
        raise BadCredentials("credentials too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    kind = scheme.lower()
    if kind == "bearer":
        secret = value
    elif kind == "basic":
        secret = _basic_password(value)
    else:
        raise BadCredentials("unsupported authorization scheme: use Bearer or Basic")
    if not secret or len(secret) > MAX_SECRET_LENGTH or not secret.isprintable() or " " in secret:
        raise BadCredentials("malformed credentials")
    return Credentials(kind, secret)


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        raise BadCredentials("malformed Basic credentials") from None
    _, colon, password = decoded.partition(":")
    if not colon:
        raise BadCredentials("malformed Basic credentials")
    return password
