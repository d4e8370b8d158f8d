"""WADO-RS frames (PS3.18 10.4.1.1.4): pixel data of chosen frames, sliced by the byte
ranges recorded at ingest (no file parsing on the hot path).

Media types (PS3.18 8.7.3.3 / 8.7.3.5, Table 8.7.3-5): uncompressed frames
are ``application/octet-stream``; compressed frames go in their own media
type (``image/jpeg``, ``image/jp2``, ``image/jls``, ``image/x-dicom-rle``...)
as stored, or as ``application/octet-stream`` with ``transfer-syntax=*``;
asking for uncompressed octets of a compressed frame decodes it; anything
else is 406.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotAcceptable, NotFound
from dicomweb.multipart import new_boundary, related_content_type, write_parts
from dicomweb.negotiation import MediaRange, parse_accept
from dicomweb.resources import Context, gathered, locate_or_404, path_uids
from noctis_pacs.core.transcode import can_decode, decode_frame
from storage.archive import Archive, InstanceLocation

_MAX_FRAMES_IN_LIST = 10000


@dataclass(frozen=True)
class FramePlan:
    root_type: str
    part_type: str
    transfer_syntax_uid: str
    decode: bool
    multipart: bool

    @property
    def content_type(self) -> str:
        return f"{self.part_type}; transfer-syntax={self.transfer_syntax_uid}"


def parse_frame_list(text: str) -> list[int]:
    """``1,3,5`` -> [1, 3, 5] (PS3.18 10.4.1.1.4: a comma-separated list, 1-based)."""
    numbers = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isdigit() or int(piece) < 1:
            raise BadRequest(
                f"frame list {text[:60]!r}: {piece!r} is not a frame number (1, 2, ...)"
            )
        numbers.append(int(piece))
    if len(numbers) > _MAX_FRAMES_IN_LIST:
        raise BadRequest(f"at most {_MAX_FRAMES_IN_LIST} frames per request")
    return numbers


def plan_frames(stored: str, ranges: list[MediaRange], count: int) -> FramePlan:
    """Pick how to send frames of an instance stored as ``stored``."""
    native = stored in media.NATIVE_SYNTAXES
    own = media.OCTET_STREAM if native else media.FRAME_MEDIA_TYPES.get(stored, media.OCTET_STREAM)
    label = media.EXPLICIT_VR_LITTLE_ENDIAN if stored == media.IMPLICIT_VR_LITTLE_ENDIAN else stored
    for item in ranges:
        if item.media_type == media.MULTIPART_RELATED:
            wanted, multipart = item.type_param or media.OCTET_STREAM, True
        elif item.media_type in ("*/*", "*", "multipart/*"):
            wanted, multipart = own, True
        else:
            wanted, multipart = item.media_type, False
        if not multipart and count > 1:
            continue
        syntax = item.transfer_syntax
        probe = MediaRange(wanted, {}, 1.0)
        if probe.matches(own) and syntax in (None, media.ANY_TRANSFER_SYNTAX, stored, label):
            return FramePlan(own, own, label, False, multipart)
        if probe.matches(media.OCTET_STREAM) and not native:
            if syntax == media.ANY_TRANSFER_SYNTAX:
                return FramePlan(media.OCTET_STREAM, media.OCTET_STREAM, stored, False, multipart)
            if syntax in (None, media.EXPLICIT_VR_LITTLE_ENDIAN) and can_decode(stored):
                return FramePlan(
                    media.OCTET_STREAM,
                    media.OCTET_STREAM,
                    media.EXPLICIT_VR_LITTLE_ENDIAN,
                    True,
                    multipart,
                )
    raise NotAcceptable(
        f"frames of this instance are {own} (transfer syntax {stored})"
        + ("" if native else f" or decoded {media.OCTET_STREAM}")
        + "; the Accept header allows neither"
    )


def _frame(archive: Archive, location: InstanceLocation, number: int, decode: bool) -> bytes:
    if decode or location.frames is None:
        with archive.open_blob(location) as fh:
            return decode_frame(fh, number)
    return archive.frame_bytes(location, number)


def frames_response(
    ctx: Context,
    request: Request,
    location: InstanceLocation,
    numbers: list[int],
    *,
    bulk: bool = False,
) -> Response:
    archive = ctx.archive
    available = len(location.frames) if location.frames is not None else location.number_of_frames
    if available is None or (
        location.frames is None and not can_decode(location.transfer_syntax_uid)
    ):
        raise NotFound(f"instance {location.sop_uid} has no pixel data frames")
    for number in numbers:
        if number > available:
            raise NotFound(
                f"frame {number} does not exist: instance {location.sop_uid} has {available}"
            )
    plan = plan_frames(
        location.transfer_syntax_uid, parse_accept(request.headers.get("accept")), len(numbers)
    )
    decode = plan.decode or location.frames is None
    if not plan.multipart:
        return Response(_frame(archive, location, numbers[0], decode), media_type=plan.content_type)
    boundary = new_boundary()
    content_type = related_content_type(boundary, plan.root_type)
    if (
        bulk
        and not decode
        and plan.part_type == media.OCTET_STREAM
        and location.transfer_syntax_uid in media.NATIVE_SYNTAXES
    ):
        # Native Pixel Data as bulk data is one value, not a list of frames.
        numbers_all = numbers

        def whole() -> Iterator[bytes]:
            for number in numbers_all:
                yield _frame(archive, location, number, False)

        parts: Any = [(plan.content_type, None, whole())]
    else:
        parts = (
            (plan.content_type, None, iter([_frame(archive, location, n, decode)])) for n in numbers
        )
    if len(numbers) == 1:
        return Response(b"".join(write_parts(boundary, parts)), media_type=content_type)
    return StreamingResponse(gathered(write_parts(boundary, parts)), media_type=content_type)


def make_frames_endpoint(ctx: Context) -> Any:
    archive = ctx.archive

    def frames(request: Request) -> Response:
        """PS3.18 10.4.1.1.4: Retrieve frames of one instance."""
        study, series, sop = path_uids(request)
        numbers = parse_frame_list(request.path_params["frames"])
        location = locate_or_404(archive, study, series, sop, principal=principal_of(request))[0]
        return frames_response(ctx, request, location, numbers)

    return frames
