"""The web application's sign-in with the OIDC provider: the authorization code flow
(OpenID Connect Core 3.1) with PKCE (RFC 7636, ``S256``), when ``[auth.oidc]`` names the
provider's ``authorization_url`` and ``token_url``.

``GET /ui/oidc/login?return=#/...`` makes a ``state`` and a PKCE ``code_verifier``
(random, 256 bits each), keeps them with the page to return to in a short-lived
cookie (``noctis_oidc``: HttpOnly, ``SameSite=Lax`` because the provider's redirect
back is a cross-site navigation, path ``/ui/oidc``, 10 minutes) and redirects to the
provider with the ``code_challenge``.  ``GET /ui/oidc/callback`` checks ``state``
against that cookie (constant time), exchanges the code at the token endpoint with
the verifier (and the client secret of a confidential client), checks the returned
token with the same authenticator every request goes through (signature against the
provider's JWKS, ``iss``, ``aud``, ``exp``: ``dicomweb.oidc``), and starts the session
(``dicomweb.session.start_session``: the JWT in the HttpOnly ``SameSite=Strict``
session cookie).  The session ends when the token expires; the page then asks to sign
in again.  Nothing is kept on the server, so any ``serve`` process finishes a flow
another began.  Failures return to the sign-in page with the reason
(``#/signin?oidc_error=...``); the provider's own error is passed on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from dicomweb.auth import AuthenticationFailed, Authenticator
from dicomweb.errors import error_response
from dicomweb.session import AuditSink, SessionAuthenticator, audit_session, start_session
from noctis_pacs.core.audit import AuditAction
from noctis_pacs.core.settings import OidcSettings

log = logging.getLogger("noctis.auth.oidc")

FLOW_COOKIE = "noctis_oidc"
FLOW_SECONDS = 600
_TIMEOUT = 10.0
_MAX_TOKEN_RESPONSE = 1 << 20
#: Pages the flow may return to: the web application's own hash routes.
_RETURN = re.compile(r"^#/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]{0,500}$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def challenge_of(verifier: str) -> str:
    """RFC 7636 4.2: ``BASE64URL(SHA256(ASCII(code_verifier)))``."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def enabled(oidc: OidcSettings, mode: str) -> bool:
    return mode == "oidc" and bool(oidc.authorization_url and oidc.token_url)


class FlowError(Exception):
    """Why a sign-in with the provider failed (shown on the sign-in page)."""


