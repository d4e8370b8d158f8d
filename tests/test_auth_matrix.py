"""The authorization matrix, generated from the starlette route table itself: every
route x {anonymous, bad secret, expired token, each role}, over the wire against a
real server in ``auth.mode = "token"``.

``EXPECTED`` is this test's own statement of what each route needs; a route that the
application gains without an entry here fails ``test_every_route_has_an_expected_rule``
(and, until ``dicomweb/auth.py required_permission`` has its rule, it needs ``admin``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.routing import Mount, Route

from noctis_pacs.core.auth import ROLE_PERMISSIONS, Permission, Role
from noctis_pacs.core.tokens import SECRET_PREFIX
from tests.auth_support import NO_LIMITS, Identity, create_token, expired_token
from tests.conftest import RunningServer, db_url_for, make_settings, start_server

P = Permission
D = "/dicom-web"
STUDY = f"{D}/studies/{{study}}"
SERIES = f"{STUDY}/series/{{series}}"
INSTANCE = f"{SERIES}/instances/{{instance}}"

#: (method, route template) -> the permission it needs; None = public.
EXPECTED: dict[tuple[str, str], Permission | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    # The web application's page, configuration and assets; its API calls need theirs.
    ("GET", "/"): None,
    ("GET", "/ui"): None,
    ("GET", "/ui/"): None,
    ("GET", "/ui/config.json"): None,
    ("GET", "/ui/static/{path}"): None,
    ("GET", "/wado"): P.RETRIEVE,
    ("GET", f"{D}/studies"): P.QUERY,
    ("POST", f"{D}/studies"): P.STORE,
    ("GET", f"{D}/series"): P.QUERY,
    ("GET", f"{D}/instances"): P.QUERY,
    ("GET", STUDY): P.RETRIEVE,
    ("POST", STUDY): P.STORE,
    ("GET", f"{STUDY}/metadata"): P.RETRIEVE,
    ("GET", f"{STUDY}/series"): P.QUERY,
    ("GET", f"{STUDY}/instances"): P.QUERY,
    ("GET", SERIES): P.RETRIEVE,
    ("GET", f"{SERIES}/metadata"): P.RETRIEVE,
    ("GET", f"{SERIES}/instances"): P.QUERY,
    ("GET", INSTANCE): P.RETRIEVE,
    ("GET", f"{INSTANCE}/metadata"): P.RETRIEVE,
    ("GET", f"{INSTANCE}/frames/{{frames}}"): P.RETRIEVE,
    ("GET", f"{INSTANCE}/bulk/{{tag}}"): P.RETRIEVE,
    ("GET", f"{INSTANCE}/rendered"): P.RETRIEVE,
    ("GET", f"{INSTANCE}/frames/{{frames}}/rendered"): P.RETRIEVE,
    ("GET", f"{SERIES}/rendered"): P.RETRIEVE,
    ("GET", f"{STUDY}/rendered"): P.RETRIEVE,
    ("GET", f"{INSTANCE}/thumbnail"): P.RETRIEVE,
    ("GET", f"{INSTANCE}/frames/{{frames}}/thumbnail"): P.RETRIEVE,
    ("GET", f"{SERIES}/thumbnail"): P.RETRIEVE,
    ("GET", f"{STUDY}/thumbnail"): P.RETRIEVE,
    ("GET", f"{SERIES}/mpr"): P.RETRIEVE,
    ("GET", f"{SERIES}/mip"): P.RETRIEVE,
    ("POST", "/workflow/worklist"): P.WORKFLOW,
    ("GET", "/workflow/worklist"): P.WORKFLOW,
    ("GET", "/workflow/worklist/{item}"): P.WORKFLOW,
    ("PUT", "/workflow/worklist/{item}"): P.WORKFLOW,
    ("PATCH", "/workflow/worklist/{item}"): P.WORKFLOW,
    ("DELETE", "/workflow/worklist/{item}"): P.WORKFLOW,
    ("POST", "/workflow/worklist/{item}/cancel"): P.WORKFLOW,
    ("GET", "/workflow/studies"): P.WORKFLOW,
    ("GET", "/workflow/studies/{study}"): P.WORKFLOW,
    ("GET", "/workflow/mpps/{uid}"): P.WORKFLOW,
    ("GET", "/workflow/webhooks"): P.WORKFLOW,
    ("GET", "/workflow/events"): P.WORKFLOW,
    ("GET", "/audit"): P.ADMIN,
    # Issue 17: DICOMweb DELETE and the admin API.
    ("DELETE", STUDY): P.DELETE,
    ("DELETE", SERIES): P.DELETE,
    ("DELETE", INSTANCE): P.DELETE,
    ("GET", "/api/openapi.json"): P.ADMIN,
    ("GET", "/api/statistics"): P.ADMIN,
    ("DELETE", "/api/studies/{study}"): P.ADMIN,
    ("DELETE", "/api/studies/{study}/series/{series}"): P.ADMIN,
    ("DELETE", "/api/studies/{study}/series/{series}/instances/{instance}"): P.ADMIN,
    ("GET", "/api/remotes"): P.ADMIN,
    ("POST", "/api/remotes"): P.ADMIN,
    ("GET", "/api/remotes/{name}"): P.ADMIN,
    ("DELETE", "/api/remotes/{name}"): P.ADMIN,
    ("POST", "/api/remotes/{name}/echo"): P.ADMIN,
    ("GET", "/api/jobs"): P.ADMIN,
    ("POST", "/api/jobs/send"): P.ADMIN,
    ("GET", "/api/jobs/{job}"): P.ADMIN,
    ("POST", "/api/jobs/{job}/cancel"): P.ADMIN,
    ("POST", "/api/jobs/{job}/retry"): P.ADMIN,
    ("GET", "/api/routing/rules"): P.ADMIN,
    ("POST", "/api/routing/rules"): P.ADMIN,
    ("DELETE", "/api/routing/rules/{name}"): P.ADMIN,
    ("GET", "/api/routing/queue"): P.ADMIN,
    ("GET", "/api/routing/dead"): P.ADMIN,
    ("POST", "/api/routing/dead/retry"): P.ADMIN,
    ("POST", "/api/routing/dead/drop"): P.ADMIN,
    ("GET", "/api/studies/{study}/export"): P.ADMIN,
    ("GET", "/api/studies/{study}/series/{series}/export"): P.ADMIN,
    ("POST", "/api/studies/{study}/modify"): P.ADMIN,
    ("POST", "/api/jobs/deidentify"): P.ADMIN,
    ("GET", "/api/jobs/{job}/result"): P.ADMIN,
    ("POST", "/api/studies/{study}/series/{series}/modify"): P.ADMIN,
    ("POST", "/api/studies/{study}/series/{series}/instances/{instance}/modify"): P.ADMIN,
    ("PUT", "/api/studies/{study}/protected"): P.ADMIN,
    ("DELETE", "/api/studies/{study}/protected"): P.ADMIN,
    ("GET", "/api/retention/policies"): P.ADMIN,
    ("POST", "/api/retention/policies"): P.ADMIN,
    ("DELETE", "/api/retention/policies/{name}"): P.ADMIN,
    ("POST", "/api/retention/run"): P.ADMIN,
    ("GET", "/api/retention/protected"): P.ADMIN,
    ("GET", "/api/tokens"): P.ADMIN,
    ("POST", "/api/tokens"): P.ADMIN,
    ("DELETE", "/api/tokens/{name}"): P.ADMIN,
    ("GET", "/ui/session"): None,
    ("POST", "/ui/session"): None,
    ("DELETE", "/ui/session"): None,
    # The OIDC sign-in (only with [auth.oidc] authorization_url / token_url).
    ("GET", "/ui/oidc/login"): None,
    ("GET", "/ui/oidc/callback"): None,
}

#: Values for path parameters: resources that do not exist (the matrix is about who
#: gets past authorization, not about what is found).
PARAMS = {"frames": "1", "tag": "7FE00010", "name": "NOSUCHREMOTE", "job": "424242"}
MISSING_UID = "1.2.826.0.1.3680043.10.999.424242"


def route_table(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, template) of every route the application declares."""
    from dicomweb.app import create_app
    from noctis_pacs.core.metrics import build_metrics
    from storage.archive import Archive

    data = tmp_path / "routes"
    settings = make_settings(data, db_url_for("sqlite", data))
    archive = Archive(settings)
    try:
        app = create_app(settings=settings, archive=archive, metrics=build_metrics())
    finally:
        archive.close()
    table: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Route):
            methods = sorted((route.methods or {"GET"}) - {"HEAD"})
            table += [(method, route.path) for method in methods]
        elif isinstance(route, Mount):
            table.append(("GET", route.path.rstrip("/") + "/{path}"))
    return table


