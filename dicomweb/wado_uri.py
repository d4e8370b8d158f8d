"""WADO-URI (PS3.18 9): ``/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=``.

``contentType=application/dicom`` streams the instance; ``transferSyntax``
defaults to Explicit VR Little Endian as the standard says (PS3.18 9.1.2.2.3),
so files stored compressed are decoded unless the client names their syntax
(or ``*``, beyond the standard, for "as stored").
Rendered types (``image/jpeg``, ``image/png``, PS3.18 9.1.2.2.1 default
``image/jpeg``) are served by handlers the rendering module registers in
``renderers``; until then they are 406.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotAcceptable
from dicomweb.resources import Context, check_uid, locate_or_404, require_blobs
from dicomweb.wado import plan_instance, produce
from storage.archive import InstanceLocation

#: contentType -> handler(request, location) producing the rendered response.
Renderer = Callable[[Request, InstanceLocation], Response]

#: PS3.18 9.1.2.2.1: image/jpeg when contentType is absent (single-frame images).
DEFAULT_CONTENT_TYPE = "image/jpeg"


def make_wado_uri_endpoint(ctx: Context, renderers: Mapping[str, Renderer] | None = None) -> Any:
    archive = ctx.archive
    rendered = dict(renderers or {})

    def wado(request: Request) -> Response:
        """PS3.18 9.1: Retrieve DICOM Object."""
        params = request.query_params
        request_type = params.get("requestType")
        if request_type != "WADO":
            raise BadRequest(f"requestType must be WADO, got {request_type!r} (PS3.18 9.1.2.1.1)")
        uids = []
        for name, what in (
            ("studyUID", "Study Instance UID"),
            ("seriesUID", "Series Instance UID"),
            ("objectUID", "SOP Instance UID"),
        ):
            value = params.get(name)
            if not value:
                raise BadRequest(f"{name} is required (PS3.18 9.1.2.1)")
            uids.append(check_uid(value, what))
        wanted = [c.strip() for c in params.get("contentType", DEFAULT_CONTENT_TYPE).split(",")]
        location = locate_or_404(
            archive, uids[0], uids[1], uids[2], principal=principal_of(request)
        )[0]
        require_blobs(archive, [location], "the instance")
        for content_type in wanted:
            base_type = content_type.split(";")[0].strip().lower()
            if base_type == media.DICOM:
                syntax = params.get("transferSyntax") or media.EXPLICIT_VR_LITTLE_ENDIAN
                plan = plan_instance(location, (syntax,))
                if plan is None:
                    continue
                (part,) = produce(archive, [plan], "the object", spool=False)
                return StreamingResponse(
                    part.chunks(archive),
                    media_type=media.DICOM,
                    headers={"Content-Length": str(part.size)},
                )
            handler = rendered.get(base_type)
            if handler is not None:
                return handler(request, location)
        offered = ", ".join([media.DICOM, *sorted(rendered)])
        raise NotAcceptable(
            f"contentType {','.join(wanted)!r} cannot be produced for this object; available: {offered}"
        )

    return wado
