"""Signing in to the web application with an API token (``auth.mode = "token"``):
the HttpOnly SameSite=Strict session cookie, CSRF protection on state-changing
requests, sign-out, and an expired session returning to sign-in with the page's
place kept."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server
from tests.factory import make_instance
from tests.ui_support import browser, open_page, stow_all, wait_until


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("ui-auth")
    srv = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config='[auth]\nmode = "token"\n' + NO_LIMITS,
    )
    admin = create_token(srv, "ui-admin", "admin")
    stow_all(
        srv.http_url,
        [make_instance(patient_name=f"Secure^P{n}") for n in range(3)],
        Authorization=f"Bearer {admin}",
    )
    yield {"server": srv, "admin": admin}
    srv.stop()


def test_session_api_cookies_and_csrf(secured: dict[str, Any]) -> None:
    srv: RunningServer = secured["server"]
    url = f"{srv.http_url}/ui/session"
    assert httpx.get(url).json() == {"auth": "token", "signed_in": False}
    assert httpx.get(f"{srv.dicomweb_url}/studies").status_code == 401
    assert httpx.post(url, json={"token": "nope"}).status_code == 401
    form = httpx.post(
        url, content=f'{{"token": "{secured["admin"]}"}}', headers={"Content-Type": "text/plain"}
    )
    assert form.status_code == 415  # no sign-in from a cross-site form
    signed = httpx.post(url, json={"token": secured["admin"]})
    assert signed.status_code == 200 and signed.json()["name"] == "ui-admin"
    cookies = {c.split("=", 1)[0]: c for c in signed.headers.get_list("set-cookie")}
    session, csrf = cookies["noctis_session"], cookies["noctis_csrf"]
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    assert "HttpOnly" not in csrf and "SameSite=strict" in csrf
    assert secured["admin"] not in signed.text  # the secret only travels in the cookie

    with httpx.Client(base_url=srv.http_url, cookies=signed.cookies) as client:
        assert client.get("/ui/session").json()["signed_in"] is True
        assert client.get("/dicom-web/studies").status_code == 200
        item = {
            "patient_name": "Csrf^Test",
            "patient_id": "C1",
            "steps": [{"modality": "CT", "start_date": "20240115"}],
        }
        refused = client.post("/workflow/worklist", json=item)
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
        wrong = client.post("/workflow/worklist", json=item, headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        token = signed.cookies["noctis_csrf"]
        accepted = client.post("/workflow/worklist", json=item, headers={"X-CSRF-Token": token})
        assert accepted.status_code == 201
        out = client.delete("/ui/session", headers={"X-CSRF-Token": token})
        assert out.status_code == 200
        assert all(
            "Max-Age=0" in c or "expires=" in c.lower() for c in out.headers.get_list("set-cookie")
        )
    # A Bearer client is not cookie-authenticated: no CSRF token needed.
    bearer = httpx.post(
        f"{srv.http_url}/workflow/worklist",
        json=item,
        headers={"Authorization": f"Bearer {secured['admin']}"},
    )
    assert bearer.status_code == 201

    # The sign-in and the sign-out are on the audit trail (PS3.15 A.5.3.8), with who and where.
    def trail(action: str) -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{srv.http_url}/audit",
            params={"action": action, "principal": "ui-admin"},
            headers={"Authorization": f"Bearer {secured['admin']}"},
        )
        return answer.json()  # type: ignore[no-any-return]

    wait_for = time.monotonic() + 10
    while not (trail("login") and trail("logout")) and time.monotonic() < wait_for:
        time.sleep(0.2)
    login, logout = trail("login")[-1], trail("logout")[-1]
    assert login["outcome"] == "success" and login["client"] == "127.0.0.1"
    assert login["detail"] == "web application, API token"
    assert logout["principal"] == "ui-admin" and logout["outcome"] == "success"
    assert secured["admin"] not in login["detail"] + logout["detail"]


def test_sign_in_sign_out_and_expired_session_in_the_browser(
    secured: dict[str, Any], browser: Any
) -> None:
    """Sign in (back where the user was going), then the token expires under a half-filled
    form: submitting it asks to sign in again over the page, and the same request goes
    through afterwards; the form, the search and the page are kept. Sign-out ends it."""
    srv: RunningServer = secured["server"]
    lifetime = 8.0
    brief = create_token(
        srv, f"ui-brief-{time.monotonic_ns()}", "admin", expires_days=lifetime / 86400
    )
    born = time.monotonic()
    context, watch = open_page(browser)
    page = watch.page
    try:
        page.goto(f"{srv.http_url}/ui/#/worklist")
        page.wait_for_selector("form.signin")
        assert page.url.endswith("#/signin")
        page.fill("input[name=token]", "noctis_wrong")
        page.click("form.signin button[type=submit]")
        page.locator("form.signin .error:has-text('not valid')").wait_for()
        page.fill("input[name=token]", brief)
        page.click("form.signin button[type=submit]")
        page.wait_for_selector("form.worklist-form")  # back where the user was going
        assert page.url.endswith("#/worklist")
        assert page.locator("#who .name").inner_text().startswith("ui-brief")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["noctis_session"]["httpOnly"] is True
        assert cookies["noctis_session"]["sameSite"] == "Strict"
        assert page.evaluate("() => document.cookie").count("noctis_session") == 0
        assert "noctis_csrf" in page.evaluate("() => document.cookie")

        # A half-filled form when the token expires (an ID of its own: a rerun of this
        # test on the same server must not find the first attempt's row).
        patient_id = f"EXP{time.time_ns() % 10**9}"
        page.fill("input[name=patient_name]", "Expired^Session")
        page.fill("input[name=patient_id]", patient_id)
        page.fill("input[name=description]", "kept across sign-in")
        time.sleep(max(0.0, lifetime + 0.5 - (time.monotonic() - born)))
        page.click("form.worklist-form button[type=submit]")
        dialog = page.locator(".modal .signin-dialog")
        dialog.wait_for()
        assert "Session ended" in dialog.inner_text()
        assert page.input_value("input[name=patient_id]") == patient_id  # the page is still there
        watch.screenshot("session-ended", width=1280, height=800)
        expected = [e for e in watch.errors if "401" in e]
        assert expected and len(expected) == len(watch.errors), watch.errors
        watch.errors.clear()
        dialog.locator("input[name=token]").fill(secured["admin"])
        dialog.locator("button[type=submit]").click()
        dialog.wait_for(state="detached")
        # The refused request was sent again: the procedure exists, created by the new session.
        page.locator(f"table.worklist tr:has-text('{patient_id}')").wait_for()
        assert page.locator("#who .name").inner_text() == "ui-admin"
        assert page.url.endswith("#/worklist")

        # A search, then the session cookie disappears: sorting asks to sign in, then sorts
        # the same search.
        page.evaluate("() => { location.hash = '#/studies'; }")
        page.wait_for_selector("tr.study")
        page.fill("input[name=PatientName]", "Secure")
        page.press("input[name=PatientName]", "Enter")
        wait_until(page, "() => document.querySelector('.count')?.dataset.total === '3'")
        context.clear_cookies()
        page.click("th[data-key=PatientID] button")
        dialog.wait_for()
        watch.errors.clear()
        dialog.locator("input[name=token]").fill(secured["admin"])
        dialog.locator("button[type=submit]").click()
        page.wait_for_selector("th[data-key=PatientID][aria-sort=ascending]")
        wait_until(page, "() => document.querySelector('.count')?.dataset.total === '3'")
        assert page.input_value("input[name=PatientName]") == "Secure"
        watch.screenshot("signed-in", width=1280, height=800)

        page.click("#who button.signout")
        page.wait_for_selector("form.signin")
        assert "noctis_session" not in {c["name"] for c in context.cookies()}
    finally:
        context.close()
    assert watch.errors == [], watch.errors


def test_pages_follow_the_role(secured: dict[str, Any], browser: Any) -> None:
    """A viewer sees the study list (not live: no workflow permission) and the viewer, no
    upload, worklist or admin pages; an uploader lands on the upload page."""
    srv: RunningServer = secured["server"]
    viewer = create_token(srv, f"ui-viewer-{time.monotonic_ns()}", "viewer")
    uploader = create_token(srv, f"ui-uploader-{time.monotonic_ns()}", "uploader")
    context, watch = open_page(browser)
    page = watch.page
    try:
        page.goto(f"{srv.http_url}/ui/")
        page.fill("input[name=token]", viewer)
        page.click("form.signin button[type=submit]")
        page.wait_for_selector("tr.study")
        shown = page.locator("#nav a:visible").all_inner_texts()
        assert shown == ["Studies"], shown
        assert page.locator(".live").is_hidden()
        assert "(viewer)" in page.locator("#who").inner_text()
        page.evaluate("() => { location.hash = '#/admin'; }")
        page.locator("p.forbidden").wait_for()
        assert "admin permission" in page.locator("p.forbidden").inner_text()
        page.click("#who button.signout")
        page.wait_for_selector("form.signin")

        page.fill("input[name=token]", uploader)
        page.click("form.signin button[type=submit]")
        page.wait_for_selector(".dropzone")
        assert page.locator("#nav a:visible").all_inner_texts() == ["Upload"]
        watch.screenshot("uploader", width=1280, height=800)
    finally:
        context.close()
    assert watch.errors == [], watch.errors


def test_an_upload_waits_for_sign_in_when_the_session_ends(
    secured: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    """The session ends before an upload's batch is sent: the batch waits for the sign-in
    dialog and is sent again; nothing is counted as rejected."""
    srv: RunningServer = secured["server"]
    files = []
    for n in range(3):
        path = tmp_path / f"late{n}.dcm"
        path.write_bytes(make_instance(patient_name="Late^Upload", instance_number=n))
        files.append(str(path))
    context, watch = open_page(browser)
    page = watch.page
    try:
        page.goto(f"{srv.http_url}/ui/#/upload")
        page.fill("input[name=token]", secured["admin"])
        page.click("form.signin button[type=submit]")
        page.wait_for_selector(".dropzone")
        context.clear_cookies()
        page.set_input_files("input[type=file]:not([webkitdirectory])", files)
        dialog = page.locator(".modal .signin-dialog")
        dialog.wait_for()
        watch.errors.clear()  # the refused batch's 401
        dialog.locator("input[name=token]").fill(secured["admin"])
        dialog.locator("button[type=submit]").click()
        wait_until(page, "() => document.querySelector('main').dataset.upload === 'done'", 30)
        assert page.locator(".summary .stored").get_attribute("data-count") == "3"
        assert page.locator(".summary .rejected").get_attribute("data-count") == "0"
    finally:
        context.close()
    assert watch.errors == [], watch.errors
