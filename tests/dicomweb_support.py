"""Helpers shared by the DICOMweb tests (synthetic data, fresh UIDs, multipart bodies)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom.data
from pydicom import dcmread

from tests.factory import uid

BUNDLED = Path(pydicom.data.__file__).parent / "test_files"


def fresh_bundled(name: str, *, study_uid: str | None = None) -> bytes:
    """A bundled pydicom file with new UIDs, in its own transfer syntax (no re-encoding
    of pixel data), so every test stores instances nobody else stored."""
    ds = dcmread(BUNDLED / name)
    ds.StudyInstanceUID = study_uid or uid()
    ds.SeriesInstanceUID = uid()
    ds.SOPInstanceUID = uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def multipart_body(
    parts: Iterable[bytes], boundary: str, part_type: str = "application/dicom"
) -> bytes:
    return b"".join(multipart_chunks(parts, boundary, part_type))


def multipart_chunks(
    parts: Iterable[bytes], boundary: str, part_type: str = "application/dicom"
) -> Iterator[bytes]:
    for part in parts:
        yield f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
        yield part
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def stow_headers(boundary: str) -> dict[str, str]:
    return {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }


def new_boundary() -> str:
    return f"test-{uuid.uuid4().hex}"


def split_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Parse a multipart/related response (the test's own, independent parser)."""
    boundary = ""
    for piece in content_type.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    assert boundary, content_type
    delimiter = b"--" + boundary.encode()
    sections = body.split(delimiter)
    assert sections[-1].startswith(b"--"), "no closing delimiter"
    parts = []
    for section in sections[1:-1]:
        assert section.startswith(b"\r\n")
        head, _, payload = section[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        assert payload.endswith(b"\r\n")
        parts.append((headers, payload[:-2]))
    return parts