def _exchange(oidc: OidcSettings, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
    """The token endpoint's answer to the authorization code (blocking)."""
    client_id = oidc.client_id or oidc.audience
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    if oidc.client_secret:
        form["client_secret"] = oidc.client_secret
    request = urllib.request.Request(
        oidc.token_url,
        data=urllib.parse.urlencode(form).encode("ascii"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:  # noqa: S310
            body = answer.read(_MAX_TOKEN_RESPONSE)
    except urllib.error.HTTPError as exc:
        detail = ""
        try:
            error = json.loads(exc.read(8192))
            detail = f": {error.get('error', '')} {error.get('error_description', '')}".rstrip()
        except (ValueError, AttributeError, OSError):
            pass
        raise FlowError(f"the provider refused the code (HTTP {exc.code}{detail})") from None
    except (OSError, ValueError) as exc:
        raise FlowError(f"the provider's token endpoint did not answer ({exc})") from None
    try:
        tokens = json.loads(body)
    except ValueError:
        raise FlowError("the provider's token endpoint did not answer JSON") from None
    if not isinstance(tokens, dict):
        raise FlowError("the provider's token endpoint did not answer a JSON object")
    return tokens


def oidc_routes(
    *,
    oidc: OidcSettings,
    authenticator: Authenticator,
    root: str,
    active: bool,
    record: AuditSink | None = None,
) -> list[Route]:
    """``{root}/oidc/login`` and ``{root}/oidc/callback`` (404 unless ``active``)."""
    sessions = (
        authenticator
        if isinstance(authenticator, SessionAuthenticator)
        else SessionAuthenticator(authenticator)
    )
    callback_path = f"{root}/oidc/callback"
    cookie_path = f"{root}/oidc"

    def redirect_uri(request: Request) -> str:
        return str(request.base_url).rstrip("/") + callback_path

    def back_to_signin(reason: str, return_to: str = "#/") -> Response:
        query = urllib.parse.urlencode({"oidc_error": reason[:300], "return": return_to})
        response = RedirectResponse(f"{root}/#/signin?{query}", status_code=303)
        response.delete_cookie(FLOW_COOKIE, path=cookie_path)
        return response

    def login(request: Request) -> Response:
        if not active:
            return error_response(404, "sign-in with an OIDC provider is not configured")
        return_to = request.query_params.get("return", "#/")
        if not _RETURN.match(return_to) or return_to.startswith("#/signin"):
            return_to = "#/"
        state, verifier = _b64(secrets.token_bytes(32)), _b64(secrets.token_bytes(32))
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": oidc.client_id or oidc.audience,
                "redirect_uri": redirect_uri(request),
                "scope": oidc.scopes,
                "state": state,
                "code_challenge": challenge_of(verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in oidc.authorization_url else "?"
        response = RedirectResponse(f"{oidc.authorization_url}{separator}{query}", 303)
        flow = _b64(json.dumps({"s": state, "v": verifier, "r": return_to}).encode())
        response.set_cookie(
            FLOW_COOKIE,
            flow,
            max_age=FLOW_SECONDS,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=cookie_path,
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def callback(request: Request) -> Response:
        if not active:
            return error_response(404, "sign-in with an OIDC provider is not configured")
        params = request.query_params
        try:
            raw = request.cookies.get(FLOW_COOKIE, "")
            flow = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
            state, verifier, return_to = str(flow["s"]), str(flow["v"]), str(flow["r"])
        except (ValueError, KeyError, TypeError):
            return back_to_signin("the sign-in took too long or began elsewhere: try again")
        if not _RETURN.match(return_to):
            return_to = "#/"
        if not hmac.compare_digest(state.encode(), params.get("state", "").encode()):
            log.warning("OIDC callback with a state that does not match its sign-in")
            return back_to_signin("the answer does not belong to this sign-in (state)", return_to)
        if "error" in params:
            reason = f"the provider said {params['error']}"
            if params.get("error_description"):
                reason += f": {params['error_description']}"
            return back_to_signin(reason, return_to)
        code = params.get("code", "")
        if not code:
            return back_to_signin("the provider sent no authorization code", return_to)
        try:
            tokens = await run_in_threadpool(_exchange, oidc, code, verifier, redirect_uri(request))
        except FlowError as exc:
            return back_to_signin(str(exc), return_to)
        # The access token is what the API checks; an ID token issued for the same
        # audience serves when the access token is opaque or for another audience.
        for key in ("access_token", "id_token"):
            token = tokens.get(key)
            if not isinstance(token, str) or token.count(".") != 2:
                continue
            try:
                principal = await sessions.check_secret(request.scope, token)
            except AuthenticationFailed:
                principal = None
            if principal is not None:
                response = RedirectResponse(f"{root}/{return_to}", status_code=303)
                response.delete_cookie(FLOW_COOKIE, path=cookie_path)
                start_session(response, token, secure=request.url.scheme == "https")
                response.headers["Cache-Control"] = "no-store"
                log.info("OIDC sign-in: %s", principal.name)
                audit_session(record, AuditAction.LOGIN, principal, request, "OIDC provider")
                return response
        return back_to_signin(
            "the provider's token was not accepted (issuer, audience, signature or expiry)",
            return_to,
        )

    return [
        Route(f"{root}/oidc/login", login, methods=["GET"]),
        Route(callback_path, callback, methods=["GET"]),
    ]
