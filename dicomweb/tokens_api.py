"""API tokens over HTTP for admins: ``GET /api/tokens``, ``POST /api/tokens``,
``DELETE /api/tokens/{name}`` (JSON), as ``noctis-pacs token list | create | revoke``.

Every route needs ``Permission.ADMIN`` (``/api`` in ``dicomweb.auth.required_permission``).
The list never carries a secret (the index keeps only its SHA-256 digest); ``POST``
answers the new secret once (``Cache-Control: no-store``) and it is never shown again.
Creation and revocation, refused or done, go to the audit trail as the CLI's do
(``token.create`` / ``token.revoke``, the detail naming the token, its role, scope and
expiry), with the HTTP principal and client address instead of the OS user.

The routes' OpenAPI entries (``TOKEN_PATHS``) join the admin API's description
(``dicomweb.admin_openapi``) in ``openapi_document``, served at ``/api/openapi.json``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dicomweb import admin_openapi
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotFound, error_response
from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from noctis_pacs.core.auth import Role, UnknownRoleError, parse_role
from noctis_pacs.core.tokens import ApiToken, TokenNameError, iso
from storage.archive import Archive, TokenExistsError

TOKENS_ROOT = "/api/tokens"
MAX_BODY = 64 * 1024
#: The longest validity a token created over HTTP may ask for (100 years).
MAX_EXPIRES_DAYS = 36500.0
MAX_FACILITIES = 100
_FIELDS = frozenset({"name", "role", "facilities", "expires_days"})


def public(token: ApiToken) -> dict[str, Any]:
    """What the API shows of a token: never its secret (nor its digest)."""
    return {
        "name": token.name,
        "role": token.role.value,
        "facilities": list(token.facilities),
        "state": token.state(),
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
    }


def _parse(raw: dict[str, Any]) -> tuple[ApiToken, str]:
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    name, role_name = raw.get("name"), raw.get("role")
    if not isinstance(name, str) or not isinstance(role_name, str):
        raise BadRequest("name and role (strings) are required")
    facilities = raw.get("facilities", [])
    if (
        not isinstance(facilities, list)
        or len(facilities) > MAX_FACILITIES
        or not all(isinstance(f, str) and 0 < len(f.strip()) <= 64 for f in facilities)
    ):
        raise BadRequest(f"facilities must be a list of at most {MAX_FACILITIES} names")
    days = raw.get("expires_days")
    if days is not None and (
        isinstance(days, bool)
        or not isinstance(days, int | float)
        or not math.isfinite(days)
        or not 0 < days <= MAX_EXPIRES_DAYS
    ):
        raise BadRequest(f"expires_days must be a number of days from 0 to {MAX_EXPIRES_DAYS:g}")
    try:
        role = parse_role(role_name)
        return ApiToken.issue(
            name.strip(),
            role,
            facilities=tuple(dict.fromkeys(f.strip() for f in facilities)),
            expires_days=None if days is None else float(days),
        )
    except (UnknownRoleError, TokenNameError) as exc:
        raise BadRequest(str(exc)) from None


def _describe(token: ApiToken) -> str:
    scope = ", ".join(token.facilities) or "all facilities"
    return (
        f"token {token.name}: role {token.role.value}, {scope}, "
        f"expires {iso(token.expires_at) or 'never'}"
    )


class TokensApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def _audit(self, request: Request, action: AuditAction, outcome: str, detail: str) -> None:
        self.archive.audit(
            AuditEvent.of(
                action,
                principal_of(request),
                client=request.client.host if request.client else "",
                outcome=outcome,
                detail=detail,
            )
        )

    def list(self, request: Request) -> Response:
        tokens = self.archive.tokens.list()
        return JSONResponse([public(t) for t in tokens], headers={"Cache-Control": "no-store"})

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"request body larger than {MAX_BODY} bytes")
        if "json" not in request.headers.get("content-type", ""):
            raise BadRequest("the body must be application/json")
        try:
            body = json.loads(raw or b"null")
        except ValueError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object: {"name": ..., "role": ...}')
        try:
            token, secret = _parse(body)
        except BadRequest as exc:
            await run_in_threadpool(
                self._audit, request, AuditAction.TOKEN_CREATE, AuditOutcome.FAILURE, exc.detail
            )
            raise
        try:
            await run_in_threadpool(self.archive.tokens.create, token)
        except TokenExistsError as exc:
            await run_in_threadpool(
                self._audit, request, AuditAction.TOKEN_CREATE, AuditOutcome.FAILURE, str(exc)
            )
            return error_response(409, str(exc))
        await run_in_threadpool(
            self._audit, request, AuditAction.TOKEN_CREATE, AuditOutcome.SUCCESS, _describe(token)
        )
        return JSONResponse(
            {**public(token), "secret": secret},
            status_code=201,
            headers={"Cache-Control": "no-store", "Location": f"{TOKENS_ROOT}/{token.name}"},
        )

    def revoke(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        revoked = self.archive.tokens.revoke(name)
        outcome = AuditOutcome.SUCCESS if revoked else AuditOutcome.FAILURE
        self._audit(request, AuditAction.TOKEN_REVOKE, outcome, f"token {name[:64]}")
        if not revoked:
            raise NotFound(f"no active token named {name[:64]!r}")
        return Response(status_code=204)


def token_routes(archive: Archive) -> list[BaseRoute]:
    api = TokensApi(archive)
    return [
        Route(TOKENS_ROOT, api.list, methods=["GET"]),
        Route(TOKENS_ROOT, api.create, methods=["POST"]),
        Route(f"{TOKENS_ROOT}/{{name}}", api.revoke, methods=["DELETE"]),
    ]


# -- OpenAPI ----------------------------------------------------------------------------

_TOKEN = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
        "role": {"enum": [r.value for r in Role]},
        "facilities": {"type": "array", "items": {"type": "string"}},
        "state": {"enum": ["active", "expired", "revoked"]},
        "created_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "revoked_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
_NEW_TOKEN = {
    "type": "object",
    "required": ["name", "role"],
    "properties": {
        "name": _TOKEN["properties"]["name"],  # type: ignore[index]
        "role": _TOKEN["properties"]["role"],  # type: ignore[index]
        "facilities": {"type": "array", "items": {"type": "string"}, "default": []},
        "expires_days": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_EXPIRES_DAYS},
    },
}
_ERROR = {"$ref": "#/components/responses/Error"}


def _op(summary: str, responses: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return admin_openapi._op(summary, responses, **kwargs)


TOKEN_PATHS: dict[str, Any] = {
    TOKENS_ROOT: {
        "get": _op(
            "API tokens (never their secrets)",
            {"200": admin_openapi._json({"type": "array", "items": _TOKEN})},
        ),
        "post": _op(
            "Create a token: the answer carries its secret, once",
            {
                "201": admin_openapi._json(
                    {
                        "allOf": [
                            _TOKEN,
                            {"type": "object", "properties": {"secret": {"type": "string"}}},
                        ]
                    },
                    "Created",
                ),
                "409": _ERROR,
            },
            body=_NEW_TOKEN,
        ),
    },
    f"{TOKENS_ROOT}/{{name}}": {
        "delete": _op(
            "Revoke a token (refused within auth.token_cache_seconds)",
            {"204": {"description": "Revoked"}, "404": _ERROR},
            params=[admin_openapi._param("name", {"type": "string"})],
        )
    },
}


def openapi_document() -> dict[str, Any]:
    """The admin API's description with the token routes added."""
    document = admin_openapi.openapi_document()
    document["paths"] = {**document["paths"], **TOKEN_PATHS}
    info = document["info"]
    info["description"] = f"{info['description']} API tokens: list, create, revoke."
    return document


def openapi_route() -> Route:
    """``GET /api/openapi.json`` with the token routes: declared before the admin API's
    own route, which it shadows."""

    def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    return Route("/api/openapi.json", openapi, methods=["GET"])
