"""Rendered resources (PS3.18 10.4.1.1.3, 8.3.5) and the MPR/MIP extension.

Routes are plain ``def`` endpoints (blocking work runs in the threadpool).
Mount with ``routes=[..., *rendered_routes(archive=archive, cache=cache)]``
under the ``/dicom-web`` prefix. Error mapping: bad query parameters 400,
nothing acceptable 406, unknown resource 404, not renderable / not a volume
422, each with the reason as plain text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from noctis_pacs.rendering import (
    BadRenderParameter,
    NotRenderable,
    Plane,
    Viewport,
    Volume,
    VolumeCache,
    VolumeError,
    Window,
    apply_voi,
    encode_jpeg,
    encode_png,
    fit_viewport,
    mip,
    mpr,
    render_frame,
    volume_from_frames,
)
from storage.archive import Archive, InstanceLocation

JPEG, PNG, OCTETS = "image/jpeg", "image/png", "application/octet-stream"
THUMBNAIL = Viewport(128, 128)


def _negotiate(request: Request, offered: tuple[str, ...]) -> str | None:
    """First acceptable offered media type in Accept order (PS3.18 8.7.3); JPEG for */*."""
    accept = request.headers.get("accept", "*/*") or "*/*"
    for entry in accept.split(","):
        media, *params = (part.strip() for part in entry.split(";"))
        if any(param.replace(" ", "") in ("q=0", "q=0.0") for param in params):
            continue
        media = media.lower()
        if media in offered:
            return media
        if media in ("*/*", "image/*"):
            return offered[0]
    return None


def _floats(text: str | None, count: int, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise BadRenderParameter(f"{name} must be {count} comma-separated numbers") from None
    if len(values) != count:
        raise BadRenderParameter(f"{name} must be {count} comma-separated numbers")
    return values


def _float(text: str | None, name: str) -> float | None:
    value = _floats(text, 1, name)
    return None if value is None else value[0]


def _encode(image: np.ndarray, request: Request, media: str) -> Response:
    viewport_text = request.query_params.get("viewport")
    if viewport_text:
        viewport = Viewport.parse(viewport_text)
        image = fit_viewport(image, viewport.width, viewport.height, viewport.region)
    if media == PNG:
        return Response(encode_png(image), media_type=PNG)
    quality = int(_float(request.query_params.get("quality"), "quality") or 90)
    return Response(encode_jpeg(image, quality), media_type=JPEG)


def _window(request: Request) -> Window | None:
    text = request.query_params.get("window")
    return Window.parse(text) if text else None


def _errors(endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
    def wrapped(request: Request) -> Response:
        try:
            return endpoint(request)
        except BadRenderParameter as exc:
            return PlainTextResponse(exc.reason, status_code=400)
        except (NotRenderable, VolumeError) as exc:
            return PlainTextResponse(exc.reason, status_code=422)
        except LookupError as exc:
            return PlainTextResponse(str(exc) or "not found", status_code=404)

    return wrapped


def rendered_routes(*, archive: Archive, cache: VolumeCache) -> list[Route]:
    """Starlette routes for rendered/thumbnail resources and series MPR/MIP."""

    def header_of(location: InstanceLocation) -> Dataset:
        with archive.open_blob(location) as fh:
            return dcmread(fh, stop_before_pixels=True)

    def locations(params: dict[str, Any]) -> list[InstanceLocation]:
        found = archive.locate_uids(
            params.get("study"), params.get("series"), params.get("instance")
        )
        if not found:
            raise LookupError("no such instance, series or study")
        return found

    def render_location(location: InstanceLocation, number: int, request: Request) -> np.ndarray:
        frame = archive.frame_bytes(location, number)
        return render_frame(
            header_of(location), frame, location.transfer_syntax_uid, window=_window(request)
        )

    @_errors
    def rendered(request: Request) -> Response:
        media = _negotiate(request, (JPEG, PNG))
        if media is None:
            return PlainTextResponse("rendered resources are image/jpeg or image/png", 406)
        found = locations(dict(request.path_params))
        frames_text = request.path_params.get("frames", "1")
        try:
            number = int(str(frames_text).split(",")[0])
        except ValueError:
            raise BadRenderParameter("frame numbers must be integers") from None
        return _encode(render_location(found[len(found) // 2], number, request), request, media)

    @_errors
    def thumbnail(request: Request) -> Response:
        media = _negotiate(request, (JPEG, PNG))
        if media is None:
            return PlainTextResponse("thumbnails are image/jpeg or image/png", 406)
        found = locations(dict(request.path_params))
        image = render_location(found[len(found) // 2], 1, request)
        if not request.query_params.get("viewport"):
            image = fit_viewport(image, THUMBNAIL.width, THUMBNAIL.height)
        return _encode(image, request, media)

    def volume_of(study: str, series: str) -> Volume:
        found = locations({"study": study, "series": series})

        def build() -> Volume:
            return volume_from_frames(
                (header_of(loc), archive.frame_bytes(loc, 1), loc.transfer_syntax_uid)
                for loc in found
            )

        return cache.get_or_build(f"{series}:{len(found)}", build)

    def plane_response(request: Request, plane: Plane, volume: Volume) -> Response:
        media = _negotiate(request, (JPEG, PNG, OCTETS))
        if media is None:
            return PlainTextResponse("planes are image/jpeg, image/png or octet-stream", 406)
        if media == OCTETS:
            response: Response = Response(
                np.ascontiguousarray(plane.pixels, dtype="<f4").tobytes(), media_type=OCTETS
            )
        else:
            image = apply_voi(plane.pixels, volume.header, _window(request))
            response = _encode(image, request, media)
        for keyword, value in plane.dicom_strings().items():
            name = {
                "ImagePositionPatient": "Noctis-Image-Position-Patient",
                "ImageOrientationPatient": "Noctis-Image-Orientation-Patient",
                "PixelSpacing": "Noctis-Pixel-Spacing",
                "Rows": "Noctis-Rows",
                "Columns": "Noctis-Columns",
            }[keyword]
            response.headers[name] = value
        return response

    def plane_normal(request: Request) -> tuple[float, ...] | str:
        normal = _floats(request.query_params.get("normal"), 3, "normal")
        return normal if normal is not None else request.query_params.get("plane", "axial")

    @_errors
    def mpr_route(request: Request) -> Response:
        volume = volume_of(request.path_params["study"], request.path_params["series"])
        plane = mpr(
            volume,
            normal=plane_normal(request),
            point=_floats(request.query_params.get("point"), 3, "point"),
            spacing=_float(request.query_params.get("spacing"), "spacing"),
        )
        return plane_response(request, plane, volume)

    @_errors
    def mip_route(request: Request) -> Response:
        volume = volume_of(request.path_params["study"], request.path_params["series"])
        mode = request.query_params.get("mode", "max")
        if mode not in ("max", "min", "avg"):
            raise BadRenderParameter("mode must be max, min or avg")
        plane = mip(
            volume,
            normal=plane_normal(request),
            point=_floats(request.query_params.get("point"), 3, "point"),
            thickness=_float(request.query_params.get("thickness"), "thickness"),
            mode=mode,  # type: ignore[arg-type]
        )
        return plane_response(request, plane, volume)

    instance = "/studies/{study}/series/{series}/instances/{instance}"
    return [
        Route(f"{instance}/rendered", rendered),
        Route(f"{instance}/frames/{{frames}}/rendered", rendered),
        Route("/studies/{study}/series/{series}/rendered", rendered),
        Route("/studies/{study}/rendered", rendered),
        Route(f"{instance}/thumbnail", thumbnail),
        Route(f"{instance}/frames/{{frames}}/thumbnail", thumbnail),
        Route("/studies/{study}/series/{series}/thumbnail", thumbnail),
        Route("/studies/{study}/thumbnail", thumbnail),
        Route("/studies/{study}/series/{series}/mpr", mpr_route),
        Route("/studies/{study}/series/{series}/mip", mip_route),
    ]
