"""What every DICOMweb handler needs about the request: UIDs, base URL, the archive.

PS3.18 8.2 (resource URIs): UIDs are path segments; a malformed UID is a
client error (400), a well-formed one that names nothing is 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import lru_cache

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.requests import Request

from dicomweb.errors import BadRequest, InternalError, NotFound
from dicomweb.media import DICOMWEB_ROOT
from noctis_pacs.core.auth import Principal
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.settings import Settings
from noctis_pacs.core.uids import describe_uid_problem
from storage.archive import Archive, InstanceLocation


@dataclass(frozen=True)
class Context:
    """The dependencies every handler is built with (STYLE.md: passed in, never global)."""

    settings: Settings
    archive: Archive
    metrics: Metrics


def check_uid(value: str, what: str) -> str:
    """``value`` when it is a UID; 400 naming ``what`` otherwise.

    The rule is ingest's (``noctis_pacs.core.uids``): what the archive stores, it finds.
    """
    problem = describe_uid_problem(what, value)
    if problem is not None:
        raise BadRequest(problem)
    return value


def path_uids(request: Request) -> tuple[str | None, str | None, str | None]:
    params = request.path_params
    study = params.get("study")
    series = params.get("series")
    sop = params.get("instance")
    return (
        check_uid(study, "Study Instance UID") if study is not None else None,
        check_uid(series, "Series Instance UID") if series is not None else None,
        check_uid(sop, "SOP Instance UID") if sop is not None else None,
    )


def public_base(request: Request, settings: Settings) -> str:
    """Base URL of the DICOMweb root as the client sees it.

    The configured ``http.public_base_url`` wins; otherwise X-Forwarded-Proto /
    X-Forwarded-Host (set by reverse proxies); otherwise the request itself.
    """
    configured = settings.http.public_base_url.rstrip("/")
    if configured:
        return configured if configured.endswith(DICOMWEB_ROOT) else configured + DICOMWEB_ROOT
    headers = request.headers
    scope = request.scope
    server = scope.get("server")
    return _base_of(
        scope.get("scheme", "http"),
        (str(server[0]), int(server[1])) if server else None,
        scope.get("app_root_path", scope.get("root_path", "")),
        headers.get("host", ""),
        headers.get("x-forwarded-host", ""),
        headers.get("x-forwarded-proto", ""),
        headers.get("x-forwarded-prefix", ""),
    )


@lru_cache(maxsize=256)  # a client sends the same headers each time: worked out once
def _base_of(
    scheme: str,
    server: tuple[str, int] | None,
    root_path: str,
    host_header: str,
    forwarded_host: str,
    forwarded_proto: str,
    forwarded_prefix: str,
) -> str:
    host = forwarded_host.split(",")[0].strip()
    proto = forwarded_proto.split(",")[0].strip()
    if host:
        prefix = forwarded_prefix.split(",")[0].strip().rstrip("/")
        return f"{proto or scheme}://{host}{prefix}{DICOMWEB_ROOT}"
    # The request's base URL as Starlette makes it (``Request.base_url``).
    headers = [(b"host", host_header.encode("latin-1"))] if host_header else []
    path = root_path if root_path.endswith("/") else root_path + "/"
    url_scope = {"scheme": scheme, "server": server, "root_path": root_path, "path": path,
                 "query_string": b"", "headers": headers}  # fmt: skip
    base = str(URL(scope=url_scope)).rstrip("/")
    if server and host_header == server[0] and server[1] not in (80, 443):
        # Some clients (dicomweb-client 0.61) send ``Host`` without the port; when
        # the host is this server's own address, its port is the one we listen on.
        base = f"{scheme}://{server[0]}:{server[1]}{root_path}"
    if proto:
        base = proto + base[base.index(":") :]
    return base + DICOMWEB_ROOT


def describe(study: str | None, series: str | None, sop: str | None) -> str:
    if sop:
        return f"instance {sop}"
    if series:
        return f"series {series}"
    return f"study {study}"


def locate_or_404(
    archive: Archive,
    study: str | None,
    series: str | None,
    sop: str | None,
    *,
    principal: Principal,
) -> list[InstanceLocation]:
    """The instances named, or 404: also when they lie outside ``principal``'s facilities
    (their existence is not disclosed, issue 13 point 4)."""
    locations = archive.locate_uids(study, series, sop, principal=principal)
    if not locations:
        raise NotFound(f"{describe(study, series, sop)} is not in the archive")
    return locations


def require_blobs(archive: Archive, locations: list[InstanceLocation], what: str) -> None:
    """Refuse, before the first byte, a retrieve of an instance whose stored file is
    missing or damaged: a clear error instead of a body cut short. The instance's
    metadata and the other instances stay available."""
    missing = archive.missing_blobs(locations)
    if missing:
        raise InternalError(
            f"{len(missing)} indexed instance(s) of {what} have a missing or damaged "
            "stored file; the other instances are served on their own; "
            "`noctis-pacs verify` names them"
        )


#: Bytes of a streamed body read per worker-thread hand-off (``gathered``).
GATHER_BYTES = 4 << 20


async def gathered(body: Iterator[bytes], budget: int = GATHER_BYTES) -> AsyncIterator[bytes]:
    """``body``'s chunks, read in a worker thread ``budget`` bytes at a time.

    Starlette runs a plain iterator's every step in a worker thread: for a WADO-RS
    series of 512x512 CT slices that is two thread hand-offs per instance (its part
    head, its file), and as many for a zip's members or a multi-frame retrieve. Here
    one hand-off reads as many chunks as fit in ``budget`` (the chunks are not copied),
    and they are sent one after the other from the event loop: a series of 256 slices
    went from 494 to 621 MB/s (docs/performance.md, issue 15)."""

    def take() -> list[bytes]:
        batch: list[bytes] = []
        size = 0
        for chunk in body:
            batch.append(chunk)
            size += len(chunk)
            if size >= budget:
                break
        return batch

    try:
        while batch := await run_in_threadpool(take):
            for chunk in batch:
                yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()  # a client gone mid-body: the body's own clean-up (scratch files)