def concrete(template: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PARAMS.get(m.group(1), MISSING_UID), template)


@pytest.fixture(scope="module")
def matrix_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("matrix")
    server = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config='[auth]\nmode = "token"\n' + NO_LIMITS,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def identities(matrix_server: RunningServer) -> list[Identity]:
    out = [
        Identity("anonymous", {}),
        Identity("bad secret", {"Authorization": f"Bearer {SECRET_PREFIX}{'x' * 43}"}),
        Identity(
            "expired token",
            {"Authorization": f"Bearer {expired_token(matrix_server, 'matrix-expired')}"},
        ),
    ]
    for role in Role:
        secret = create_token(matrix_server, f"matrix-{role.value}", role.value)
        out.append(Identity(role.value, {"Authorization": f"Bearer {secret}"}, role.value))
    return out


def test_every_route_has_an_expected_rule(tmp_path: Path) -> None:
    table = route_table(tmp_path)
    missing = [entry for entry in table if entry not in EXPECTED]
    assert not missing, (
        f"routes without an expected permission: {missing}; decide each one's permission in "
        "dicomweb/auth.py required_permission and add it to EXPECTED here"
    )
    from dicomweb.auth import required_permission

    for (method, template), permission in EXPECTED.items():
        assert required_permission(method, concrete(template)) == permission, template


