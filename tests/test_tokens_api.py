"""API tokens over HTTP (``/api/tokens``) against a real server in ``auth.mode = "token"``:
admins only, the list never carries a secret, the secret is answered once and works at
once, a revoked token is refused, bad requests get their reason, every create and
revoke is on the audit trail as the CLI's are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from noctis_pacs.core.tokens import SECRET_PREFIX
from tests.auth_support import NO_LIMITS, create_token, token_cli
from tests.conftest import RunningServer, db_url_for, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base: Path = tmp_path_factory.mktemp("tokens-api")
    srv = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config='[auth]\nmode = "token"\ntoken_cache_seconds = 0\n' + NO_LIMITS,
    )
    srv.extra["admin"] = create_token(srv, "boss", "admin")
    yield srv
    srv.stop()


def client(srv: RunningServer, secret: str) -> httpx.Client:
    return httpx.Client(
        base_url=srv.http_url, headers={"Authorization": f"Bearer {secret}"}, timeout=20
    )


def test_create_list_use_and_revoke(server: RunningServer) -> None:
    with client(server, str(server.extra["admin"])) as admin:
        made = admin.post(
            "/api/tokens",
            json={"name": "reader-1", "role": "viewer", "facilities": ["North"], "expires_days": 2},
        )
        assert made.status_code == 201, made.text
        assert made.headers["cache-control"] == "no-store"
        body = made.json()
        secret = body.pop("secret")
        assert secret.startswith(SECRET_PREFIX) and len(secret) > 40
        assert body["role"] == "viewer" and body["facilities"] == ["North"]
        assert body["state"] == "active" and body["expires_at"]

        listed = admin.get("/api/tokens")
        assert listed.status_code == 200
        assert secret not in listed.text and "digest" not in listed.text
        row = next(t for t in listed.json() if t["name"] == "reader-1")
        assert row == body

        # The secret works at once, with the role it was given.
        with client(server, secret) as reader:
            assert reader.get("/dicom-web/studies").status_code in (200, 204)
            assert reader.get("/api/tokens").status_code == 403
            assert (
                reader.post("/api/tokens", json={"name": "x", "role": "admin"}).status_code == 403
            )

        # The CLI sees the same token (one store).
        cli = token_cli(server, "list", "--json")
        assert '"name": "reader-1"' in cli.stdout and secret not in cli.stdout

        assert admin.delete("/api/tokens/reader-1").status_code == 204
        with client(server, secret) as reader:
            assert reader.get("/dicom-web/studies").status_code == 401
        row = next(t for t in admin.get("/api/tokens").json() if t["name"] == "reader-1")
        assert row["state"] == "revoked" and row["revoked_at"]
        assert admin.delete("/api/tokens/reader-1").status_code == 404


def test_refusals_carry_their_reason(server: RunningServer) -> None:
    with client(server, str(server.extra["admin"])) as admin:
        cases = [
            ({"name": "r2", "role": "emperor"}, 400, "unknown role"),
            ({"name": "bad name!", "role": "viewer"}, 400, "token name"),
            ({"name": "r2"}, 400, "required"),
            ({"name": "r2", "role": "viewer", "expires_days": -1}, 400, "expires_days"),
            ({"name": "r2", "role": "viewer", "expires_days": True}, 400, "expires_days"),
            ({"name": "r2", "role": "viewer", "facilities": "North"}, 400, "facilities"),
            ({"name": "r2", "role": "viewer", "secret": "mine"}, 400, "unknown field"),
            ({"name": "boss", "role": "admin"}, 409, "exists"),
        ]
        for body, status, words in cases:
            answer = admin.post("/api/tokens", json=body)
            assert answer.status_code == status, (body, answer.text)
            assert words in answer.json()["detail"], (body, answer.text)
        not_json = admin.post(
            "/api/tokens", content=b"name=r2", headers={"Content-Type": "text/plain"}
        )
        assert not_json.status_code == 400
        assert admin.post("/api/tokens", json=["r2"]).status_code == 400
    anonymous = httpx.post(f"{server.http_url}/api/tokens", json={"name": "a", "role": "admin"})
    assert anonymous.status_code == 401


def test_create_and_revoke_are_audited_like_the_cli(server: RunningServer) -> None:
    with client(server, str(server.extra["admin"])) as admin:
        assert (
            admin.post("/api/tokens", json={"name": "audited", "role": "uploader"}).status_code
            == 201
        )
        assert (
            admin.post("/api/tokens", json={"name": "audited", "role": "uploader"}).status_code
            == 409
        )
        assert admin.delete("/api/tokens/audited").status_code == 204
        created = admin.get("/audit", params={"action": "token.create"}).json()
        revoked = admin.get("/audit", params={"action": "token.revoke"}).json()
    mine = [r for r in created if "audited" in r["detail"]]
    assert [r["outcome"] for r in mine] == ["success", "failure"]
    assert mine[0]["principal"] == "boss" and mine[0]["client"] == "127.0.0.1"
    assert "role uploader, all facilities, expires never" in mine[0]["detail"]
    assert any(r["detail"] == "token audited" and r["outcome"] == "success" for r in revoked)
    for record in created + revoked:
        assert SECRET_PREFIX not in record["detail"]


def test_openapi_describes_the_token_routes(server: RunningServer) -> None:
    with client(server, str(server.extra["admin"])) as admin:
        document = admin.get("/api/openapi.json").json()
    assert set(document["paths"]["/api/tokens"]) == {"get", "post"}
    assert set(document["paths"]["/api/tokens/{name}"]) == {"delete"}
    assert "/api/statistics" in document["paths"]
