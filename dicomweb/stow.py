"""STOW-RS (PS3.18 10.5): store instances sent as multipart/related or single application/dicom.

The body is parsed as it arrives; each part is written straight into a
blob of the store (``Archive.begin_blob``: hashed as it arrives, never held
whole in memory beyond 1 MiB) and handed to the one store pipeline
(``Archive.store_blob``) while later parts are still arriving.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from dicomweb import audit, media
from dicomweb.auth import principal_of
from dicomweb.errors import (
    BadRequest,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
    warning_value,
)
from dicomweb.json_builders import JsonDataset, single
from dicomweb.multipart import (
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_media_type,
)
from dicomweb.negotiation import parse_accept
from dicomweb.resources import Context, check_uid, public_base
from noctis_pacs.core.logs import mark_failure_logged, scrub_uids
from storage.archive import (
    IDENTITY_HEAD,
    SMALL_BLOB,
    BlobWriter,
    Origin,
    RejectKind,
    Status,
    StorageFullError,
    StoreOutcome,
    sop_identity,
)

log = logging.getLogger("noctis.dicomweb.stow")

#: Failure Reason for each refusal of the store pipeline (PS3.18 Table 10.5.3-3).
_FAILURE_REASONS = {
    RejectKind.NOT_DICOM: media.FAILURE_CANNOT_UNDERSTAND,
    RejectKind.TRUNCATED: media.FAILURE_CANNOT_UNDERSTAND,
    RejectKind.MISSING_ATTRIBUTE: media.FAILURE_DATASET_MISMATCH,
    RejectKind.MISMATCH: media.FAILURE_DATASET_MISMATCH,
    RejectKind.STUDY_MISMATCH: media.FAILURE_DATASET_MISMATCH,
    RejectKind.CONFLICT: media.FAILURE_DATASET_MISMATCH,
    RejectKind.INVALID_UID: media.FAILURE_DATASET_MISMATCH,
}
_MAX_WARNING_HEADERS = 20


def _refused(
    reason: str, status: Status = Status.REJECTED, head: bytes = b""
) -> asyncio.Future[StoreOutcome]:
    """An outcome for a part refused before reaching the archive pipeline, naming the
    instance when the part's first bytes do (PS3.18 Table 10.5.3-3: Referenced SOP
    Class / Instance UID in the FailedSOPSequence item when known)."""
    future: asyncio.Future[StoreOutcome] = asyncio.get_running_loop().create_future()
    kind = RejectKind.NOT_DICOM if status is Status.REJECTED else None
    sop_class, sop_instance = sop_identity(head) if head else ("", "")
    future.set_result(
        StoreOutcome(
            status,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            reason=reason,
            reject_kind=kind,
        )
    )
    return future


class _Upload:
    """Receives one request body: writes each part into a blob as it arrives (hashed on the
    fly) and hands the finished blob to the archive pipeline while later parts arrive."""

    def __init__(
        self, ctx: Context, origin: Origin, study_uid: str | None, stores: Executor
    ) -> None:
        self.ctx = ctx
        self.stores = stores
        self.origin = origin
        self.study_uid = study_uid
        self.tasks: list[asyncio.Future[StoreOutcome]] = []
        self.current: BlobWriter | None = None
        self.refused: tuple[str, Status] | None = None
        #: The part's first bytes, kept to name the instance if the part is refused.
        self.head = bytearray()

    def begin(self, content_type: str) -> None:
        self.head = bytearray()
        part_type = parse_media_type(content_type)[0] if content_type else media.DICOM
        if part_type != media.DICOM:
            self.refused = (
                f"part {len(self.tasks) + 1} is {part_type}; this server stores {media.DICOM} parts",
                Status.REJECTED,
            )
            return
        try:
            self.current = self.ctx.archive.begin_blob()
        except StorageFullError as exc:
            self.refused = (str(exc), Status.STORAGE_FULL)

    async def write(self, data: bytes) -> None:
        """Small parts collect in memory on the event loop; once a part is past
        ``SMALL_BLOB`` its bytes go to disk from the threadpool, never blocking the loop."""
        if len(self.head) < IDENTITY_HEAD:
            self.head += data[: IDENTITY_HEAD - len(self.head)]
        if self.current is None:
            return
        try:
            if self.current.size + len(data) <= SMALL_BLOB:
                self.current.write(data)
            else:
                await run_in_threadpool(self.current.write, data)
        except StorageFullError as exc:
            self.ctx.archive.abort_blob(self.current)
            self.current = None
            self.refused = (str(exc), Status.STORAGE_FULL)

    def end(self) -> None:
        if self.refused is not None:
            reason, status = self.refused
            head = bytes(self.head) if status is Status.STORAGE_FULL else b""
            self.tasks.append(_refused(reason, status, head))
            self.refused = None
            return
        assert self.current is not None
        writer, self.current = self.current, None
        # The store's own threads (not Starlette's pool: anyio's hand-off is a sizeable
        # part of a small request's event-loop time), with the request's context (logs).
        run = contextvars.copy_context().run
        loop = asyncio.get_running_loop()
        self.tasks.append(loop.run_in_executor(self.stores, run, self._store, writer))

    def _store(self, writer: BlobWriter) -> StoreOutcome:
        return self.ctx.archive.store_blob(writer, self.origin, expected_study_uid=self.study_uid)

    def abandon(self) -> None:
        """Drop the part being received (the body was cut or refused)."""
        if self.current is not None:
            self.ctx.archive.abort_blob(self.current)
        self.current = None

    async def outcomes(self) -> list[StoreOutcome]:
        return list(await asyncio.gather(*self.tasks))


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(_too_large(limit))
        if chunk:
            yield chunk


def _too_large(limit: int) -> str:
    return f"the request body exceeds the {limit // 2**20} MiB limit (http.max_upload_mb)"


#: Threads storing received parts at once (each mostly waits for its blob's and the
#: index's flushes; concurrent ones share the index's group commit).
STORE_THREADS = 16


def make_stow_endpoint(ctx: Context) -> Any:
    limit = ctx.settings.http.max_upload_mb * 2**20
    stores = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="stow-store")

    async def stow(request: Request) -> Response:
        """PS3.18 10.5.1: POST /studies and /studies/{study}."""
        study_uid = request.path_params.get("study")
        if study_uid is not None:
            check_uid(study_uid, "Study Instance UID")
        _check_accept(request.headers.get("accept"))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(_too_large(limit))
        media_type, params = parse_media_type(request.headers.get("content-type", ""))
        client = request.client
        origin = Origin(
            "stow",
            host=client.host if client else "",
            facilities=principal_of(request).facilities,
        )
        upload = _Upload(ctx, origin, study_uid, stores)
        try:
            if media_type == media.DICOM:
                await _receive_single(request, upload, limit)
            elif media_type == media.MULTIPART_RELATED:
                await _receive_multipart(request, upload, limit, params)
            else:
                raise UnsupportedMediaType(
                    f'STOW-RS accepts multipart/related; type="{media.DICOM}" or {media.DICOM},'
                    f" not {media_type or 'a body without Content-Type'} (PS3.18 10.5.1.2)"
                )
        except (PayloadTooLarge, BadRequest, UnsupportedMediaType, ClientDisconnect):
            upload.abandon()
            await upload.outcomes()  # parts already complete stay stored
            raise
        except BaseException:
            upload.abandon()  # cancelled (shutdown) or unexpected: no half-written part left
            raise
        outcomes = await upload.outcomes()
        for outcome in outcomes:
            ctx.metrics.stored_instances.labels("stow", outcome.status.value).inc()
        stored = sum(1 for o in outcomes if o.ok)
        audit.note(
            request,
            study_uids=[o.study_uid for o in outcomes if o.ok],
            detail=f"{stored} stored, {len(outcomes) - stored} failed",
        )
        if not outcomes:
            raise BadRequest("the request body holds no DICOM part")
        return _response(outcomes, base=public_base(request, ctx.settings), study_uid=study_uid)

    return stow


def _check_accept(accept: str | None) -> None:
    for item in parse_accept(accept):
        if item.matches(media.DICOM_JSON) or item.media_type == media.JSON:
            return
    raise NotAcceptable(
        f"the STOW-RS response is {media.DICOM_JSON}; Accept {accept!r} excludes it"
    )


async def _receive_single(request: Request, upload: _Upload, limit: int) -> None:
    upload.begin(media.DICOM)
    async for chunk in _limited(request, limit):
        await upload.write(chunk)
    upload.end()


async def _receive_multipart(
    request: Request, upload: _Upload, limit: int, params: dict[str, str]
) -> None:
    root = (params.get("type") or media.DICOM).lower()
    if root != media.DICOM:
        raise UnsupportedMediaType(
            f'multipart/related; type="{root}" is not supported: this server stores'
            f" {media.DICOM} parts (PS3.18 10.5.1.2.1)"
        )
    boundary = params.get("boundary")
    if not boundary:
        raise BadRequest("the multipart/related Content-Type has no boundary parameter")
    try:
        parser = MultipartParser(boundary)
        async for chunk in _limited(request, limit):
            for event in parser.feed(chunk):
                if type(event) is PartData:
                    await upload.write(event.data)
                elif type(event) is PartStart:
                    upload.begin(event.content_type)
                elif type(event) is PartEnd:
                    upload.end()
        parser.close()
    except MultipartError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from None


def _response(outcomes: list[StoreOutcome], *, base: str, study_uid: str | None) -> Response:
    """The Store Instances response dataset (PS3.18 10.5.3, Table 10.5.3-2).

    ``Warning`` headers name each part by its position: ``part N failed: reason``,
    ``part N already stored: reason`` (the standard's response cannot tell an
    instance already held from a new one) and ``part N: warning`` (the web
    application's upload summary reads them)."""
    referenced: list[JsonDataset] = []
    failed: list[JsonDataset] = []
    warnings: list[str] = []
    stored_studies: set[str] = set()
    with_warning = False
    for index, outcome in enumerate(outcomes, 1):
        item: JsonDataset = {}
        if outcome.sop_class_uid:
            item[media.TAG_REFERENCED_SOP_CLASS_UID] = single("UI", outcome.sop_class_uid)
        if outcome.sop_instance_uid:
            item[media.TAG_REFERENCED_SOP_INSTANCE_UID] = single("UI", outcome.sop_instance_uid)
        if outcome.ok:
            stored_studies.add(outcome.study_uid)
            item[media.TAG_RETRIEVE_URL] = single(
                "UR",
                f"{base}/studies/{outcome.study_uid}/series/{outcome.series_uid}"
                f"/instances/{outcome.sop_instance_uid}",
            )
            reason = _warning_reason(outcome)
            if reason is not None:
                item[media.TAG_WARNING_REASON] = single("US", reason)
                with_warning = True
            referenced.append(item)
            if outcome.status is Status.ALREADY_STORED:
                warnings.append(f"part {index} already stored: {outcome.reason}")
            warnings.extend(f"part {index}: {text}" for text in outcome.warnings)
        else:
            code = _failure_reason(outcome)
            item[media.TAG_FAILURE_REASON] = single("US", code)
            failed.append(item)
            warnings.append(f"part {index} failed: {outcome.reason}")
            log.info(
                "STOW-RS part %d refused (0x%04X): %s", index, code, scrub_uids(outcome.reason)
            )
    dataset: JsonDataset = {}
    retrieve_study = study_uid or (next(iter(stored_studies)) if len(stored_studies) == 1 else None)
    if retrieve_study and referenced:
        dataset[media.TAG_RETRIEVE_URL] = single("UR", f"{base}/studies/{retrieve_study}")
    if failed:
        dataset[media.TAG_FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
    if referenced:
        dataset[media.TAG_REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": referenced}
    # PS3.18 10.5.3.1: 200 all stored; 202 stored with warnings or some failed; 409 none.
    unavailable = bool(outcomes) and all(o.status is Status.UNAVAILABLE for o in outcomes)
    if unavailable:
        # The index is down (restarting): nothing about the request was wrong, retry it
        # (RFC 9110 15.6.4), with the FailedSOPSequence saying 0xA700 for each instance.
        status = 503
    elif not referenced:
        status = 409
    elif failed or with_warning:
        status = 202
    else:
        status = 200
    response = JSONResponse(dataset, status_code=status, media_type=media.DICOM_JSON)
    if unavailable:
        response.headers["Retry-After"] = "5"
    for text in warnings[:_MAX_WARNING_HEADERS]:
        response.headers.append("Warning", warning_value(text))
    if failed:
        mark_failure_logged()
    log.info("STOW-RS: %d stored, %d failed", len(referenced), len(failed))
    return response


def _failure_reason(outcome: StoreOutcome) -> int:
    if outcome.status in (Status.STORAGE_FULL, Status.UNAVAILABLE):
        return media.FAILURE_OUT_OF_RESOURCES
    if outcome.status is Status.REJECTED and outcome.reject_kind is not None:
        return _FAILURE_REASONS.get(outcome.reject_kind, media.FAILURE_CANNOT_UNDERSTAND)
    return media.FAILURE_PROCESSING


def _warning_reason(outcome: StoreOutcome) -> int | None:
    """The archive stores what it receives (never coerces); an instance whose header
    contradicts itself is stored with 0xB007 (Data Set does not match SOP Class)."""
    if any("differs" in text for text in outcome.warnings):
        return media.WARNING_DATASET_MISMATCH
    return None
