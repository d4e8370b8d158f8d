"""WADO-RS metadata (PS3.18 10.4.1.1.2) and bulk data (PS3.18 10.4.1.1.5).

Metadata is the DICOM JSON recorded at ingest: the stored texts are joined
as they are and the base URL placeholder in their BulkDataURIs replaced by
the public base URL, so a series' metadata never touches a file nor decodes
JSON.  An ETag over the exact body answers ``If-None-Match`` with 304.
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from starlette.requests import Request
from starlette.responses import Response

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotAcceptable, NotFound
from dicomweb.frames import frames_response
from dicomweb.multipart import new_boundary, related_content_type, write_parts
from dicomweb.negotiation import parse_accept
from dicomweb.resources import Context, describe, locate_or_404, path_uids, public_base
from storage.archive import BASE_URL_PLACEHOLDER

_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        value = candidate.strip()
        if value == "*" or value.removeprefix("W/") == etag:
            return True
    return False


def make_metadata_endpoint(ctx: Context) -> Any:
    archive = ctx.archive

    def metadata(request: Request) -> Response:
        """PS3.18 10.4.1.1.2: metadata of a study, series or instance as DICOM JSON."""
        study, series, sop = path_uids(request)
        accept = request.headers.get("accept")
        if not any(
            r.matches(media.DICOM_JSON) or r.media_type == media.JSON for r in parse_accept(accept)
        ):
            raise NotAcceptable(
                f"metadata is available as {media.DICOM_JSON}; Accept {accept!r} excludes it"
            )
        assert study is not None
        items = archive.metadata(study, series, sop, principal=principal_of(request))
        if not items:
            raise NotFound(f"{describe(study, series, sop)} is not in the archive")
        body = ("[" + ",".join(items) + "]").replace(
            BASE_URL_PLACEHOLDER, public_base(request, ctx.settings)
        )
        data = body.encode("utf-8")
        etag = '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media.DICOM_JSON, headers=headers)

    return metadata


def make_bulkdata_endpoint(ctx: Context) -> Any:
    archive = ctx.archive

    def bulkdata(request: Request) -> Response:
        """PS3.18 10.4.1.1.5: the value of one bulk data element, by the URI in the metadata."""
        study, series, sop = path_uids(request)
        text = request.path_params["tag"]
        if len(text) != 8 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise BadRequest(f"bulk data tag {text[:20]!r} is not 8 hexadecimal digits")
        tag = int(text, 16)
        location = locate_or_404(archive, study, series, sop, principal=principal_of(request))[0]
        if tag in _PIXEL_TAGS:
            count = len(location.frames or []) or 1
            return frames_response(ctx, request, location, list(range(1, count + 1)), bulk=True)
        with archive.open_blob(location) as fh:
            value = _element_value(fh, tag)
        if value is None:
            raise NotFound(f"instance {sop} has no bulk data element ({text[:4]},{text[4:]})")
        return _octets_response(request, value)

    return bulkdata


def _octets_response(request: Request, value: bytes) -> Response:
    """One bulk data value: bare octets when asked for, else a one-part multipart message."""
    accept = parse_accept(request.headers.get("accept"))
    if any(r.media_type == media.OCTET_STREAM for r in accept[:1]):
        return Response(value, media_type=media.OCTET_STREAM)
    if not any(
        r.matches(media.OCTET_STREAM)
        or (r.media_type == media.MULTIPART_RELATED and r.type_param in (None, media.OCTET_STREAM))
        for r in accept
    ):
        raise NotAcceptable(
            f'bulk data is available as multipart/related; type="{media.OCTET_STREAM}"'
        )
    boundary = new_boundary()
    body = b"".join(write_parts(boundary, [(media.OCTET_STREAM, len(value), [value])]))
    return Response(body, media_type=related_content_type(boundary, media.OCTET_STREAM))


def _element_value(source: BinaryIO, tag: int) -> bytes | None:
    """Raw bytes of element ``tag``: top level first, then anywhere in sequences."""
    ds = dcmread(source, stop_before_pixels=True, specific_tags=[tag])
    if tag in ds:
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement) and raw.value is not None:
            return bytes(raw.value)
        return _as_bytes(ds[tag].value)
    source.seek(0)
    full = dcmread(source, stop_before_pixels=True)
    for element in full.iterall():
        if int(element.tag) == tag:
            return _as_bytes(element.value)
    return None


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode("utf-8")
