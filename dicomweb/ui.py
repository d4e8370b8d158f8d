"""The archive's own web application: ``/ui/`` (and ``/`` redirecting there).

One HTML page and plain JavaScript modules and CSS shipped inside this package
(``dicomweb/ui/static``, package data): no build step, nothing fetched from
elsewhere at run time.  The page loads everything through the public APIs
(QIDO-RS, WADO-RS rendered / thumbnails / MPR / MIP, STOW-RS, ``/workflow``),
which enforce their own permissions; the page and its assets are public
(``dicomweb.auth.required_permission``).

Every ``/ui`` response carries a strict Content-Security-Policy: scripts,
styles, images and connections from this origin only, no inline script and
no inline style attributes (the page styles through CSS classes and the CSSOM).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dicomweb.auth import UI_ROOT, Authenticator
from dicomweb.media import DICOMWEB_ROOT
from dicomweb.oidc_login import enabled, oidc_routes
from dicomweb.session import AuditSink, session_routes
from noctis_pacs.core.settings import Settings

STATIC_DIR = Path(str(resources.files("dicomweb") / "ui" / "static"))

#: PS3.15 has no word on browsers; these are the usual hardening headers of a web app.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response of the wrapped ``/ui`` app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode("latin-1").lower() not in SECURITY_HEADERS
                ]
                headers.extend((k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def ui_routes(
    *, settings: Settings, authenticator: Authenticator, record: AuditSink | None = None
) -> list[BaseRoute]:
    """``/`` and ``/ui`` redirect to ``/ui/``; the page, its configuration and its assets."""
    index_path = STATIC_DIR / "index.html"
    page_config: dict[str, Any] = {
        "dicomweb_root": DICOMWEB_ROOT,
        "ohif_url": settings.ui.ohif_url.rstrip("/"),
        "weasis": settings.ui.weasis,
        # Sign-in with the OIDC provider (dicomweb/oidc_login.py), when configured.
        "oidc_login": enabled(settings.auth.oidc, settings.auth.mode),
        "oidc_name": settings.auth.oidc.display_name,
    }

    def redirect(request: Request) -> Response:
        return RedirectResponse(f"{UI_ROOT}/", status_code=302)

    def index(request: Request) -> Response:
        return FileResponse(index_path, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    def config(request: Request) -> Response:
        return JSONResponse(page_config, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    static = SecurityHeaders(StaticFiles(directory=STATIC_DIR, follow_symlink=False))
    return [
        Route("/", redirect, methods=["GET", "HEAD"]),
        Route(UI_ROOT, redirect, methods=["GET", "HEAD"]),
        Route(f"{UI_ROOT}/", index, methods=["GET", "HEAD"]),
        Route(f"{UI_ROOT}/config.json", config, methods=["GET"]),
        *session_routes(
            authenticator=authenticator, mode=settings.auth.mode, root=UI_ROOT, record=record
        ),
        *oidc_routes(
            oidc=settings.auth.oidc,
            authenticator=authenticator,
            root=UI_ROOT,
            active=enabled(settings.auth.oidc, settings.auth.mode),
            record=record,
        ),
        Mount(f"{UI_ROOT}/static", app=static, name="ui-static"),
    ]
