"""The DICOMweb application, declared as data: routes, middleware, exception handlers.

``create_app`` is the contract the wiring (``noctis_pacs.app.server``) calls.

Middleware, outermost first: request context + metrics (every request is
counted under its route template), CORS (browser viewers), authentication
and authorisation (``dicomweb.auth``: the one place that decides who may do
what), with the audit trail (``dicomweb.audit``) just outside it.  Handlers raise ``dicomweb.errors`` types; ``EXCEPTION_HANDLERS`` is
the one adapter turning them into responses.

Rendered resources, thumbnails and MPR/MIP come from ``dicomweb.rendered``
(one ``Renderer`` holding the volume cache bounded by
``rendering.volume_cache_mb``); it also renders WADO-URI ``image/jpeg`` and
``image/png``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route

from dicomweb import media
from dicomweb.admin_api import AdminApi, AdminHooks, admin_routes
from dicomweb.audit import AuditMiddleware, audit_routes
from dicomweb.auth import Authenticator, AuthMiddleware, Guard, SecurityEvents
from dicomweb.authn import audit_events, build_authenticator
from dicomweb.errors import EXCEPTION_HANDLERS
from dicomweb.frames import make_frames_endpoint
from dicomweb.health import make_health_endpoints
from dicomweb.metadata import make_bulkdata_endpoint, make_metadata_endpoint
from dicomweb.middleware import RequestContextMiddleware
from dicomweb.qido import make_qido_endpoint
from dicomweb.rendered import Renderer, rendered_routes, wado_uri_renderers
from dicomweb.resources import Context
from dicomweb.session import CsrfMiddleware, with_sessions
from dicomweb.stow import make_stow_endpoint
from dicomweb.tokens_api import openapi_route, token_routes
from dicomweb.ui import ui_routes
from dicomweb.wado import make_retrieve_endpoint
from dicomweb.wado_uri import make_wado_uri_endpoint
from dicomweb.workflow import workflow_routes
from dicomweb.zip_retrieve import with_zip
from noctis_pacs.core.metrics import Metrics, watch_audit_export
from noctis_pacs.core.model import Level
from noctis_pacs.core.settings import Settings
from noctis_pacs.rendering import VolumeCache
from storage.archive import Archive

ROOT = media.DICOMWEB_ROOT
STUDY = f"{ROOT}/studies/{{study}}"
SERIES = f"{STUDY}/series/{{series}}"
INSTANCE = f"{SERIES}/instances/{{instance}}"

#: Headers a browser viewer must be able to read (CORS) and send.
EXPOSED_HEADERS = ["Content-Type", "Content-Length", "Warning", media.TOTAL_COUNT_HEADER, "ETag"]
ALLOWED_HEADERS = ["Authorization", "Accept", "Content-Type", "If-None-Match", "X-Requested-With"]


def dicomweb_routes(ctx: Context, admin: AdminApi) -> list[BaseRoute]:
    """PS3.18 10.4 (WADO-RS), 10.5 (STOW-RS), 10.6 (QIDO-RS) resources under /dicom-web,
    and ``DELETE`` on the study, series and instance resources (beyond PS3.18, as
    dcm4chee and Google's Healthcare API offer it)."""
    stow = make_stow_endpoint(ctx)
    # application/zip (PS3.18 Sup 211) for studies and series: dicomweb.zip_retrieve.
    retrieve = with_zip(ctx, make_retrieve_endpoint(ctx))
    metadata = make_metadata_endpoint(ctx)
    studies = make_qido_endpoint(ctx, Level.STUDY)
    series = make_qido_endpoint(ctx, Level.SERIES)
    instances = make_qido_endpoint(ctx, Level.IMAGE)
    return [
        Route(f"{ROOT}/studies", studies, methods=["GET"]),
        Route(f"{ROOT}/studies", stow, methods=["POST"]),
        Route(f"{ROOT}/series", series, methods=["GET"]),
        Route(f"{ROOT}/instances", instances, methods=["GET"]),
        Route(STUDY, retrieve, methods=["GET"]),
        Route(STUDY, admin.delete, methods=["DELETE"]),
        Route(SERIES, admin.delete, methods=["DELETE"]),
        Route(INSTANCE, admin.delete, methods=["DELETE"]),
        Route(STUDY, stow, methods=["POST"]),
        Route(f"{STUDY}/metadata", metadata, methods=["GET"]),
        Route(f"{STUDY}/series", series, methods=["GET"]),
        Route(f"{STUDY}/instances", instances, methods=["GET"]),
        Route(SERIES, retrieve, methods=["GET"]),
        Route(f"{SERIES}/metadata", metadata, methods=["GET"]),
        Route(f"{SERIES}/instances", instances, methods=["GET"]),
        Route(INSTANCE, retrieve, methods=["GET"]),
        Route(f"{INSTANCE}/metadata", metadata, methods=["GET"]),
        Route(f"{INSTANCE}/frames/{{frames}}", make_frames_endpoint(ctx), methods=["GET"]),
        Route(f"{INSTANCE}/bulk/{{tag}}", make_bulkdata_endpoint(ctx), methods=["GET"]),
    ]


def cors_options(settings: Settings) -> dict[str, object]:
    """CORS for browser viewers.  With auth on, ``*`` is never sent: only the configured
    origins are allowed, with credentials (OHIF's Basic ``requestOptions.auth``)."""
    origins = list(settings.http.cors_origins)
    if settings.auth.mode == "none":
        return {"allow_origins": origins, "allow_credentials": False}
    return {"allow_origins": [o for o in origins if o != "*"], "allow_credentials": True}


def create_app(
    *,
    settings: Settings,
    archive: Archive,
    metrics: Metrics,
    authenticator: Authenticator | None = None,
    security_events: SecurityEvents | None = None,
    admin_hooks: AdminHooks | None = None,
) -> Starlette:
    ctx = Context(settings=settings, archive=archive, metrics=metrics)
    admin = AdminApi(archive, admin_hooks)
    if archive.audit_export_stats() is not None:
        watch_audit_export(metrics, archive.audit_export_stats)
    renderer = Renderer(
        archive=archive,
        cache=VolumeCache(settings.rendering.volume_cache_mb * 2**20),
        thumbnail_size=settings.rendering.thumbnail_size,
        jpeg_quality=settings.rendering.jpeg_quality,
    )
    health = make_health_endpoints(ctx)
    routes: list[BaseRoute] = [
        Route("/healthz", health["healthz"], methods=["GET"]),
        Route("/readyz", health["readyz"], methods=["GET"]),
        Route("/metrics", health["metrics"], methods=["GET"]),
        Route("/wado", make_wado_uri_endpoint(ctx, wado_uri_renderers(renderer)), methods=["GET"]),
        *dicomweb_routes(ctx, admin),
        # The admin API's description served with the token routes added (tokens_api).
        openapi_route(),
        *(r for r in admin_routes(admin) if getattr(r, "path", "") != "/api/openapi.json"),
        *token_routes(archive),
        *rendered_routes(renderer=renderer, prefix=ROOT),
        *workflow_routes(settings=settings, archive=archive),
        *audit_routes(archive),
    ]
    sessions = with_sessions(authenticator or build_authenticator(settings, archive))
    if settings.ui.enabled:
        routes.extend(
            ui_routes(settings=settings, authenticator=sessions, record=archive.audit_later)
        )
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware, metrics=metrics),
            Middleware(
                CORSMiddleware,
                **cors_options(settings),  # type: ignore[arg-type]
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=ALLOWED_HEADERS,
                expose_headers=EXPOSED_HEADERS,
                max_age=600,
            ),
            # Outside authentication, so refused requests are on record too.
            Middleware(AuditMiddleware, archive=archive),
            Middleware(CsrfMiddleware),
            Middleware(
                AuthMiddleware,
                authenticator=sessions,
                guard=Guard.from_settings(settings, security_events or audit_events(archive)),
            ),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
