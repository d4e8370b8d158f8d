"""Operational routes: liveness, readiness (the index answers) and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomweb.errors import ServiceUnavailable
from dicomweb.resources import Context


def make_health_endpoints(ctx: Context) -> dict[str, Any]:
    def healthz(request: Request) -> Response:
        """The process serves HTTP."""
        return JSONResponse({"status": "ok"})

    def readyz(request: Request) -> Response:
        """The index answers a query: the server can take traffic."""
        try:
            ctx.archive.stats()
        except Exception as exc:  # noqa: BLE001 - any index failure means not ready
            raise ServiceUnavailable(f"index not available: {type(exc).__name__}") from None
        return JSONResponse({"status": "ready"})

    def metrics(request: Request) -> Response:
        return Response(ctx.metrics.exposition(), media_type="text/plain; version=0.0.4")

    return {"healthz": healthz, "readyz": readyz, "metrics": metrics}
