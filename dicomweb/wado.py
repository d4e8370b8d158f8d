"""WADO-RS retrieve of study / series / instance (PS3.18 10.4): DICOM instances streamed
from the blobs as multipart/related; type="application/dicom".

Transfer syntax negotiation (PS3.18 8.7.3.5): ``transfer-syntax=*`` sends
every instance as stored; no parameter means the media type's default,
Explicit VR Little Endian, decoding compressed instances when a decoder is
installed; any other native syntax is produced on request too
(``noctis_pacs.core.transcode``, the converter C-MOVE and C-GET use).

Every part is known to be producible before the first byte is sent: the
instances that need a conversion are converted first, into scratch files of
the store, so a conversion that fails is a 406 naming the instance, never a
``200`` cut short mid-stream (docs/dicomweb.md, "Conversions").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import NotAcceptable
from dicomweb.multipart import framing_size, new_boundary, related_content_type, write_parts
from dicomweb.negotiation import choose
from dicomweb.resources import (
    Context,
    describe,
    gathered,
    locate_or_404,
    path_uids,
    require_blobs,
)
from noctis_pacs.core.transcode import ConversionError, can_convert, convert_bytes
from storage.archive import Archive, InstanceLocation, read_sized

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
    """The first acceptable way to send ``location``, or ``None`` when there is none
    (``None`` in ``syntaxes`` is the media type's default, Explicit VR Little Endian)."""
    stored = location.transfer_syntax_uid
    for syntax in syntaxes:
        if syntax == media.ANY_TRANSFER_SYNTAX:
            return Planned(location, stored, False)
        wanted = syntax or media.EXPLICIT_VR_LITTLE_ENDIAN
        if wanted == stored:
            return Planned(location, stored, False)
        if can_convert(stored, wanted):
            return Planned(location, wanted, True)
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


@dataclass(frozen=True)
class Part:
    """One instance ready to send: as stored (from its blob), or converted (``data`` in
    memory, or ``scratch``, a file of the store's temporary area, for multipart)."""

    plan: Planned
    size: int
    data: bytes | None = None
    scratch: Path | None = None

    def chunks(self, archive: Archive) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
        elif self.scratch is not None:
            with open(self.scratch, "rb") as fh:
                yield from read_sized(fh, self.size, CHUNK)
        else:
            yield from archive.iter_blob(self.plan.location, CHUNK)


def produce(archive: Archive, plans: list[Planned], what: str, *, spool: bool) -> list[Part]:
    """Every part, converted where its plan says so, before any byte is sent; a conversion
    that fails is 406 naming the instance and the reason (nothing is left behind)."""
    parts: list[Part] = []
    try:
        for plan in plans:
            if not plan.transcode:
                parts.append(Part(plan, plan.location.size))
                continue
            try:
                with archive.open_blob(plan.location) as fh:
                    data = convert_bytes(fh, plan.transfer_syntax_uid)
            except ConversionError as exc:
                reason = str(exc).splitlines()[0][:300]
                raise NotAcceptable(
                    f"{what}: instance {plan.location.sop_uid} is stored as"
                    f" {plan.location.transfer_syntax_uid} and cannot be converted to"
                    f" {plan.transfer_syntax_uid} ({reason}); ask for transfer-syntax=*"
                    " to get it as stored"
                ) from None
            if not spool:
                parts.append(Part(plan, len(data), data=data))
                continue
            scratch = archive.spool_path()
            scratch.write_bytes(data)
            parts.append(Part(plan, len(data), scratch=scratch))
    except BaseException:
        discard(parts)
        raise
    return parts


def discard(parts: list[Part]) -> None:
    for part in parts:
        if part.scratch is not None:
            with contextlib.suppress(OSError):
                part.scratch.unlink()


def _sent_then_discarded(body: Iterator[bytes], parts: list[Part]) -> Iterator[bytes]:
    try:
        yield from body
    finally:
        discard(parts)


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
        require_blobs(archive, locations, what)
        plans = plan_all(locations, choice.transfer_syntaxes, what)
        if not choice.multipart:
            (part,) = produce(archive, plans[:1], what, spool=False)
            return StreamingResponse(
                gathered(part.chunks(archive)),
                media_type=part.plan.content_type,
                headers={"Content-Length": str(part.size)},
            )
        parts = produce(archive, plans, what, spool=True)
        boundary = new_boundary()
        size = framing_size(boundary, [p.plan.content_type for p in parts], [p.size for p in parts])
        body = write_parts(
            boundary, ((p.plan.content_type, p.size, p.chunks(archive)) for p in parts)
        )
        return StreamingResponse(
            gathered(_sent_then_discarded(body, parts)),
            headers={"Content-Length": str(size)},
            media_type=related_content_type(boundary, media.DICOM),
        )

    return retrieve
