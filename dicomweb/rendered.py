"""Rendered resources (PS3.18 10.4.1.1.3, 8.3.5), thumbnails, and the MPR/MIP extension.

Routes are plain ``def`` endpoints (blocking work runs in the threadpool).
Errors are the app's typed errors; rendering errors map through
``dicomweb.errors`` (bad parameter 400, not renderable / not a volume 422).

Documented choices:
- Series and study ``/rendered`` with ``Accept: multipart/related; type="image/..."``
  return every instance's first frame as parts (PS3.18 10.4.1.1.3); with a
  single-part ``image/...`` Accept they return the middle instance, which is
  what dicomweb-client's ``retrieve_series_rendered`` asks for.
- Thumbnails (beyond the rendered resource) are the middle instance's first
  frame (for a frame URL, that frame), fitted into ``rendering.thumbnail_size``
  unless a ``viewport`` is given, and cached (blobs never change).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotAcceptable
from dicomweb.multipart import closing, new_boundary, part_head, related_content_type
from dicomweb.negotiation import parse_accept
from dicomweb.resources import check_uid, locate_or_404
from noctis_pacs.core.auth import Principal
from noctis_pacs.rendering import (
    BadRenderParameter,
    NotRenderable,
    Plane,
    Viewport,
    Volume,
    VolumeCache,
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
from storage.archive import Archive, InstanceLocation, NoPixelDataError

V = TypeVar("V")
JPEG, PNG, OCTETS = "image/jpeg", "image/png", media.OCTET_STREAM
IMAGE_TYPES = (JPEG, PNG)
GEOMETRY_HEADERS = {
    "ImagePositionPatient": "Noctis-Image-Position-Patient",
    "ImageOrientationPatient": "Noctis-Image-Orientation-Patient",
    "PixelSpacing": "Noctis-Pixel-Spacing",
    "Rows": "Noctis-Rows",
    "Columns": "Noctis-Columns",
}


def negotiate(request: Request, offered: tuple[str, ...], what: str) -> tuple[str, bool]:
    """(media type, multipart?) for the best acceptable offer; 406 naming the offers."""
    for accepted in parse_accept(request.headers.get("accept")):
        if accepted.media_type == media.MULTIPART_RELATED:
            part = accepted.type_param or offered[0]
            if part in offered:
                return part, True
            continue
        for candidate in offered:
            if accepted.matches(candidate):
                return candidate, False
    raise NotAcceptable(f"{what} are available as {', '.join(offered)}")


def _floats(text: str | None, count: int, name: str) -> tuple[float, ...] | None:
    if text is None or text == "":
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise BadRequest(f"{name} must be {count} comma-separated numbers") from None
    if len(values) != count or not all(np.isfinite(values)):
        raise BadRequest(f"{name} must be {count} comma-separated finite numbers")
    return values


def _float(text: str | None, name: str) -> float | None:
    value = _floats(text, 1, name)
    return None if value is None else value[0]


def _quality(text: str | None, default: int) -> int:
    value = _float(text, "quality")
    if value is None:
        return default
    if not 1 <= value <= 100:
        raise BadRequest("quality must be between 1 and 100 (PS3.18 8.3.5.1.4)")
    return int(value)


def encode(image: np.ndarray, media_type: str, quality: int) -> bytes:
    return encode_png(image) if media_type == PNG else encode_jpeg(image, quality)


def _window(text: str | None) -> Window | None:
    return Window.parse(text) if text else None


class LruCache(Generic[V]):
    """A small thread-safe LRU keyed by blob and parameters (blobs are immutable)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, ...], V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, ...], value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


