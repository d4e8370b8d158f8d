"""WADO-RS retrieve of a study or series as one zip file (PS3.18 8.7.3.1, the
``application/zip`` payload of Supplement 211): the stored DICOM files, as stored.

Asked for with ``Accept: application/zip`` or, from a plain link (the web
application's "Download zip"), the ``accept`` query parameter (PS3.18 8.3.3.1):
``GET /dicom-web/studies/{study}?accept=application/zip``.  Any other request goes on
to the multipart retrieve (``dicomweb.wado``): ``*/*`` keeps meaning multipart.

It is the retrieve resource itself, so it needs what a retrieve needs (``RETRIEVE``
in ``dicomweb.auth.required_permission``), is scoped to the principal's facilities
(an instance outside them is not found, as for the multipart retrieve) and is on the
audit trail as a retrieve of the study (``dicomweb.audit``, by route).  Files are
named ``STUDY/SERIES/SOP.dcm`` and stored without compression (DICOM pixel data is
often compressed already; the archive streams instead of burning a core); the zip is
written as it is sent (data descriptors, ZIP64 past 4 GiB), never held in memory or
on disk.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

from starlette.requests import Request
from starlette.responses import StreamingResponse

from dicomweb.auth import principal_of
from dicomweb.errors import NotAcceptable
from dicomweb.multipart import parse_media_type, split_params
from dicomweb.resources import (
    Context,
    describe,
    gathered,
    locate_or_404,
    path_uids,
    require_blobs,
)
from storage.archive import Archive, InstanceLocation

ZIP = "application/zip"
CHUNK = 1 << 20
#: Above this size an entry gets ZIP64 sizes from the start (its size is known).
_ZIP64_AT = (1 << 31) - 1


def wants_zip(request: Request) -> bool:
    """``accept`` (query) or ``Accept`` names ``application/zip`` before anything else."""
    wanted = request.query_params.get("accept") or request.headers.get("accept") or ""
    for item in split_params(wanted, ","):
        if not item:
            continue
        media_type, params = parse_media_type(item)
        if params.get("q", "1").strip() in ("0", "0.0", "0.00", "0.000"):
            continue
        return media_type == ZIP
    return False


def _check_syntax(request: Request) -> None:
    """Files go as stored: a ``transfer-syntax`` other than ``*`` cannot be honoured."""
    wanted = request.query_params.get("accept") or request.headers.get("accept") or ""
    _, params = parse_media_type(split_params(wanted, ",")[0])
    syntax = params.get("transfer-syntax", "*").strip()
    if syntax != "*":
        raise NotAcceptable(
            f"application/zip is sent with each instance as stored; transfer-syntax={syntax}"
            " is not offered (ask for transfer-syntax=* or leave it out)"
        )


class _Sink:
    """What ``zipfile`` writes, kept until the generator hands it on."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def drain(self) -> Iterator[bytes]:
        if self.chunks:
            out = b"".join(self.chunks)
            self.chunks.clear()
            yield out


def zip_stream(archive: Archive, locations: list[InstanceLocation]) -> Iterator[bytes]:
    """The zip of ``locations``' stored files, produced as it is read."""
    sink = _Sink()
    now = time.localtime()
    moment = (now.tm_year, now.tm_mon, now.tm_mday, now.tm_hour, now.tm_min, now.tm_sec)
    # Not seekable: zipfile writes sizes in data descriptors after each member.
    out = cast(IO[bytes], sink)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for location in locations:
            name = f"{location.study_uid}/{location.series_uid}/{location.sop_uid}.dcm"
            info = zipfile.ZipInfo(name, date_time=moment)
            info.file_size = location.size
            with zf.open(info, "w", force_zip64=location.size > _ZIP64_AT) as member:
                for chunk in archive.iter_blob(location, CHUNK):
                    member.write(chunk)
                    yield from sink.drain()
            yield from sink.drain()
    yield from sink.drain()


def with_zip(ctx: Context, retrieve: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """The retrieve endpoint, answering ``application/zip`` itself for studies and series."""
    archive = ctx.archive

    def endpoint(request: Request) -> Any:
        study, series, sop = path_uids(request)
        if sop is not None or not wants_zip(request):
            return retrieve(request)
        _check_syntax(request)
        what = describe(study, series, sop)
        locations = locate_or_404(archive, study, series, sop, principal=principal_of(request))
        require_blobs(archive, locations, what)
        filename = f"{series or study}.zip"
        return StreamingResponse(
            gathered(zip_stream(archive, locations)),
            media_type=ZIP,
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Cache-Control": "no-store",
            },
        )

    return endpoint
