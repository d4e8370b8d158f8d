"""OIDC bearer tokens against a real server: keys generated here, a JWKS served by the
test, roles and facilities from configurable claims; API tokens keep working."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server
from tests.oidc_support import (
    AUDIENCE,
    ISSUER,
    JwksServer,
    SigningKey,
    claims,
    jwks_server,
    unsigned,
)

RSA_KEY = SigningKey.rsa("rsa-1")
EC_KEY = SigningKey.ec("ec-1")
ROTATED = SigningKey.rsa("rsa-2")


@pytest.fixture(scope="module")
def idp() -> Iterator[JwksServer]:
    with jwks_server([RSA_KEY, EC_KEY]) as server:
        yield server


@pytest.fixture(scope="module")
def oidc_server(
    idp: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("oidc")
    config = (
        f'[auth]\nmode = "oidc"\n[auth.oidc]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
        f'jwks_url = "{idp.url}"\nroles_claim = "resource_access.noctis-pacs.roles"\n'
        "jwks_min_refresh_seconds = 0\nleeway_seconds = 10\n" + NO_LIMITS
    )
    server = start_server(base / "data", db_url_for("sqlite", base / "data"), config=config)
    yield server
    server.stop()


def status(server: RunningServer, token: str, path: str = "/dicom-web/studies") -> int:
    response = httpx.get(server.http_url + path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500
    return response.status_code


def test_valid_tokens_rs256_and_es256_with_roles_from_claims(oidc_server: RunningServer) -> None:
    viewer = RSA_KEY.sign(claims(roles=["viewer"]))
    assert status(oidc_server, viewer) == 200
    assert status(oidc_server, EC_KEY.sign(claims(roles=["viewer"]))) == 200
    assert status(oidc_server, viewer, "/workflow/worklist") == 403
    technologist = EC_KEY.sign(claims(roles=["technologist", "unrelated-role"]))
    assert status(oidc_server, technologist, "/workflow/worklist") == 200
    no_role = RSA_KEY.sign(claims(roles=["nurse"]))
    assert status(oidc_server, no_role) == 403  # known principal, no permission


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("wrong issuer", lambda: RSA_KEY.sign(claims(roles=["admin"], issuer="https://evil"))),
        ("wrong audience", lambda: RSA_KEY.sign(claims(roles=["admin"], audience="other"))),
        ("expired", lambda: RSA_KEY.sign(claims(roles=["admin"], lifetime=-60))),
        (
            "not yet valid",
            lambda: RSA_KEY.sign(claims(roles=["admin"], not_before=time.time() + 600)),
        ),
        ("no exp", lambda: RSA_KEY.sign({"iss": ISSUER, "aud": AUDIENCE, "sub": "x"})),
        (
            "signed by another key under a known kid",
            lambda: SigningKey("rsa-1", "RS256", SigningKey.rsa("x").private).sign(
                claims(roles=["admin"])
            ),
        ),
        ("alg none", lambda: unsigned(claims(roles=["admin"]), {"alg": "none", "kid": "rsa-1"})),
        (
            "HS256 keyed with the public key",
            lambda: unsigned(
                claims(roles=["admin"]), {"alg": "HS256", "kid": "rsa-1"}, RSA_KEY.public_pem()
            ),
        ),
        (
            "ES256 header on an RSA key",
            lambda: unsigned(claims(roles=["admin"]), {"alg": "ES256", "kid": "rsa-1"}),
        ),
    ],
)
def test_invalid_tokens_get_401(oidc_server: RunningServer, case: str, token: object) -> None:
    assert callable(token)
    response = httpx.get(
        f"{oidc_server.dicomweb_url}/studies", headers={"Authorization": f"Bearer {token()}"}
    )
    assert response.status_code == 401, case
    assert "invalid_token" in response.headers["www-authenticate"]


def test_unknown_kid_then_rotated_jwks(oidc_server: RunningServer, idp: JwksServer) -> None:
    """A token from a key the server has not seen is refused until the provider publishes
    it; then the JWKS is re-read on the unknown kid and the token is accepted."""
    token = ROTATED.sign(claims(roles=["radiologist"]))
    assert status(oidc_server, token) == 401
    before = idp.fetches
    idp.keys = [ROTATED, EC_KEY]
    assert status(oidc_server, token) == 200
    assert idp.fetches > before
    assert status(oidc_server, RSA_KEY.sign(claims(roles=["viewer"]))) == 401  # retired key


def test_api_tokens_work_in_oidc_mode(oidc_server: RunningServer) -> None:
    secret = create_token(oidc_server, "oidc-script", "viewer")
    assert status(oidc_server, secret) == 200
    assert secret not in oidc_server.log()
