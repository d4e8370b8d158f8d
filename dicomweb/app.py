"""The DICOMweb starlette application (placeholder: health and metrics, extended by issue 4)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from noctis_pacs.metrics import Metrics
from noctis_pacs.settings import Settings
from storage.archive import Archive


def create_app(*, settings: Settings, archive: Archive, metrics: Metrics) -> Starlette:
    def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    def readyz(request: Request) -> Response:
        archive.stats()
        return JSONResponse({"status": "ready"})

    def metrics_route(request: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_route),
        ]
    )
