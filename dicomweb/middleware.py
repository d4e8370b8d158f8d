"""Per-request plumbing: request id for the logs, metrics by route template and status.

Pure ASGI middleware so streamed responses pass through untouched; the
duration covers the whole response body, not only its headers.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noctis_pacs.core.logs import context_id, failure_logged, scrub_uids
from noctis_pacs.core.metrics import Metrics

log = logging.getLogger("noctis.http")

UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/dicom-web/studies/{study}``), never the raw path:
    label values stay bounded and carry no UIDs."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


_WARNING_TEXT = re.compile(r'^\d{3} \S+ "(.*)"$')


def _warning_text(headers: list[Any]) -> str:
    """The reason an error response carries in its Warning header (RFC 9111 5.5)."""
    for name, value in headers:
        if bytes(name).lower() == b"warning":
            text = bytes(value).decode("latin-1")
            match = _WARNING_TEXT.match(text)
            return match.group(1) if match else text
    return ""


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:12]
        token = context_id.set(request_id)
        logged: list[bool] = [False]
        logged_token = failure_logged.set(logged)
        started = time.perf_counter()
        status = 500
        reason = ""

        async def send_wrapper(message: Message) -> None:
            nonlocal status, reason
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                if status >= 400:
                    reason = _warning_text(headers)
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_duration.labels(method, route).observe(elapsed)
            if status >= 400 and not logged[0]:
                # One line per refused request, with its reason (issue 14 defect 8).
                log.log(
                    logging.WARNING if status >= 500 else logging.INFO,
                    "%s %s -> %d: %s",
                    method,
                    route,
                    status,
                    scrub_uids(reason) or HTTPStatus(status).phrase,
                )
            else:
                log.debug("%s %s -> %d in %.1f ms", method, route, status, elapsed * 1e3)
            failure_logged.reset(logged_token)
            context_id.reset(token)
