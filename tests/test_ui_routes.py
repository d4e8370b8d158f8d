"""The web application's routes (dicomweb/ui.py) against the real server: redirects,
the page and its assets from the package, the Content-Security-Policy, permissions."""

from __future__ import annotations

import re

import httpx

from dicomweb.auth import required_permission
from dicomweb.ui import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.conftest import RunningServer


def test_root_and_ui_redirect_to_the_page(server: RunningServer) -> None:
    for path in ("/", "/ui"):
        response = httpx.get(server.http_url + path, follow_redirects=False)
        assert response.status_code == 302
        assert response.headers["location"] == "/ui/"


def test_page_has_a_strict_csp_and_no_inline_script_or_style(server: RunningServer) -> None:
    response = httpx.get(f"{server.http_url}/ui/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    html = response.text
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html) is None, "inline script"
    assert " style=" not in html and "<style" not in html


def test_assets_come_from_the_package_with_the_csp(server: RunningServer) -> None:
    for name in ("app.js", "api.js", "studies.js", "app.css", "favicon.svg"):
        response = httpx.get(f"{server.http_url}/ui/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (STATIC_DIR / name).read_bytes()
        assert "content-security-policy" in response.headers
    js = httpx.get(f"{server.http_url}/ui/static/app.js")
    assert "javascript" in js.headers["content-type"]
    missing = httpx.get(f"{server.http_url}/ui/static/nope.js")
    assert missing.status_code == 404
    outside = httpx.get(f"{server.http_url}/ui/static/..%2F..%2Fui.py")
    assert outside.status_code == 404


def test_no_asset_sets_inline_styles_or_loads_from_elsewhere() -> None:
    """CSP style-src 'self': style attributes set through HTML would be refused; the
    scripts use classes or the CSSOM. Nothing is fetched from another origin."""
    for path in STATIC_DIR.iterdir():
        if path.suffix not in (".js", ".html", ".css"):
            continue
        source = path.read_text()
        assert "setAttribute('style'" not in source and 'setAttribute("style"' not in source
        assert "innerHTML" not in source, f"{path.name} builds markup from strings"
        assert re.search(r"https?://(?!www\.w3\.org)", source) is None, f"{path.name} names a URL"


def test_config_names_the_viewers(server: RunningServer) -> None:
    body = httpx.get(f"{server.http_url}/ui/config.json").json()
    assert body == {
        "dicomweb_root": "/dicom-web",
        "ohif_url": "",
        "weasis": True,
        "oidc_login": False,
        "oidc_name": "single sign-on",
    }
    assert httpx.get(f"{server.http_url}/ui/oidc/login").status_code == 404  # not configured


def test_ui_routes_are_public_and_apis_are_not() -> None:
    """The one permission table: the page is public, the data it loads is not."""
    for path in ("/", "/ui", "/ui/", "/ui/static/app.js", "/ui/config.json"):
        assert required_permission("GET", path) is None
    assert required_permission("GET", "/dicom-web/studies") == "query"
    assert required_permission("GET", "/uix") == "admin"  # not a /ui route: denied by default


def test_stow_warnings_name_each_part_and_its_outcome(server: RunningServer) -> None:
    """PS3.18 10.5.3: the response cannot tell an instance already held from a new one;
    the Warning headers say it per part (the upload page's summary reads them)."""
    from tests.factory import make_instance
    from tests.ui_support import multipart

    data = make_instance()
    body, content_type = multipart([data, data, b"not dicom at all" * 20])
    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=body,
        headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
    )
    assert response.status_code == 202
    warnings = response.headers.get_list("warning")
    # Parts are stored concurrently: either copy may be the one found already stored.
    already = [w for w in warnings if " already stored: " in w]
    assert len(already) == 1 and already[0].startswith(
        ('299 noctis "part 1 ', '299 noctis "part 2 ')
    )
    assert any(w.startswith('299 noctis "part 3 failed: ') for w in warnings), warnings
    assert len(warnings) == 2, warnings


def test_config_carries_the_ohif_url_and_the_ui_can_be_off(server_factory) -> None:  # type: ignore[no-untyped-def]
    srv = server_factory('[ui]\nohif_url = "https://ohif.example.org/"\nweasis = false\n')
    body = httpx.get(f"{srv.http_url}/ui/config.json").json()
    assert body["ohif_url"] == "https://ohif.example.org" and body["weasis"] is False
    off = server_factory("[ui]\nenabled = false\n")
    assert httpx.get(f"{off.http_url}/ui/").status_code == 404