class Renderer:
    """Everything the rendered routes need, built once by the app."""

    def __init__(
        self,
        *,
        archive: Archive,
        cache: VolumeCache,
        thumbnail_size: int = 128,
        jpeg_quality: int = 90,
    ) -> None:
        self.archive = archive
        self.cache = cache
        self.thumbnail = Viewport(thumbnail_size, thumbnail_size)
        self.jpeg_quality = jpeg_quality
        self.thumbnails: LruCache[bytes] = LruCache(1024)
        self.headers: LruCache[Dataset] = LruCache(512)

    def header(self, location: InstanceLocation) -> Dataset:
        """The header read from the blob (palette and VOI LUT data are bulk data), cached."""
        key = (location.blob_key,)
        ds = self.headers.get(key)
        if ds is None:
            with self.archive.open_blob(location) as fh:
                ds = dcmread(fh, stop_before_pixels=True)
            self.headers.put(key, ds)
        return ds

    def frame_image(
        self, location: InstanceLocation, number: int, window: Window | None
    ) -> np.ndarray:
        try:
            frame = self.archive.frame_bytes(location, number)
        except IndexError as exc:
            raise BadRequest(str(exc)) from None
        except NoPixelDataError as exc:
            raise NotRenderable(str(exc)) from None
        except LookupError as exc:
            raise BadRenderParameter(str(exc)) from None
        return render_frame(
            self.header(location), frame, location.transfer_syntax_uid, window=window
        )

    def volume(
        self, study: str, series: str, *, principal: Principal
    ) -> tuple[Volume, BackgroundTask | None]:
        """The series volume (built once, cached), and the task that completes it after
        the response, until done: the copy that makes constant-column planes contiguous
        (counted in the cache bound from the start)."""
        found = locate_or_404(self.archive, study, series, None, principal=principal)

        def build() -> Volume:
            return volume_from_frames(
                (
                    (self.header(loc), self.archive.frame_bytes(loc, 1), loc.transfer_syntax_uid)
                    for loc in found
                ),
                column_copy=True,
            )

        key = f"{series}:{len(found)}"
        volume = self.cache.get_or_build(key, build)
        if volume.by_column is not None:
            return volume, None
        return volume, BackgroundTask(self.cache.build_column_copy, key)


def _frame_numbers(request: Request) -> list[int]:
    text = str(request.path_params.get("frames", "1"))
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        raise BadRequest(f"frame numbers must be positive integers, got {text!r}") from None
    if not numbers or min(numbers) < 1:
        raise BadRequest(f"frame numbers start at 1, got {text!r} (PS3.18 10.4.1.1.5)")
    return numbers


def _uids(request: Request) -> tuple[str, str | None, str | None]:
    params = request.path_params
    study = check_uid(params["study"], "Study Instance UID")
    series = params.get("series")
    instance = params.get("instance")
    return (
        study,
        check_uid(series, "Series Instance UID") if series else None,
        check_uid(instance, "SOP Instance UID") if instance else None,
    )


