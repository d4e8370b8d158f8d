"""The workflow REST API and event stream (JSON, under ``/workflow``).

Documented in ``docs/workflow.md``.  Worklist items: create, read, list
with filters, replace (PUT), patch, cancel (DELETE or POST .../cancel).
Study status view, MPPS instances, webhook delivery counts, and a
Server-Sent Events stream of workflow events (``Last-Event-ID`` resumes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from dicomweb.auth import principal_of
from dicomweb.errors import error_response
from noctis_pacs.core.auth import DEFAULT_FACILITY
from noctis_pacs.core.settings import Settings
from noctis_pacs.core.workflow.events import KINDS
from noctis_pacs.core.workflow.items import WorklistValidationError
from noctis_pacs.core.workflow.mwl import list_query
from storage.archive import (
    MAX_INTEGER,
    Archive,
    ItemNotFound,
    QueryError,
    WorkflowConflict,
)

PREFIX = "/workflow"
SSE_MEDIA_TYPE = "text/event-stream"
#: Events re-read behind the last one sent: PostgreSQL may commit ids out of order.
SSE_LOOKBACK = 50


def _int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not an integer") from None
    if value < 0 or value > maximum:
        raise ValueError(f"{name}: must be between 0 and {maximum}")
    return value


def workflow_routes(*, settings: Settings, archive: Archive) -> list[BaseRoute]:
    """Routes of the workflow API, bound to one archive (built by the app factory)."""
    store, tracker, mpps, events = archive.worklist, archive.tracker, archive.mpps, archive.events
    max_results = settings.query.max_results

    def guarded(
        fn: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except WorklistValidationError as exc:
                return JSONResponse(
                    {
                        "status": 400,
                        "error": "Bad Request",
                        "detail": str(exc),
                        "problems": exc.problems,
                    },
                    status_code=400,
                )
            except (ValueError, QueryError) as exc:
                if isinstance(exc, WorkflowConflict):
                    return error_response(409, str(exc))
                return error_response(400, str(exc))
            except ItemNotFound as exc:
                return error_response(404, str(exc))

        return endpoint

    async def body(request: Request) -> Any:
        raw = await request.body()
        if "json" not in request.headers.get("content-type", "application/json"):
            raise ValueError("send the item as application/json")
        try:
            return json.loads(raw or b"null")
        except json.JSONDecodeError as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None

    def facilities(request: Request) -> frozenset[str]:
        """The facilities whose worklist items the caller sees (empty: all)."""
        return principal_of(request).facilities

    def new_item_facility(request: Request) -> str:
        """A scoped principal's new item is its facility's (the first, when it has several)."""
        scope = sorted(facilities(request))
        return scope[0] if scope else DEFAULT_FACILITY

    async def created(request: Request) -> Response:
        stored = await run_in_threadpool(
            partial(store.create, facility=new_item_facility(request)), await body(request)
        )
        return JSONResponse(
            stored.as_json(),
            status_code=201,
            headers={"Location": f"{PREFIX}/worklist/{stored.item_uid}"},
        )

    async def listing(request: Request) -> Response:
        query, statuses = list_query(dict(request.query_params), max_results=max_results)
        query = dataclasses.replace(query, facilities=facilities(request))
        items = await run_in_threadpool(store.list, query, item_statuses=statuses)
        return JSONResponse([s.as_json() for s in items])

    def read_sync(item_uid: str, scope: frozenset[str]) -> dict[str, Any]:
        stored = store.get(item_uid, facilities=scope)
        out = stored.as_json()
        out["studies"] = tracker.for_item(stored.pk)
        return out

    async def read(request: Request) -> Response:
        return JSONResponse(
            await run_in_threadpool(read_sync, request.path_params["item"], facilities(request))
        )

    async def replace(request: Request) -> Response:
        data = await body(request)
        stored = await run_in_threadpool(
            partial(store.update, merge=False, facilities=facilities(request)),
            request.path_params["item"],
            data,
        )
        return JSONResponse(stored.as_json())

    async def patch(request: Request) -> Response:
        data = await body(request)
        stored = await run_in_threadpool(
            partial(store.update, merge=True, facilities=facilities(request)),
            request.path_params["item"],
            data,
        )
        return JSONResponse(stored.as_json())

    async def cancel(request: Request) -> Response:
        stored = await run_in_threadpool(
            partial(store.cancel, facilities=facilities(request)), request.path_params["item"]
        )
        return JSONResponse(stored.as_json())

    async def study_status(request: Request) -> Response:
        status = await run_in_threadpool(
            partial(tracker.status, facilities=facilities(request)), request.path_params["study"]
        )
        if status is None:
            return error_response(404, "study neither received nor scheduled")
        return JSONResponse(status)

    async def studies(request: Request) -> Response:
        limit = _int(request, "limit", 100, max_results)
        offset = _int(request, "offset", 0, 10**9)
        return JSONResponse(
            await run_in_threadpool(
                partial(tracker.recent, facilities=facilities(request)), limit, offset
            )
        )

    async def mpps_read(request: Request) -> Response:
        found = await run_in_threadpool(
            partial(mpps.get, facilities=facilities(request)), request.path_params["uid"]
        )
        if found is None:
            return error_response(404, "no such MPPS instance")
        return JSONResponse(found)

    async def webhooks(request: Request) -> Response:
        summary = await run_in_threadpool(events.summary)
        return JSONResponse({"urls": list(settings.workflow.webhooks), **summary})

    async def stream(request: Request) -> Response:
        kinds = {k for k in request.query_params.get("kinds", "").split(",") if k}
        unknown = kinds - set(KINDS)
        if unknown:
            return error_response(400, f"unknown event kind(s) {', '.join(sorted(unknown))}")
        resume = request.headers.get("last-event-id") or request.query_params.get("after")
        try:
            last = int(resume) if resume else await run_in_threadpool(events.last_id)
        except ValueError:
            return error_response(400, "Last-Event-ID must be an event id")
        if not 0 <= last <= MAX_INTEGER:
            return error_response(400, "Last-Event-ID is out of range")
        poll = settings.workflow.poll_interval_seconds
        scope = facilities(request)

        async def frames() -> AsyncIterator[str]:
            sent: set[int] = set()
            cursor = last
            yield f"retry: {int(poll * 2000)}\n: noctis workflow events\n\n"
            idle = 0.0
            while not await request.is_disconnected():
                batch = await run_in_threadpool(
                    partial(events.after, facilities=scope), max(cursor - SSE_LOOKBACK, last)
                )
                fresh = [e for e in batch if e.id not in sent]
                for event in fresh:
                    sent.add(event.id)
                    cursor = max(cursor, event.id)
                    if kinds and event.kind not in kinds:
                        continue
                    data = json.dumps(event.as_json())
                    yield f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
                sent = {i for i in sent if i > cursor - SSE_LOOKBACK}
                if not fresh:
                    await asyncio.sleep(min(poll, 0.5))
                    idle += min(poll, 0.5)
                    if idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                else:
                    idle = 0.0

        return StreamingResponse(
            frames(),
            media_type=SSE_MEDIA_TYPE,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [
        Route(f"{PREFIX}/worklist", guarded(created), methods=["POST"]),
        Route(f"{PREFIX}/worklist", guarded(listing), methods=["GET"]),
        Route(f"{PREFIX}/worklist/{{item}}", guarded(read), methods=["GET"]),
        Route(f"{PREFIX}/worklist/{{item}}", guarded(replace), methods=["PUT"]),
        Route(f"{PREFIX}/worklist/{{item}}", guarded(patch), methods=["PATCH"]),
        Route(f"{PREFIX}/worklist/{{item}}", guarded(cancel), methods=["DELETE"]),
        Route(f"{PREFIX}/worklist/{{item}}/cancel", guarded(cancel), methods=["POST"]),
        Route(f"{PREFIX}/studies", guarded(studies), methods=["GET"]),
        Route(f"{PREFIX}/studies/{{study}}", guarded(study_status), methods=["GET"]),
        Route(f"{PREFIX}/mpps/{{uid}}", guarded(mpps_read), methods=["GET"]),
        Route(f"{PREFIX}/webhooks", guarded(webhooks), methods=["GET"]),
        Route(f"{PREFIX}/events", stream, methods=["GET"]),
    ]
