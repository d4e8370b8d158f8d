"""The one place that decides what a request needs (auth seam; anonymous full access now)."""

from __future__ import annotations

import pytest

from dicomweb.auth import required_permission
from noctis_pacs.core.auth import ANONYMOUS, Permission

STORE, QUERY, RETRIEVE = Permission.STORE, Permission.QUERY, Permission.RETRIEVE
DELETE, WORKFLOW, ADMIN = Permission.DELETE, Permission.WORKFLOW, Permission.ADMIN


@pytest.mark.parametrize(
    ("method", "path", "permission"),
    [
        ("GET", "/dicom-web/studies", QUERY),
        ("GET", "/dicom-web/studies/1.2/series", QUERY),
        ("POST", "/dicom-web/studies", STORE),
        ("GET", "/dicom-web/studies/1.2", RETRIEVE),
        ("GET", "/dicom-web/studies/1.2/series/3.4/mpr", RETRIEVE),
        ("DELETE", "/dicom-web/studies/1.2", DELETE),
        ("GET", "/wado", RETRIEVE),
        ("GET", "/workflow/worklist", WORKFLOW),
        ("POST", "/workflow/worklist", WORKFLOW),
        ("GET", "/workflowx", ADMIN),
        ("GET", "/api/tokens", ADMIN),
        ("POST", "/api/remotes", ADMIN),
        ("GET", "/audit", ADMIN),
        ("GET", "/audit/verify", ADMIN),
        ("GET", "/no-such-route", ADMIN),
        ("GET", "/", None),
        ("GET", "/ui/", None),
        ("GET", "/ui/static/app.js", None),
        ("GET", "/uix", ADMIN),
        ("GET", "/readyz", None),
        ("GET", "/healthz", None),
        ("GET", "/metrics", None),
        ("OPTIONS", "/dicom-web/studies", None),
    ],
)
def test_every_route_has_its_permission(
    method: str, path: str, permission: Permission | None
) -> None:
    assert required_permission(method, path) == permission
    if permission:
        assert ANONYMOUS.may(permission)
