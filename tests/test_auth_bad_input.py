"""Bad credentials as an attacker or a broken client sends them: malformed
Authorization headers, oversized tokens, forged JWTs. Always 401 (or a 4xx the HTTP
layer gives for an oversized header), never 500; the server keeps serving."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator

import httpx
import pytest

from noctis_pacs.core.tokens import MAX_SECRET_LENGTH, SECRET_PREFIX
from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server
from tests.oidc_support import AUDIENCE, ISSUER, SigningKey, claims, jwks_server, unsigned

KEY = SigningKey.rsa("rsa-bad")


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("bad-input")
    jwks = base / "jwks.json"
    with jwks_server([KEY]) as idp:
        jwks.write_bytes(idp.document())
    config = (
        f'[auth]\nmode = "oidc"\n[auth.oidc]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
        f'jwks_file = "{jwks}"\nroles_claim = "resource_access.noctis-pacs.roles"\n' + NO_LIMITS
    )
    server = start_server(base / "data", db_url_for("sqlite", base / "data"), config=config)
    yield server
    server.stop()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BAD_HEADERS = [
    "",
    "Bearer",
    "Basic",
    "Basic ====",
    "Basic " + b64(b"no-colon-here"),
    "Basic " + b64(b"user:"),
    "Basic " + b64(b"\xff\xfe\xfd:\x80\x81"),
    "Basic not base64 at all",
    "Negotiate YIIBhwYGKwYBBQUCoIIBezCCAXeg",
    "Digest username=x, realm=y",
    "Bearer " + SECRET_PREFIX,
    "Bearer " + SECRET_PREFIX + "!" * 43,
    "Bearer a.b",
    "Bearer a.b.c",
    "Bearer ..",
    "Bearer eyJhbGciOiJSUzI1NiJ9.eyJ9.x",
    "Bearer eyJ%%%.eyJ%%%.x",
    "Bearer " + b64(b'{"alg":"RS256","kid":[1]}') + ".e30.x",
    "Bearer " + b64(b'{"alg":"RS256","kid":"rsa-bad"}') + "." + b64(b"[1,2]") + ".x",
    "Bearer " + "a" * (MAX_SECRET_LENGTH + 1),
    "Bearer " + SECRET_PREFIX + "a" * 8000,
    "Bearer " + ".".join(["eyJ" + "A" * 2000] * 3),
]


@pytest.mark.parametrize("header", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
def test_malformed_authorization_is_401(oidc_server: RunningServer, header: str) -> None:
    response = httpx.get(f"{oidc_server.dicomweb_url}/studies", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    secret_part = header.partition(" ")[2]
    if len(secret_part) > 8:
        assert secret_part not in response.text


def test_forged_jwts_are_401(oidc_server: RunningServer) -> None:
    """alg=none, HS256 keyed with the RSA public key (algorithm confusion), a token
    signed by another key, a header claiming a kid that does not exist."""
    good = claims(roles=["admin"])
    forged = [
        unsigned(good, {"alg": "none", "kid": KEY.kid}),
        unsigned(good, {"alg": "none"}),
        unsigned(good, {"alg": "HS256", "kid": KEY.kid}, KEY.public_pem()),
        unsigned(good, {"alg": "HS256"}, KEY.public_pem()),
        SigningKey(KEY.kid, "RS256", SigningKey.rsa("other").private).sign(good),
        SigningKey("no-such-kid", "RS256", KEY.private).sign(good),
        SigningKey.ec(KEY.kid).sign(good),
    ]
    for token in forged:
        response = httpx.get(
            f"{oidc_server.dicomweb_url}/studies", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, token[:40]
    ok = httpx.get(
        f"{oidc_server.dicomweb_url}/studies",
        headers={"Authorization": f"Bearer {KEY.sign(good)}"},
    )
    assert ok.status_code == 200


def test_huge_header_is_refused_and_the_server_keeps_serving(
    oidc_server: RunningServer,
) -> None:
    """A header larger than the HTTP layer accepts never reaches the application: the
    connection gets a 4xx or is closed; the next request is served normally."""
    request = (
        f"GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {'a' * 200_000}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", oidc_server.http_port), timeout=10) as sock:
        try:
            sock.sendall(request)
            answer = sock.recv(100)
        except OSError:
            answer = b""
    assert not answer.startswith(b"HTTP/1.1 5") and not answer.startswith(b"HTTP/1.1 2")
    secret = create_token(oidc_server, "after-abuse", "viewer")
    response = httpx.get(
        f"{oidc_server.dicomweb_url}/studies", headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 200
    assert oidc_server.alive() and "Traceback" not in oidc_server.log()
