"""The web application's sign-in with an OIDC provider: the authorization code flow with
PKCE (OpenID Connect Core 3.1, RFC 7636 S256) against a tiny provider run by the test
(its tokens signed by keys made here, tests/oidc_support.py), over the wire and in the
browser: state bound to the browser, the verifier checked by the provider, the session
cookie, refusals returning to sign-in with their reason."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server
from tests.oidc_support import AUDIENCE, ISSUER, SigningKey, claims
from tests.ui_support import browser, open_page

KEY = SigningKey.rsa("ui-oidc-1")


@dataclass
class Provider:
    """Authorization (auto-approving) and token endpoints, and the JWKS."""

    port: int = 0
    roles: list[str] = field(default_factory=lambda: ["technologist"])
    audience: str = AUDIENCE
    deny: bool = False
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorizations: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any] | None = None, **headers: str) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/certs":
                self._send(200, {"keys": [KEY.jwk()]})
                return
            if url.path != "/authorize":
                self._send(404, {})
                return
            state.authorizations.append(query)
            back = query["redirect_uri"]
            if state.deny:
                answer = {"error": "access_denied", "error_description": "the user said no"}
            else:
                code = secrets.token_urlsafe(16)
                state.codes[code] = query
                answer = {"code": code}
            answer["state"] = query.get("state", "")
            self._send(302, None, Location=f"{back}?{urllib.parse.urlencode(answer)}")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            asked = state.codes.pop(form.get("code", ""), None)  # a code is used once
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                asked is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != asked["redirect_uri"]
                or form.get("client_id") != asked["client_id"]
                or challenge != asked["code_challenge"]
            ):
                state.exchanges.append("refused")
                self._send(400, {"error": "invalid_grant", "error_description": "bad code"})
                return
            state.exchanges.append("ok")
            token = KEY.sign(claims(roles=state.roles, audience=state.audience))
            self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base: Path = tmp_path_factory.mktemp("ui-oidc")
    config = (
        f'[auth]\nmode = "oidc"\n[auth.oidc]\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
        f'jwks_url = "{provider.base}/certs"\nroles_claim = "resource_access.noctis-pacs.roles"\n'
        f'authorization_url = "{provider.base}/authorize"\ntoken_url = "{provider.base}/token"\n'
        'display_name = "Test SSO"\n' + NO_LIMITS
    )
    srv = start_server(base / "data", db_url_for("sqlite", base / "data"), config=config)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def provider_defaults(provider: Provider) -> None:
    provider.roles, provider.audience, provider.deny = ["technologist"], AUDIENCE, False


def begin(server: RunningServer, client: httpx.Client, back: str = "#/worklist") -> str:
    """The login redirect to the provider, followed to the callback URL it answers."""
    login = client.get("/ui/oidc/login", params={"return": back})
    assert login.status_code == 303
    to_provider = login.headers["location"]
    answer = httpx.get(to_provider)
    assert answer.status_code == 302
    callback: str = answer.headers["location"]
    assert callback.startswith(f"{server.http_url}/ui/oidc/callback?")
    return callback


def signin_error(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.startswith("/ui/#/signin?"), location
    return dict(urllib.parse.parse_qsl(location.split("?", 1)[1]))["oidc_error"]


def test_code_flow_with_pkce_starts_a_session(server: RunningServer, provider: Provider) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        login = client.get("/ui/oidc/login", params={"return": "#/worklist"})
        assert login.status_code == 303
        flow = next(c for c in login.headers.get_list("set-cookie") if c.startswith("noctis_oidc="))
        assert "HttpOnly" in flow and "SameSite=lax" in flow and "Path=/ui/oidc" in flow
        target = urllib.parse.urlsplit(login.headers["location"])
        assert f"{target.scheme}://{target.netloc}{target.path}" == f"{provider.base}/authorize"
        asked = dict(urllib.parse.parse_qsl(target.query))
        assert asked["response_type"] == "code" and asked["client_id"] == AUDIENCE
        assert asked["code_challenge_method"] == "S256"  # RFC 7636 4.3
        assert len(asked["code_challenge"]) == 43 and len(asked["state"]) >= 43
        assert asked["redirect_uri"] == f"{server.http_url}/ui/oidc/callback"
        assert "openid" in asked["scope"].split()

        callback = httpx.get(login.headers["location"]).headers["location"]
        done = client.get(callback)
        assert done.status_code == 303 and done.headers["location"] == "/ui/#/worklist"
        assert provider.exchanges[-1] == "ok"  # the provider checked the verifier
        cookies = {c.split("=", 1)[0]: c for c in done.headers.get_list("set-cookie")}
        assert (
            "HttpOnly" in cookies["noctis_session"]
            and "SameSite=strict" in cookies["noctis_session"]
        )
        me = client.get("/ui/session").json()
        assert me["signed_in"] and me["name"] == "dr.house" and me["role"] == "technologist"
        assert client.get("/workflow/worklist").status_code == 200
        assert client.get("/api/statistics").status_code == 403  # the role, not more
    # On the audit trail as a sign-in (PS3.15 A.5.3.8), read with an admin's API token.
    admin = create_token(server, "oidc-auditor", "admin")
    records = httpx.get(
        f"{server.http_url}/audit",
        params={"action": "login", "principal": "dr.house"},
        headers={"Authorization": f"Bearer {admin}"},
    ).json()
    assert records and records[-1]["detail"] == "web application, OIDC provider"
    assert records[-1]["outcome"] == "success"


def test_refusals_return_to_sign_in_with_their_reason(
    server: RunningServer, provider: Provider
) -> None:
    with httpx.Client(base_url=server.http_url) as client:
        callback = begin(server, client)
        forged = callback.replace("state=", "state=x")
        assert "state" in signin_error(client.get(forged))
        # A spent code (replayed into a new sign-in of this browser) is refused by the
        # provider: its verifier is not the one of the code's challenge.
        spent = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["code"]
        fresh = urllib.parse.urlsplit(begin(server, client))
        new_state = dict(urllib.parse.parse_qsl(fresh.query))["state"]
        replay = client.get("/ui/oidc/callback", params={"code": spent, "state": new_state})
        assert "refused the code" in signin_error(replay)
    with httpx.Client(base_url=server.http_url) as stranger:  # no flow cookie: not this browser
        assert "try again" in signin_error(
            stranger.get(begin(server, httpx.Client(base_url=server.http_url)))
        )
    provider.deny = True
    with httpx.Client(base_url=server.http_url) as client:
        assert "access_denied: the user said no" in signin_error(client.get(begin(server, client)))
    provider.deny = False
    provider.audience = "someone-else"
    with httpx.Client(base_url=server.http_url) as client:
        assert "not accepted" in signin_error(client.get(begin(server, client)))
        assert client.get("/ui/session").json()["signed_in"] is False


def test_sign_in_with_the_provider_in_the_browser(
    server: RunningServer, provider: Provider, browser: Any
) -> None:
    context, watch = open_page(browser)
    page = watch.page
    try:
        provider.deny = True
        page.goto(f"{server.http_url}/ui/#/worklist")
        page.click("a.oidc-login")
        page.locator("form.signin .error:has-text('access_denied')").wait_for()
        provider.deny = False
        page.click("a.oidc-login")  # still going back to the worklist
        page.wait_for_selector("form.worklist-form")
        assert page.url.endswith("/ui/#/worklist")
        assert page.locator("#who .name").inner_text() == "dr.house"
        assert page.locator("#nav a:visible").all_inner_texts() == ["Studies", "Upload", "Worklist"]
        watch.screenshot("oidc-signed-in", width=1280, height=800)
        page.click("#who button.signout")
        page.wait_for_selector("a.oidc-login")
        watch.screenshot("oidc-signin", width=1280, height=800)
    finally:
        context.close()
    assert watch.errors == [], watch.errors