def rendered_routes(*, renderer: Renderer, prefix: str = "") -> list[Route]:
    """Starlette routes for rendered/thumbnail resources and series MPR/MIP under ``prefix``."""
    archive = renderer.archive

    def present(image: np.ndarray, request: Request) -> np.ndarray:
        viewport_text = request.query_params.get("viewport")
        if viewport_text:
            viewport = Viewport.parse(viewport_text)
            return fit_viewport(image, viewport.width, viewport.height, viewport.region)
        return image

    def rendered(request: Request) -> Response:
        """PS3.18 10.4.1.1.3: rendered instance, frames, series and study."""
        media_type, multipart = negotiate(request, IMAGE_TYPES, "rendered resources")
        study, series, instance = _uids(request)
        found = locate_or_404(archive, study, series, instance, principal=principal_of(request))
        window = _window(request.query_params.get("window"))
        quality = _quality(request.query_params.get("quality"), renderer.jpeg_quality)
        numbers = _frame_numbers(request)
        if instance is not None:
            targets = [(found[0], n) for n in numbers]
        elif multipart:
            targets = [(loc, 1) for loc in found]
        else:
            targets = [(found[len(found) // 2], 1)]
        if not multipart and len(targets) == 1:
            location, number = targets[0]
            image = present(renderer.frame_image(location, number, window), request)
            return Response(encode(image, media_type, quality), media_type=media_type)
        boundary = new_boundary()

        def parts() -> Iterator[bytes]:
            for index, (location, number) in enumerate(targets):
                image = present(renderer.frame_image(location, number, window), request)
                yield part_head(boundary, media_type, first=index == 0)
                yield encode(image, media_type, quality)
            yield closing(boundary)

        return StreamingResponse(parts(), media_type=related_content_type(boundary, media_type))

    def thumbnail(request: Request) -> Response:
        """Thumbnails (PS3.18 10.4.1.1.4 / 8.3.5): a representative frame, small and cached."""
        media_type, _ = negotiate(request, IMAGE_TYPES, "thumbnails")
        study, series, instance = _uids(request)
        found = locate_or_404(archive, study, series, instance, principal=principal_of(request))
        location = found[0] if instance else found[len(found) // 2]
        number = _frame_numbers(request)[0]
        viewport = request.query_params.get("viewport", "")
        window = request.query_params.get("window", "")
        key = (location.blob_key, str(number), media_type, viewport, window)
        data = renderer.thumbnails.get(key)
        if data is None:
            image = renderer.frame_image(location, number, _window(window))
            if viewport:
                image = present(image, request)
            else:
                size = renderer.thumbnail
                image = fit_viewport(image, size.width, size.height)
            data = encode(image, media_type, renderer.jpeg_quality)
            renderer.thumbnails.put(key, data)
        return Response(data, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    def plane_response(
        request: Request, plane: Plane, volume: Volume, complete: BackgroundTask | None
    ) -> Response:
        media_type, _ = negotiate(request, (*IMAGE_TYPES, OCTETS), "planes")
        if media_type == OCTETS:
            body = np.ascontiguousarray(plane.pixels, dtype="<f4").tobytes()
        else:
            image = apply_voi(
                plane.pixels, volume.header, _window(request.query_params.get("window"))
            )
            quality = _quality(request.query_params.get("quality"), renderer.jpeg_quality)
            body = encode(present(image, request), media_type, quality)
        headers = {GEOMETRY_HEADERS[k]: v for k, v in plane.dicom_strings().items()}
        return Response(body, media_type=media_type, headers=headers, background=complete)

    def plane_normal(request: Request) -> tuple[float, ...] | str:
        normal = _floats(request.query_params.get("normal"), 3, "normal")
        return normal if normal is not None else request.query_params.get("plane", "axial")

    def mpr_route(request: Request) -> Response:
        """Beyond the standard: a plane through the series volume (README: MPR and MIP)."""
        study, series, _ = _uids(request)
        volume, complete = renderer.volume(study, series or "", principal=principal_of(request))
        plane = mpr(
            volume,
            normal=plane_normal(request),
            point=_floats(request.query_params.get("point"), 3, "point"),
            spacing=_float(request.query_params.get("spacing"), "spacing"),
        )
        return plane_response(request, plane, volume, complete)

    def mip_route(request: Request) -> Response:
        """Beyond the standard: a max / min / average projection over a slab."""
        study, series, _ = _uids(request)
        mode = request.query_params.get("mode", "max")
        if mode not in ("max", "min", "avg"):
            raise BadRequest("mode must be max, min or avg")
        volume, complete = renderer.volume(study, series or "", principal=principal_of(request))
        plane = mip(
            volume,
            normal=plane_normal(request),
            point=_floats(request.query_params.get("point"), 3, "point"),
            thickness=_float(request.query_params.get("thickness"), "thickness"),
            mode=mode,  # type: ignore[arg-type]
        )
        return plane_response(request, plane, volume, complete)

    study_path = f"{prefix}/studies/{{study}}"
    series_path = f"{study_path}/series/{{series}}"
    instance_path = f"{series_path}/instances/{{instance}}"
    get = ["GET"]
    return [
        Route(f"{instance_path}/rendered", rendered, methods=get),
        Route(f"{instance_path}/frames/{{frames}}/rendered", rendered, methods=get),
        Route(f"{series_path}/rendered", rendered, methods=get),
        Route(f"{study_path}/rendered", rendered, methods=get),
        Route(f"{instance_path}/thumbnail", thumbnail, methods=get),
        Route(f"{instance_path}/frames/{{frames}}/thumbnail", thumbnail, methods=get),
        Route(f"{series_path}/thumbnail", thumbnail, methods=get),
        Route(f"{study_path}/thumbnail", thumbnail, methods=get),
        Route(f"{series_path}/mpr", mpr_route, methods=get),
        Route(f"{series_path}/mip", mip_route, methods=get),
    ]


def wado_uri_renderers(renderer: Renderer) -> dict[str, Any]:
    """WADO-URI image/jpeg and image/png (PS3.18 9.1.2.2): ``windowCenter``,
    ``windowWidth``, ``rows``, ``columns``, ``frameNumber``, ``imageQuality``."""

    def handler(media_type: str) -> Any:
        def render(request: Request, location: InstanceLocation) -> Response:
            params = request.query_params
            center, width = params.get("windowCenter"), params.get("windowWidth")
            if (center is None) != (width is None):
                raise BadRequest("windowCenter and windowWidth go together (PS3.18 9.1.2.2.2)")
            window = None
            if center is not None and width is not None:
                window = Window.parse(f"{center},{width}")
            number = int(_float(params.get("frameNumber"), "frameNumber") or 1)
            image = renderer.frame_image(location, number, window)
            rows = _float(params.get("rows"), "rows")
            columns = _float(params.get("columns"), "columns")
            if rows or columns:
                height = int(rows or image.shape[0] * (columns or 0) / image.shape[1])
                width_px = int(columns or image.shape[1] * (rows or 0) / image.shape[0])
                image = fit_viewport(image, max(width_px, 1), max(height, 1))
            quality = _quality(params.get("imageQuality"), renderer.jpeg_quality)
            return Response(encode(image, media_type, quality), media_type=media_type)

        return render

    return {JPEG: handler(JPEG), PNG: handler(PNG)}
