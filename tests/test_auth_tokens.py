"""API tokens: the CLI (create / list / revoke), Bearer and Basic on the wire, revocation
while the server runs, 401 vs 403, and the safe-by-default start-up refusal."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from noctis_pacs.core.auth import Permission, Role
from noctis_pacs.core.tokens import SECRET_PREFIX, ApiToken, digest
from tests.auth_support import NO_LIMITS, create_token, token_cli
from tests.conftest import BIN, RunningServer, db_url_for, start_server
from tests.test_dimse_support import server_archive

TOKEN_MODE = '[auth]\nmode = "token"\ntoken_cache_seconds = 1.0\n' + NO_LIMITS


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("tokens")
    server = start_server(base / "data", db_url_for("sqlite", base / "data"), config=TOKEN_MODE)
    yield server
    server.stop()


def basic(secret: str, user: str = "weasis") -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_token_store_round_trip(archive: object) -> None:
    """Both index dialects: create, find by digest, list, revoke, replace a revoked name."""
    from storage.archive import Archive, TokenExistsError

    assert isinstance(archive, Archive)
    token, secret = ApiToken.issue("ris", Role.TECHNOLOGIST, facilities=("north", "south"))
    archive.tokens.create(token)
    found = archive.tokens.by_digest(digest(secret))
    assert found is not None and found.name == "ris" and found.facilities == ("north", "south")
    assert found.principal().may(Permission.WORKFLOW)
    assert not found.principal().may(Permission.DELETE)
    assert archive.tokens.by_digest(digest(secret + "x")) is None
    with pytest.raises(TokenExistsError):
        archive.tokens.create(ApiToken.issue("ris", Role.VIEWER)[0])
    assert archive.tokens.revoke("ris") and not archive.tokens.revoke("ris")
    assert [t.state() for t in archive.tokens.list()] == ["revoked"]
    again, _ = ApiToken.issue("ris", Role.VIEWER)
    archive.tokens.create(again)
    assert [(t.name, t.role, t.state()) for t in archive.tokens.list()] == [
        ("ris", Role.VIEWER, "active")
    ]


def test_secrets_are_random_256_bits_and_stored_hashed() -> None:
    token, secret = ApiToken.issue("a", Role.VIEWER)
    other, secret2 = ApiToken.issue("b", Role.VIEWER)
    assert secret.startswith(SECRET_PREFIX) and secret != secret2
    raw = base64.urlsafe_b64decode(secret[len(SECRET_PREFIX) :] + "=")
    assert len(raw) * 8 >= 256
    assert token.digest == digest(secret) and secret not in token.digest
    expired = ApiToken.issue("c", Role.VIEWER, expires_days=1, now=datetime.now(UTC) - timedelta(2))
    assert expired[0].state() == "expired"


def test_cli_prints_the_secret_once_and_lists_without_it(token_server: RunningServer) -> None:
    created = token_cli(token_server, "create", "--name", "cli-one", "--role", "viewer",
                        "--facility", "north", "--expires-days", "30")  # fmt: skip
    assert created.returncode == 0, created.stderr
    lines = created.stdout.strip().splitlines()
    secret = lines[-1]
    assert re.fullmatch(SECRET_PREFIX + r"[A-Za-z0-9_-]{43}", secret)
    assert secret not in "\n".join(lines[:-1])
    listed = token_cli(token_server, "list", "--json")
    assert listed.returncode == 0 and '"cli-one"' in listed.stdout
    assert secret not in listed.stdout and digest(secret) not in listed.stdout
    assert '"north"' in listed.stdout
    duplicate = token_cli(token_server, "create", "--name", "cli-one", "--role", "viewer")
    assert duplicate.returncode != 0 and "exists" in duplicate.stderr
    bad_role = token_cli(token_server, "create", "--name", "x", "--role", "superuser")
    assert bad_role.returncode != 0 and "viewer" in bad_role.stderr
    missing = token_cli(token_server, "revoke", "no-such-token")
    assert missing.returncode != 0
    assert token_cli(token_server, "revoke", "cli-one").returncode == 0
    with server_archive(token_server) as archive:
        created = archive.audit_records(action="token.create")
        revoked = archive.audit_records(action="token.revoke")
    assert any("cli-one" in r.detail and r.outcome == "success" for r in created)
    assert any(r.detail == "token cli-one" and r.outcome == "success" for r in revoked)
    assert any("no-such-token" in r.detail and r.outcome == "failure" for r in revoked)
    assert not any(secret in r.detail for r in [*created, *revoked])


def test_bearer_and_basic_then_revoked_while_running(token_server: RunningServer) -> None:
    """RFC 6750 Bearer and RFC 7617 Basic (any user name, the secret as password); a token
    created while the server runs works at once; a revoke applies within seconds."""
    secret = create_token(token_server, "live", "viewer")
    url = f"{token_server.dicomweb_url}/studies"
    assert httpx.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert httpx.get(url, headers={"Authorization": basic(secret)}).status_code == 200
    assert httpx.get(url, headers={"Authorization": basic(secret, user="")}).status_code == 200
    assert token_cli(token_server, "revoke", "live").returncode == 0
    deadline = time.monotonic() + 10
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code
        time.sleep(0.2)
    assert status == 401


def test_401_challenges_and_403_for_a_known_principal(token_server: RunningServer) -> None:
    """RFC 6750 3: 401 with WWW-Authenticate: Bearer without or with bad credentials;
    403 for a known principal lacking the permission; the secret never in the answer."""
    url = f"{token_server.dicomweb_url}/studies"
    none = httpx.get(url)
    assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
    wrong = SECRET_PREFIX + "A" * 43
    bad = httpx.get(url, headers={"Authorization": f"Bearer {wrong}"})
    assert bad.status_code == 401 and "invalid_token" in bad.headers["www-authenticate"]
    assert wrong not in bad.text and wrong not in str(bad.headers)
    uploader = create_token(token_server, "modality-gw", "uploader")
    refused = httpx.get(url, headers={"Authorization": f"Bearer {uploader}"})
    assert refused.status_code == 403 and "query" in refused.json()["detail"]
    assert uploader not in refused.text
    assert httpx.get(f"{token_server.http_url}/healthz").status_code == 200
    assert wrong not in token_server.log() and uploader not in token_server.log()
    metrics = httpx.get(f"{token_server.http_url}/metrics").text
    assert "noctis_http_requests_total" in metrics
    assert wrong not in metrics and uploader not in metrics and "noctis_" + "A" * 8 not in metrics


def test_startup_log_states_the_security_posture(token_server: RunningServer) -> None:
    line = next(ln for ln in token_server.log().splitlines() if "security: auth mode" in ln)
    assert "auth mode token" in line and "HTTP on 127.0.0.1" in line and "TLS off" in line


def _serve(tmp_path: Path, config: str) -> tuple[int, str]:
    import subprocess

    path = tmp_path / "c.toml"
    path.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n' + config)
    result = subprocess.run(
        [str(BIN / "noctis-pacs"), "serve", "--http-only", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return result.returncode, result.stderr


def test_serve_refuses_anonymous_access_from_the_network(tmp_path: Path) -> None:
    """Safe by default: a non-loopback HTTP address with auth.mode = "none" is refused,
    naming the setting to change; loopback is the default."""
    code, stderr = _serve(tmp_path, '[http]\nhost = "0.0.0.0"\nport = 1\n')
    assert code != 0
    assert "auth.allow_anonymous_remote" in stderr and "auth.mode" in stderr
    from storage.archive import Archive
    from tests.conftest import make_settings

    settings = make_settings(tmp_path / "data", db_url_for("sqlite", tmp_path / "data"))
    archive = Archive(settings)  # the refused start left no archive: now there is one
    archive.close()
    code, _ = _serve(tmp_path, '[http]\nhost = "0.0.0.0"\nport = 1\n')
    assert code != 0
    archive = Archive(settings)
    try:
        refusals = archive.audit_records(action="config.refused")
    finally:
        archive.close()
    assert refusals and "allow_anonymous_remote" in refusals[-1].detail


def test_allow_anonymous_remote_starts_on_purpose(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import free_port

    port = free_port()
    path = tmp_path / "c.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[http]\nhost = "0.0.0.0"\nport = {port}\n'
        "[auth]\nallow_anonymous_remote = true\n"
    )
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [str(BIN / "noctis-pacs"), "serve", "--http-only", "--config", str(path)],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        status = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and status != 200 and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz").status_code
            except httpx.HTTPError:
                time.sleep(0.2)
        assert status == 200, log.read_text()
        assert "anonymous HTTP access from the network" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=15)
