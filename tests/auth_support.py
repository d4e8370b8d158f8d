"""Helpers for the authentication tests: tokens made with the real CLI, identities."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

from tests.conftest import BIN, RunningServer

#: Abuse limits off, so that a test's many deliberate failures do not block 127.0.0.1.
NO_LIMITS = "[http.limits]\nrequests_per_minute = 0\nauth_failures = 0\n"


def token_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "noctis-pacs"), "token", *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def create_token(
    server: RunningServer,
    name: str,
    role: str,
    *,
    facilities: tuple[str, ...] = (),
    expires_days: float | None = None,
) -> str:
    """The secret of a new token (the last line of ``token create``)."""
    args = ["create", "--name", name, "--role", role]
    for facility in facilities:
        args += ["--facility", facility]
    if expires_days is not None:
        args += ["--expires-days", str(expires_days)]
    result = token_cli(server, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def expired_token(server: RunningServer, name: str, role: str = "admin") -> str:
    """A token whose expiry (about 0.1 s after creation) has passed."""
    secret = create_token(server, name, role, expires_days=0.1 / 86400)
    time.sleep(0.3)
    return secret


@dataclass(frozen=True)
class Identity:
    """A column of the authorization matrix: who calls, with which header."""

    label: str
    headers: dict[str, str]
    role: str | None = None