def expected_status(permission: Permission | None, identity: Identity) -> str:
    if permission is None:
        return "passes"
    if identity.role is None:
        return "401"
    return "passes" if permission in ROLE_PERMISSIONS[Role(identity.role)] else "403"


def observed(status: int) -> str:
    return str(status) if status in (401, 403) else "passes"


def test_authorization_matrix(
    matrix_server: RunningServer, identities: list[Identity], tmp_path: Path
) -> None:
    """Every route x every identity: 401 for anonymous / bad / expired credentials, 403
    for a role without the permission, through to the handler otherwise (never 5xx)."""
    failures: list[str] = []
    cells = 0
    with httpx.Client(base_url=matrix_server.http_url, timeout=30) as client:
        for method, template in route_table(tmp_path):
            permission = EXPECTED.get((method, template), P.ADMIN)
            for identity in identities:
                with client.stream(method, concrete(template), headers=identity.headers) as r:
                    status = r.status_code
                    challenge = r.headers.get("www-authenticate", "")
                cells += 1
                want = expected_status(permission, identity)
                if observed(status) != want or status >= 500:
                    failures.append(
                        f"{method} {template} as {identity.label}: {status}, want {want}"
                    )
                if status == 401 and not challenge.startswith("Bearer"):
                    failures.append(f"{method} {template}: 401 without a Bearer challenge")
    assert not failures, "\n".join(failures)
    assert cells >= len(EXPECTED) * len(identities)
    assert matrix_server.alive()
