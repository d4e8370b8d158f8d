"""WADO-RS retrieve of study / series / instance (PS3.18 10.4): DICOM instances streamed
from the blobs as multipart/related; type="application/dicom".

Transfer syntax negotiation (PS3.18 8.7.3.5): ``transfer-syntax=*`` sends
every instance as stored; no parameter means the media type's default,
Explicit VR Little Endian, decoding compressed instances when a decoder is
installed; a syntax that cannot be produced for every instance is 406
before any byte is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import InternalError, NotAcceptable
from dicomweb.multipart import framing_size, new_boundary, related_content_type, write_parts
from dicomweb.negotiation import choose
from dicomweb.resources import Context, describe, locate_or_404, path_uids
from dicomweb.transcode import can_decode, to_explicit_little_endian
from storage.archive import Archive, InstanceLocation

CHUNK = 4 << 20


@dataclass(frozen=True)
class Planned:
    location: InstanceLocation
    transfer_syntax_uid: str
    transcode: bool

    @property
    def content_type(self) -> str:
        return f"{media.DICOM}; transfer-syntax={self.transfer_syntax_uid}"


def plan_instance(location: InstanceLocation, syntaxes: tuple[str | None, ...]) -> Planned | None:
    """The first acceptable way to send ``location``, or ``None`` when there is none."""
    stored = location.transfer_syntax_uid
    for syntax in syntaxes:
        if syntax == media.ANY_TRANSFER_SYNTAX or syntax == stored:
            return Planned(location, stored, False)
        if syntax in (None, media.EXPLICIT_VR_LITTLE_ENDIAN):
            if stored == media.EXPLICIT_VR_LITTLE_ENDIAN:
                return Planned(location, stored, False)
            if can_decode(stored):
                return Planned(location, media.EXPLICIT_VR_LITTLE_ENDIAN, True)
    return None


def plan_all(
    locations: list[InstanceLocation], syntaxes: tuple[str | None, ...], what: str
) -> list[Planned]:
    plans = []
    for location in locations:
        plan = plan_instance(location, syntaxes)
        if plan is None:
            wanted = ", ".join(s or media.EXPLICIT_VR_LITTLE_ENDIAN for s in syntaxes)
            raise NotAcceptable(
                f"{what}: instance {location.sop_uid} is stored as"
                f" {location.transfer_syntax_uid} and cannot be sent as {wanted}"
                " (ask for transfer-syntax=* to get it as stored)"
            )
        plans.append(plan)
    return plans


def instance_chunks(archive: Archive, plan: Planned) -> Iterator[bytes]:
    if not plan.transcode:
        yield from archive.iter_blob(plan.location, CHUNK)
        return
    with archive.open_blob(plan.location) as fh:
        yield to_explicit_little_endian(fh)


def make_retrieve_endpoint(ctx: Context) -> Any:
    archive = ctx.archive

    def retrieve(request: Request) -> Response:
        """PS3.18 10.4.1: Retrieve Transaction, instance resources."""
        study, series, sop = path_uids(request)
        what = describe(study, series, sop)
        choice = choose(
            request.headers.get("accept"),
            part_types=(media.DICOM,),
            single_allowed=sop is not None,
            resource=what,
        )
        locations = locate_or_404(archive, study, series, sop, principal=principal_of(request))
        missing = archive.missing_blobs(locations)
        if missing:
            raise InternalError(
                f"{len(missing)} indexed instance(s) of {what} have no stored file"
                f" (first: {missing[0]}); run `noctis-pacs verify`"
            )
        plans = plan_all(locations, choice.transfer_syntaxes, what)
        if not choice.multipart:
            plan = plans[0]
            headers = {} if plan.transcode else {"Content-Length": str(plan.location.size)}
            return StreamingResponse(
                instance_chunks(archive, plan), media_type=plan.content_type, headers=headers
            )
        boundary = new_boundary()
        headers = {}
        if not any(p.transcode for p in plans):
            size = framing_size(
                boundary, [p.content_type for p in plans], [p.location.size for p in plans]
            )
            headers["Content-Length"] = str(size)
        parts = (
            (p.content_type, None if p.transcode else p.location.size, instance_chunks(archive, p))
            for p in plans
        )
        return StreamingResponse(
            write_parts(boundary, parts),
            headers=headers,
            media_type=related_content_type(boundary, media.DICOM),
        )

    return retrieve
