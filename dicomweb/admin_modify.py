"""``POST /api/studies/{study}[/series/{series}[/instances/{instance}]]/modify``:
modify the attributes of a study, series or instance (``noctis_pacs.core.modify`` says
which rules of PS3.3 / PS3.4 it keeps). Needs ``admin``; every call is audited with
the attributes it named (never their values) and the old and new UIDs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotFound
from dicomweb.resources import describe, path_uids
from noctis_pacs.core.modify import ModifyError, ModifyRequest, parse_modify

if TYPE_CHECKING:
    from dicomweb.admin_api import AdminApi


def _named(request: ModifyRequest) -> list[str]:
    return sorted(change.keyword for change in request.changes)


def make_modify(api: AdminApi) -> Callable[[Request], Awaitable[Response]]:
    async def modify(request: Request) -> Response:
        study, series, sop = path_uids(request)
        assert study is not None
        level = "instance" if sop else "series" if series else "study"
        raw = await api.body(request)
        try:
            parsed = parse_modify(raw)
        except ModifyError as exc:
            api.audit(
                request, "modify", "refused", study_uids=(study,), level=level, reason=str(exc)
            )
            raise BadRequest(str(exc)) from None
        try:
            result = await run_in_threadpool(
                lambda: api.archive.modify(
                    parsed,
                    study_uid=study,
                    series_uid=series,
                    sop_uid=sop,
                    principal=principal_of(request),
                )
            )
        except ModifyError as exc:
            api.audit(
                request, "modify", "refused", study_uids=(study,), level=level,
                attributes=_named(parsed), reason=str(exc),
            )  # fmt: skip
            raise BadRequest(str(exc)) from None
        if result is None:
            api.audit(request, "modify", "not found", study_uids=(study,), level=level)
            raise NotFound(f"{describe(study, series, sop)} is not in the archive")
        api.audit(
            request,
            "modify",
            "success",
            study_uids=(study, result.study_uid),
            level=level,
            attributes=_named(parsed),
            keep_uids=parsed.keep_uids,
            kept_original=result.kept_original,
            old_uid=result.old_uid,
            new_uid=result.new_uid,
            instances=result.instances,
        )
        return JSONResponse(result.public())

    return modify


def modify_routes(api: AdminApi, root: str) -> list[BaseRoute]:
    study = f"{root}/studies/{{study}}"
    series = f"{study}/series/{{series}}"
    endpoint = make_modify(api)
    return [
        Route(f"{study}/modify", endpoint, methods=["POST"]),
        Route(f"{series}/modify", endpoint, methods=["POST"]),
        Route(f"{series}/instances/{{instance}}/modify", endpoint, methods=["POST"]),
    ]
