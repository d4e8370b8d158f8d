"""Changing what is stored: ``POST /api/studies/{study}[/series/{series}[/instances/
{instance}]]/modify`` modifies the attributes of a study, series or instance
(``noctis_pacs.core.modify`` says which rules of PS3.3 it keeps);
``POST /api/jobs/deidentify`` queues the de-identification of a study with the PS3.15
Annex E Basic Profile (``noctis_pacs.core.deid``), as a zip or a new study, and
``GET /api/jobs/{job}/result`` downloads it. Everything needs ``admin``; every call is
audited with the attributes it named (never their values) and the old and new UIDs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotFound
from dicomweb.resources import check_uid, describe, path_uids
from noctis_pacs.core.deid import DeidError, parse_options
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


#: The kind of a de-identification job (``noctis_pacs.app.job_runner`` runs it).
DEIDENTIFY = "deidentify"
OUTPUTS = ("zip", "store")


def make_deidentify(api: AdminApi) -> Callable[[Request], Awaitable[Response]]:
    async def deidentify(request: Request) -> Response:
        """``{"study": UID, "output": "zip" | "store", "options": {...}}``: 202 with the
        job; refused with the reason (400 / 404) and nothing queued."""
        raw = await api.body(request)
        try:
            unknown = sorted(set(raw) - {"study", "output", "options"})
            if unknown:
                raise DeidError(f"unknown field(s): {', '.join(unknown)}")
            study = raw.get("study")
            if not isinstance(study, str):
                raise DeidError("study (a Study Instance UID) is required")
            output = raw.get("output", "zip")
            if output not in OUTPUTS:
                raise DeidError("output must be zip or store")
            options = raw.get("options", {})
            if not isinstance(options, dict):
                raise DeidError("options must be an object")
            parsed = parse_options(options)
        except DeidError as exc:
            api.audit(request, DEIDENTIFY, "refused", reason=str(exc))
            raise BadRequest(str(exc)) from None
        study = check_uid(study, "Study Instance UID")
        locations = await run_in_threadpool(
            lambda: api.archive.locate_uids(study, principal=principal_of(request))
        )
        if not locations:
            api.audit(request, DEIDENTIFY, "not found", study_uids=(study,))
            raise NotFound(f"study {study} is not in the archive")
        job_id = await run_in_threadpool(
            lambda: api.archive.jobs.create(
                kind=DEIDENTIFY,
                destination=output,
                request={"study": study, "output": output, "options": parsed.public()},
                sop_uids=[loc.sop_uid for loc in locations],
                max_attempts=1,
                created_by=principal_of(request).name,
            )
        )
        api.audit(
            request, DEIDENTIFY, "queued", study_uids=(study,), job=job_id, output=output,
            options=parsed.public() | {"patient_name": "", "patient_id": ""},
        )  # fmt: skip
        if api.hooks.wake_jobs is not None:
            api.hooks.wake_jobs()
        job = api.archive.jobs.get(job_id)
        assert job is not None
        return JSONResponse(
            job.public(), status_code=202, headers={"Location": f"/api/jobs/{job_id}"}
        )

    return deidentify


def make_result(api: AdminApi) -> Callable[[Request], Awaitable[Response]]:
    async def result(request: Request) -> Response:
        """A finished job's result: the zip (output zip), else its summary as JSON (the
        new study's UID for output store); 404 while there is none."""
        raw = str(request.path_params["job"])
        if not raw.isdigit() or len(raw) > 18:
            raise BadRequest(f"job id {raw[:20]!r} is not a number")
        job = api.archive.jobs.get(int(raw))
        if job is None or job.kind != DEIDENTIFY:
            raise NotFound(f"no de-identification job {raw}")
        archive_zip = api.archive.export_path(job.id, ".zip")
        summary = api.archive.export_path(job.id, ".json")
        if job.state != "succeeded" or not summary.exists():
            raise NotFound(f"job {job.id} is {job.state}: no result (yet)")
        api.audit(request, "deidentify.download", "success", job=job.id)
        if archive_zip.exists():
            return FileResponse(
                archive_zip, media_type="application/zip", filename=f"deidentified-{job.id}.zip"
            )
        return Response(summary.read_bytes(), media_type="application/json")

    return result


def modify_routes(api: AdminApi, root: str) -> list[BaseRoute]:
    study = f"{root}/studies/{{study}}"
    series = f"{study}/series/{{series}}"
    endpoint = make_modify(api)
    return [
        Route(f"{study}/modify", endpoint, methods=["POST"]),
        Route(f"{series}/modify", endpoint, methods=["POST"]),
        Route(f"{series}/instances/{{instance}}/modify", endpoint, methods=["POST"]),
        Route(f"{root}/jobs/deidentify", make_deidentify(api), methods=["POST"]),
        Route(f"{root}/jobs/{{job}}/result", make_result(api), methods=["GET"]),
    ]
