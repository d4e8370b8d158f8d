"""The admin REST API under ``/api`` (JSON), and DICOMweb ``DELETE`` on studies, series
and instances.

Statistics, deletes, remote AEs managed at run time, send jobs.  Every route needs
``Permission.ADMIN`` (``dicomweb.auth.required_permission``; the DICOMweb ``DELETE``
resources need ``DELETE``), and every act, refused or done, is recorded through
``Archive.record_admin_act``.  Work that needs DIMSE (C-ECHO) or the job runner
reaches this module as plain callables the wiring passes in (``AdminHooks``): the
protocol packages never import each other.  The OpenAPI description is
``dicomweb.admin_openapi``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dicomweb.admin_modify import modify_routes
from dicomweb.admin_openapi import openapi_document
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotFound
from dicomweb.resources import check_uid, describe, path_uids
from noctis_pacs.core.model import Level, Match, MatchKind, Query
from noctis_pacs.core.remotes import Remote, RemoteError, parse_remote
from noctis_pacs.core.retention import PolicyError, parse_policy
from noctis_pacs.core.routing import RuleError, parse_rule
from storage.archive import Archive, InstanceLocation, MediaError

API_ROOT = "/api"
#: Largest JSON body the admin API reads.
MAX_BODY = 1 << 20
#: Attempts of a send job when the request does not say.
DEFAULT_MAX_ATTEMPTS = 5
MAX_ATTEMPTS_LIMIT = 100


@dataclass(frozen=True)
class AdminHooks:
    """What the wiring lends the admin API: a C-ECHO to a remote (``{"ok", "reason",
    "milliseconds"}``) and a nudge for the job runner."""

    echo: Callable[[Remote], dict[str, Any]] | None = None
    wake_jobs: Callable[[], None] | None = None


class AdminApi:
    def __init__(self, archive: Archive, hooks: AdminHooks | None = None) -> None:
        self.archive = archive
        self.hooks = hooks or AdminHooks()

    # -- helpers ------------------------------------------------------------------------

    def audit(
        self,
        request: Request,
        action: str,
        outcome: str,
        *,
        study_uids: tuple[str, ...] = (),
        **details: Any,
    ) -> None:
        client = request.client.host if request.client else ""
        principal = principal_of(request)
        self.archive.record_admin_act(
            principal=principal.name,
            principal_kind=principal.kind,
            action=action,
            outcome=outcome,
            client=client,
            study_uids=study_uids,
            details=details,
        )

    async def body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise BadRequest(f"request body larger than {MAX_BODY} bytes")
        if "json" not in request.headers.get("content-type", "application/json"):
            raise BadRequest("the body must be application/json")
        try:
            value = json.loads(raw or b"null")
        except ValueError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise BadRequest("the body must be a JSON object")
        return value

    # -- statistics ---------------------------------------------------------------------

    def statistics(self, request: Request) -> Response:
        return JSONResponse(self.archive.statistics())

    # -- delete -------------------------------------------------------------------------

    def delete(self, request: Request) -> Response:
        """Delete a study, series or instance: 204, or 404 when it is not here (or not in
        the caller's facilities). The series and instance must belong to the study (and
        series) of the path."""
        study, series, sop = path_uids(request)
        what = describe(study, series, sop)
        # A principal with facilities deletes only in their studies (others are 404).
        locations = self.archive.locate_uids(study, series, sop, principal=principal_of(request))
        if not locations:
            self.audit(
                request, "delete", "not found", study_uids=(study or "",), level=_level(sop, series)
            )
            raise NotFound(f"{what} is not in the archive")
        count = self.archive.delete(study_uid=study, series_uid=series, sop_uid=sop)
        self.audit(
            request,
            "delete",
            "success",
            study_uids=(study or "",),
            level=_level(sop, series),
            instances=count,
        )
        return Response(status_code=204)

    # -- remotes ------------------------------------------------------------------------

    def remotes(self, request: Request) -> Response:
        return JSONResponse([r.public() for r in self.archive.remotes.entries()])

    def remote(self, request: Request) -> Response:
        return JSONResponse(self._remote(request).public())

    def _remote(self, request: Request) -> Remote:
        name = str(request.path_params["name"])
        remote = self.archive.remotes.get(name)
        if remote is None:
            raise NotFound(f"no remote named {name[:64]!r}")
        return remote

    async def add_remote(self, request: Request) -> Response:
        raw = await self.body(request)
        try:
            remote = parse_remote(raw)
            await run_in_threadpool(self.archive.remotes.add, remote)
        except RemoteError as exc:
            self.audit(request, "remote.add", "refused", reason=str(exc))
            status = 409 if "exists" in str(exc) or "configuration" in str(exc) else 400
            return _error(status, str(exc))
        self.audit(request, "remote.add", "success", name=remote.name, kind=remote.kind)
        return JSONResponse(remote.public(), status_code=201)

    def remove_remote(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        try:
            removed = self.archive.remotes.remove(name)
        except RemoteError as exc:
            self.audit(request, "remote.remove", "refused", name=name, reason=str(exc))
            return _error(409, str(exc))
        self.audit(request, "remote.remove", "success" if removed else "not found", name=name)
        if not removed:
            raise NotFound(f"no remote named {name[:64]!r}")
        return Response(status_code=204)

    def echo(self, request: Request) -> Response:
        remote = self._remote(request)
        if remote.kind != "dimse":
            raise BadRequest(f"remote {remote.name!r} is a DICOMweb peer: C-ECHO needs a DICOM AE")
        if self.hooks.echo is None:
            return _error(503, "C-ECHO is not available in this process (DIMSE is off)")
        result = self.hooks.echo(remote)
        self.audit(
            request, "remote.echo", "success" if result.get("ok") else "failure", name=remote.name
        )
        return JSONResponse({"name": remote.name, **result})

    # -- jobs ---------------------------------------------------------------------------

    def jobs(self, request: Request) -> Response:
        state = request.query_params.get("state")
        limit, offset = _paging(request)
        jobs = self.archive.jobs.recent(state=state, limit=limit, offset=offset)
        return JSONResponse([job.public() for job in jobs])

    def job(self, request: Request) -> Response:
        job_id = _job_id(request)
        job = self.archive.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return JSONResponse({**job.public(), "items": self.archive.jobs.items(job_id)})

    async def send(self, request: Request) -> Response:
        """Queue a send of a study, a series or instances to a remote (PS3.4 C-STORE SCU or
        STOW-RS): 202 with the job; refused with 400/404 and nothing queued."""
        raw = await self.body(request)
        try:
            destination, locations, max_attempts = await run_in_threadpool(self._send_request, raw)
        except (BadRequest, NotFound) as exc:
            self.audit(request, "send", "refused", reason=exc.detail)
            raise
        studies = tuple(sorted({loc.study_uid for loc in locations}))
        job_id = await run_in_threadpool(
            lambda: self.archive.jobs.create(
                kind="send",
                destination=destination.name,
                request={k: raw[k] for k in ("study", "series", "instances") if k in raw},
                sop_uids=[loc.sop_uid for loc in locations],
                max_attempts=max_attempts,
                created_by=principal_of(request).name,
            )
        )
        self.audit(
            request,
            "send",
            "queued",
            study_uids=studies,
            job=job_id,
            destination=destination.name,
            instances=len(locations),
        )
        if self.hooks.wake_jobs is not None:
            self.hooks.wake_jobs()
        job = self.archive.jobs.get(job_id)
        assert job is not None
        return JSONResponse(
            job.public(), status_code=202, headers={"Location": f"{API_ROOT}/jobs/{job_id}"}
        )

    def _send_request(self, raw: dict[str, Any]) -> tuple[Remote, list[InstanceLocation], int]:
        unknown = sorted(set(raw) - {"destination", "study", "series", "instances", "max_attempts"})
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
        name = raw.get("destination")
        if not isinstance(name, str) or not name:
            raise BadRequest("destination (a remote's name) is required")
        destination = self.archive.remotes.get(name)
        if destination is None:
            raise NotFound(f"no remote named {name[:64]!r}")
        max_attempts = raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not (1 <= max_attempts <= MAX_ATTEMPTS_LIMIT)
        ):
            raise BadRequest(f"max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}")
        matches = []
        for key, keyword in (("study", "StudyInstanceUID"), ("series", "SeriesInstanceUID")):
            value = raw.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise BadRequest(f"{key} must be a UID string")
                matches.append(Match(keyword, MatchKind.SINGLE, (check_uid(value, key),)))
        instances = raw.get("instances")
        if instances is not None:
            if (
                not isinstance(instances, list)
                or not instances
                or not all(isinstance(u, str) for u in instances)
            ):
                raise BadRequest("instances must be a non-empty list of SOP Instance UIDs")
            uids = tuple(check_uid(u, "SOP Instance UID") for u in instances)
            matches.append(Match("SOPInstanceUID", MatchKind.LIST_OF_UID, uids))
        if not matches:
            raise BadRequest("give a study, a series or instances to send")
        locations = self.archive.locate(Query(level=Level.IMAGE, matches=tuple(matches)))
        if not locations:
            raise NotFound("nothing in the archive matches the study / series / instances given")
        if instances is not None and len(locations) < len(set(instances)):
            found = {loc.sop_uid for loc in locations}
            missing = [u for u in instances if u not in found]
            raise NotFound(f"{len(missing)} instance(s) not in the archive, e.g. {missing[0]}")
        return destination, locations, max_attempts

    def cancel(self, request: Request) -> Response:
        return self._transition(request, "cancel", self.archive.jobs.cancel)

    def retry(self, request: Request) -> Response:
        response = self._transition(request, "retry", self.archive.jobs.retry)
        if self.hooks.wake_jobs is not None:
            self.hooks.wake_jobs()
        return response

    def _transition(self, request: Request, verb: str, change: Callable[[int], bool]) -> Response:
        job_id = _job_id(request)
        job = self.archive.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        if not change(job_id):
            self.audit(request, f"job.{verb}", "refused", job=job_id, state=job.state)
            return _error(
                409,
                f"job {job_id} is {job.state}: it cannot be {verb}led now"
                if verb == "cancel"
                else f"job {job_id} is {job.state}: only failed or cancelled jobs are retried",
            )
        self.audit(request, f"job.{verb}", "success", job=job_id)
        updated = self.archive.jobs.get(job_id)
        assert updated is not None
        return JSONResponse(updated.public())

    # -- export -------------------------------------------------------------------------

    async def export(self, request: Request) -> Response:
        """A study (or series) as a zip: PS3.10 media with a DICOMDIR (``dicomdir=true``,
        the default) or the stored files; written to a temporary file, then streamed."""
        study, series, _ = path_uids(request)
        assert study is not None
        flag = request.query_params.get("dicomdir", "true").lower()
        if flag not in ("true", "false"):
            raise BadRequest("dicomdir must be true or false")
        target = self.archive.spool_path()
        try:
            count = await run_in_threadpool(
                lambda: self.archive.export_zip(
                    target, study_uid=study, series_uid=series, dicomdir=flag == "true"
                )
            )
        except MediaError as exc:
            target.unlink(missing_ok=True)
            self.audit(request, "export", "refused", study_uids=(study,), reason=str(exc))
            return _error(422, str(exc))
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        if count == 0:
            target.unlink(missing_ok=True)
            self.audit(request, "export", "not found", study_uids=(study,))
            raise NotFound(f"{describe(study, series, None)} is not in the archive")
        self.audit(request, "export", "success", study_uids=(study,), instances=count)
        name = f"{series or study}.zip"
        return FileResponse(
            target,
            media_type="application/zip",
            filename=name,
            background=BackgroundTask(target.unlink, missing_ok=True),
        )

    # -- retention ----------------------------------------------------------------------

    def policies(self, request: Request) -> Response:
        return JSONResponse([p.public() for p in self.archive.retention.policies()])

    async def add_policy(self, request: Request) -> Response:
        raw = await self.body(request)
        try:
            policy = parse_policy(raw)
        except PolicyError as exc:
            self.audit(request, "retention.policy.add", "refused", reason=str(exc))
            raise BadRequest(str(exc)) from None
        if not await run_in_threadpool(self.archive.retention.add_policy, policy):
            self.audit(request, "retention.policy.add", "refused", name=policy.name)
            return _error(409, f"a policy named {policy.name!r} exists already")
        self.audit(request, "retention.policy.add", "success", name=policy.name)
        return JSONResponse(policy.public(), status_code=201)

    def remove_policy(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        removed = self.archive.retention.remove_policy(name)
        self.audit(
            request, "retention.policy.remove", "success" if removed else "not found", name=name
        )
        if not removed:
            raise NotFound(f"no policy named {name[:64]!r}")
        return Response(status_code=204)

    def run_retention(self, request: Request) -> Response:
        """Apply the policies now; ``dry_run=true`` (the default) lists what would go."""
        flag = request.query_params.get("dry_run", "true").lower()
        if flag not in ("true", "false"):
            raise BadRequest("dry_run must be true or false")
        result = self.archive.retention_run(
            dry_run=flag == "true", principal=principal_of(request).name
        )
        self.audit(
            request,
            "retention.run",
            "success",
            dry_run=flag == "true",
            studies=len(result["studies"]),
        )
        return JSONResponse(result)

    def protected(self, request: Request) -> Response:
        return JSONResponse(self.archive.retention.protected())

    async def protect(self, request: Request) -> Response:
        study, _, _ = path_uids(request)
        assert study is not None
        raw = await self.body(request) if await request.body() else {}
        reason = raw.get("reason", "")
        if set(raw) - {"reason"} or not isinstance(reason, str) or len(reason) > 200:
            raise BadRequest('the body may hold "reason" (text, at most 200 characters)')
        added = await run_in_threadpool(self.archive.retention.protect, study, reason)
        self.audit(request, "retention.protect", "success", study_uids=(study,))
        return JSONResponse(
            {"study_uid": study, "protected": True}, status_code=201 if added else 200
        )

    def unprotect(self, request: Request) -> Response:
        study, _, _ = path_uids(request)
        assert study is not None
        removed = self.archive.retention.unprotect(study)
        self.audit(
            request,
            "retention.unprotect",
            "success" if removed else "not found",
            study_uids=(study,),
        )
        if not removed:
            raise NotFound(f"study {study} is not protected")
        return Response(status_code=204)

    # -- routing ------------------------------------------------------------------------

    def rules(self, request: Request) -> Response:
        return JSONResponse([rule.public() for rule in self.archive.routing.rules()])

    async def add_rule(self, request: Request) -> Response:
        """Save a routing rule; refused with its reason (unknown attribute, unknown
        destination, malformed value) when saved, never when it fires."""
        raw = await self.body(request)
        try:
            rule = parse_rule(raw)
            await run_in_threadpool(self.archive.check_route_rule, rule)
        except RuleError as exc:
            self.audit(request, "route.add", "refused", reason=str(exc))
            raise BadRequest(str(exc)) from None
        if not await run_in_threadpool(self.archive.routing.add_rule, rule):
            self.audit(request, "route.add", "refused", name=rule.name, reason="exists")
            return _error(409, f"a rule named {rule.name!r} exists already")
        self.audit(request, "route.add", "success", name=rule.name)
        return JSONResponse(rule.public(), status_code=201)

    def remove_rule(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        removed = self.archive.routing.remove_rule(name)
        self.audit(request, "route.remove", "success" if removed else "not found", name=name)
        if not removed:
            raise NotFound(f"no rule named {name[:64]!r}")
        return Response(status_code=204)

    def queue(self, request: Request) -> Response:
        return JSONResponse(self.archive.routing.summary())

    def dead_letters(self, request: Request) -> Response:
        limit, offset = _paging(request)
        return JSONResponse(self.archive.routing.dead_letters(limit, offset))

    async def retry_dead(self, request: Request) -> Response:
        return await self._dead(request, "retry", self.archive.routing.retry_dead)

    async def drop_dead(self, request: Request) -> Response:
        return await self._dead(request, "drop", self.archive.routing.drop_dead)

    async def _dead(
        self, request: Request, verb: str, change: Callable[[list[int] | None], int]
    ) -> Response:
        """``{"ids": [..]}`` or ``{"all": true}``: which dead letters to retry or drop."""
        raw = await self.body(request)
        unknown = sorted(set(raw) - {"ids", "all"})
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
        ids = raw.get("ids")
        if raw.get("all") is True and ids is None:
            chosen: list[int] | None = None
        elif (
            isinstance(ids, list)
            and ids
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            chosen = [int(i) for i in ids]
        else:
            raise BadRequest('give "ids": a non-empty list of dead letter ids, or "all": true')
        changed = await run_in_threadpool(change, chosen)
        self.audit(request, f"route.dead.{verb}", "success", items=changed)
        return JSONResponse({"dropped" if verb == "drop" else "retried": changed})

    def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())


def _level(sop: str | None, series: str | None) -> str:
    return "instance" if sop else "series" if series else "study"


def _paging(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", "100"))
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise BadRequest("limit and offset must be integers") from None
    if not 0 < limit <= 1000 or offset < 0:
        raise BadRequest("limit must be 1-1000 and offset at least 0")
    return limit, offset


def _job_id(request: Request) -> int:
    raw = str(request.path_params["job"])
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"job id {raw[:20]!r} is not a number")
    return int(raw)


def _error(status: int, detail: str) -> Response:
    from dicomweb.errors import error_response

    return error_response(status, detail)


def admin_routes(api: AdminApi) -> list[BaseRoute]:
    """Routes under ``/api`` (each one described in ``admin_openapi``)."""
    study = f"{API_ROOT}/studies/{{study}}"
    series = f"{study}/series/{{series}}"
    return [
        Route(f"{API_ROOT}/openapi.json", api.openapi, methods=["GET"]),
        Route(f"{API_ROOT}/statistics", api.statistics, methods=["GET"]),
        Route(study, api.delete, methods=["DELETE"]),
        Route(series, api.delete, methods=["DELETE"]),
        Route(f"{series}/instances/{{instance}}", api.delete, methods=["DELETE"]),
        Route(f"{study}/export", api.export, methods=["GET"]),
        *modify_routes(api, API_ROOT),
        Route(f"{series}/export", api.export, methods=["GET"]),
        Route(f"{API_ROOT}/remotes", api.remotes, methods=["GET"]),
        Route(f"{API_ROOT}/remotes", api.add_remote, methods=["POST"]),
        Route(f"{API_ROOT}/remotes/{{name}}", api.remote, methods=["GET"]),
        Route(f"{API_ROOT}/remotes/{{name}}", api.remove_remote, methods=["DELETE"]),
        Route(f"{API_ROOT}/remotes/{{name}}/echo", api.echo, methods=["POST"]),
        Route(f"{API_ROOT}/jobs", api.jobs, methods=["GET"]),
        Route(f"{API_ROOT}/jobs/send", api.send, methods=["POST"]),
        Route(f"{API_ROOT}/jobs/{{job}}", api.job, methods=["GET"]),
        Route(f"{API_ROOT}/jobs/{{job}}/cancel", api.cancel, methods=["POST"]),
        Route(f"{API_ROOT}/jobs/{{job}}/retry", api.retry, methods=["POST"]),
        Route(f"{study}/protected", api.protect, methods=["PUT"]),
        Route(f"{study}/protected", api.unprotect, methods=["DELETE"]),
        Route(f"{API_ROOT}/retention/policies", api.policies, methods=["GET"]),
        Route(f"{API_ROOT}/retention/policies", api.add_policy, methods=["POST"]),
        Route(f"{API_ROOT}/retention/policies/{{name}}", api.remove_policy, methods=["DELETE"]),
        Route(f"{API_ROOT}/retention/run", api.run_retention, methods=["POST"]),
        Route(f"{API_ROOT}/retention/protected", api.protected, methods=["GET"]),
        Route(f"{API_ROOT}/routing/rules", api.rules, methods=["GET"]),
        Route(f"{API_ROOT}/routing/rules", api.add_rule, methods=["POST"]),
        Route(f"{API_ROOT}/routing/rules/{{name}}", api.remove_rule, methods=["DELETE"]),
        Route(f"{API_ROOT}/routing/queue", api.queue, methods=["GET"]),
        Route(f"{API_ROOT}/routing/dead", api.dead_letters, methods=["GET"]),
        Route(f"{API_ROOT}/routing/dead/retry", api.retry_dead, methods=["POST"]),
        Route(f"{API_ROOT}/routing/dead/drop", api.drop_dead, methods=["POST"]),
    ]
