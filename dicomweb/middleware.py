"""Per-request plumbing: request id for the logs, metrics by route template and status.

Pure ASGI middleware so streamed responses pass through untouched; the
duration covers the whole response body, not only its headers.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noctis_pacs.core.logs import context_id
from noctis_pacs.core.metrics import Metrics

log = logging.getLogger("noctis.http")

UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/dicom-web/studies/{study}``), never the raw path:
    label values stay bounded and carry no UIDs."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


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
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
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
            if status >= 500:
                log.warning("%s %s -> %d in %.1f ms", method, route, status, elapsed * 1e3)
            else:
                log.debug("%s %s -> %d in %.1f ms", method, route, status, elapsed * 1e3)
            context_id.reset(token)
