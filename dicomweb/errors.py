"""Typed errors raised by handlers, and the one adapter that turns them into responses.

Every error body is JSON ``{"status": 400, "error": "Bad Request", "detail": "..."}``
so that a client always learns what was wrong (PS3.18 8.5: status codes;
the body content is the server's choice).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomweb.media import WARNING_CODE
from noctis_pacs.core.transcode import ConversionError
from noctis_pacs.rendering.errors import BadRenderParameter, RenderingError
from storage.archive import IndexBusyError


class DicomWebError(Exception):
    """An HTTP failure with the reason the client gets to read."""

    status = 500

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequest(DicomWebError):
    status = 400


class Unauthorized(DicomWebError):
    status = 401


class Forbidden(DicomWebError):
    status = 403


class NotFound(DicomWebError):
    status = 404


class NotAcceptable(DicomWebError):
    status = 406


class PayloadTooLarge(DicomWebError):
    status = 413


class UnsupportedMediaType(DicomWebError):
    status = 415


class InternalError(DicomWebError):
    """The archive itself is inconsistent (not the request): the detail says what to run."""

    status = 500


class ServiceUnavailable(DicomWebError):
    status = 503


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error body every failure uses (the detail also goes in a Warning header)."""
    phrase = HTTPStatus(status).phrase
    merged = dict(headers or {})
    merged.setdefault("Warning", warning_value(detail))
    return JSONResponse(
        {"status": status, "error": phrase, "detail": detail}, status_code=status, headers=merged
    )


def warning_value(text: str) -> str:
    """A ``Warning`` header value (RFC 7234 5.5) with ``text`` made header-safe."""
    safe = text.replace("\\", "\\\\").replace('"', "'").encode("latin-1", "replace")
    # Every control character (a fuzzed UID may carry one) would make the header
    # invalid, and the server would drop the connection instead of answering.
    clean = "".join(c if c >= " " and c != "\x7f" else " " for c in safe.decode("latin-1"))
    return f'{WARNING_CODE} noctis "{clean[:500]}"'


async def handle_dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomWebError)
    return error_response(exc.status, exc.detail, exc.headers)


async def handle_rendering_error(request: Request, exc: Exception) -> Response:
    """Rendering refusals: a bad parameter is 400, an image or series it cannot render 422."""
    assert isinstance(exc, RenderingError)
    status = 400 if isinstance(exc, BadRenderParameter) else 422
    return error_response(status, exc.reason)


async def handle_conversion_error(request: Request, exc: Exception) -> Response:
    """A conversion that failed before the response started (a frame that does not
    decode, say): the representation asked for cannot be produced, 406 with the reason."""
    reason = str(exc).splitlines()[0] if str(exc) else "conversion failed"
    return error_response(406, f"{reason}; ask for the stored transfer syntax (or *)")


async def handle_index_busy(request: Request, exc: Exception) -> Response:
    """The index is overloaded: 503 with Retry-After, not a 500 (RFC 9110 15.6.4)."""
    return error_response(503, f"the archive is busy: {exc}; retry", {"Retry-After": "5"})


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no DICOMweb resource at {request.url.path}"
    elif exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, str(detail), exc.headers)


EXCEPTION_HANDLERS = {
    DicomWebError: handle_dicomweb_error,
    RenderingError: handle_rendering_error,
    IndexBusyError: handle_index_busy,
    ConversionError: handle_conversion_error,
    HTTPException: handle_http_exception,
}
