"""The API token table: create, list, revoke, and the per-request look-up by digest.

The index is the truth (several ``serve`` processes and the CLI share it);
``TokenCache`` keeps a look-up for a few seconds so that a busy viewer costs
one indexed read per token per ``ttl``, and a revoke made by any process
takes effect everywhere within ``ttl`` seconds.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from noctis_pacs.core.auth import parse_role
from noctis_pacs.core.tokens import ApiToken, iso, parse_iso, utc_now
from storage.db import Connection, Database
from storage.sqlfiles import named_queries


class TokenExistsError(ValueError):
    """An active (or expired, not revoked) token already has this name."""


def _sql(name: str) -> str:
    return named_queries("tokens.sql")[name]


def _token(row: Any) -> ApiToken:
    name, role, facilities, token_digest, created, expires, revoked = row
    return ApiToken(
        name=str(name),
        role=parse_role(str(role)),
        facilities=tuple(json.loads(facilities or "[]")),
        digest=str(token_digest),
        created_at=parse_iso(str(created)) or utc_now(),
        expires_at=parse_iso(expires),
        revoked_at=parse_iso(revoked),
    )


class TokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, token: ApiToken) -> None:
        """Record ``token``; a revoked token of the same name is replaced."""

        def work(conn: Connection) -> None:
            existing = conn.one(_sql("token_by_name"), {"name": token.name})
            if existing is not None and existing[6] is None:
                raise TokenExistsError(f"a token named {token.name!r} exists: revoke it first")
            conn.execute(_sql("token_delete_revoked"), {"name": token.name})
            conn.execute(
                _sql("token_insert"),
                {
                    "name": token.name,
                    "token_digest": token.digest,
                    "role": token.role.value,
                    "facilities": json.dumps(list(token.facilities)),
                    "created_at": iso(token.created_at),
                    "expires_at": iso(token.expires_at),
                },
            )

        self.db.transaction(work)

    def revoke(self, name: str) -> bool:
        """Revoke the token ``name``; False when there is no such unrevoked token."""

        def work(conn: Connection) -> int:
            cur = conn.execute(_sql("token_revoke"), {"name": name, "revoked_at": iso(utc_now())})
            return int(cur.rowcount)

        return self.db.transaction(work) > 0

    def list(self) -> list[ApiToken]:
        with self.db.reader() as conn:
            return [_token(row) for row in conn.all(_sql("token_list"))]

    def by_digest(self, token_digest: str) -> ApiToken | None:
        with self.db.reader() as conn:
            row = conn.one(_sql("token_by_digest"), {"token_digest": token_digest})
        return None if row is None else _token(row)


class TokenCache:
    """Look-ups by digest kept ``ttl`` seconds (misses too), at most ``size`` entries."""

    def __init__(
        self,
        lookup: Callable[[str], ApiToken | None],
        *,
        ttl: float = 5.0,
        size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, ApiToken | None]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, token_digest: str) -> tuple[bool, ApiToken | None]:
        """``(True, token)`` when a fresh answer is cached (no index read needed)."""
        with self._lock:
            entry = self._entries.get(token_digest)
            if entry is not None and self.clock() - entry[0] < self.ttl:
                self._entries.move_to_end(token_digest)
                return True, entry[1]
        return False, None

    def get(self, token_digest: str) -> ApiToken | None:
        hit, token = self.cached(token_digest)
        if hit:
            return token
        token = self.lookup(token_digest)
        with self._lock:
            self._entries[token_digest] = (self.clock(), token)
            self._entries.move_to_end(token_digest)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return token

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()
