"""Unit tests: the streaming multipart/related parser and writer, Accept negotiation."""

from __future__ import annotations

import random

import pytest

from dicomweb.errors import NotAcceptable
from dicomweb.frames import plan_frames
from dicomweb.multipart import (
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    framing_size,
    parse_media_type,
    write_parts,
)
from dicomweb.negotiation import parse_accept
from tests.dicomweb_support import multipart_body


def parse_all(body: bytes, boundary: str, chunk: int) -> list[tuple[dict[str, str], bytes]]:
    parser = MultipartParser(boundary)
    parts: list[tuple[dict[str, str], bytes]] = []
    for start in range(0, len(body), chunk):
        for event in parser.feed(body[start : start + chunk]):
            if isinstance(event, PartStart):
                parts.append((event.headers, b""))
            elif isinstance(event, PartData):
                headers, data = parts[-1]
                parts[-1] = (headers, data + event.data)
            else:
                assert isinstance(event, PartEnd)
    parser.close()
    return parts


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_parts_survive_any_chunking(chunk: int) -> None:
    """RFC 2046 5.1.1 / PS3.18 8.6.1.2.1: a delimiter split across reads is still found."""
    rng = random.Random(chunk)
    payloads = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (0, 1, 500, 3000)]
    payloads.append(b"\r\n--boun\r\n-bound\r\n--bounc")  # almost-delimiters inside the data
    body = b"preamble\r\n" + multipart_body(payloads, "bound") + b"epilogue"
    parts = parse_all(body, "bound", chunk)
    assert [data for _, data in parts] == payloads
    assert all(h["content-type"] == "application/dicom" for h, _ in parts)


def test_part_without_headers_and_transport_padding() -> None:
    body = b"--b  \r\n\r\nabc\r\n--b\r\nContent-Type: x/y\r\n\r\ndef\r\n--b--"
    parts = parse_all(body, "b", 4)
    assert parts == [({}, b"abc"), ({"content-type": "x/y"}, b"def")]


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary at all",
        b"--b\r\nContent-Type: a/b\r\n\r\ndata without end",
        b"--b\r\nbroken header line\r\n\r\nx\r\n--b--",
        b"--bXYZ\r\n\r\nx\r\n--b--",
    ],
)
def test_malformed_bodies_raise(body: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_all(body, "b", 5)


def test_writer_round_trip_and_size() -> None:
    parts = [("application/dicom", 3, [b"abc"]), ("application/dicom", 5, [b"de", b"fgh"])]
    body = b"".join(write_parts("zz", parts))
    assert len(body) == framing_size("zz", ["application/dicom"] * 2, [3, 5])
    assert [d for _, d in parse_all(body, "zz", 2)] == [b"abc", b"defgh"]


def test_media_type_parameters() -> None:
    media_type, params = parse_media_type(
        'Multipart/Related; type="application/dicom"; boundary="a;b"; start=x'
    )
    assert media_type == "multipart/related"
    assert params == {"type": "application/dicom", "boundary": "a;b", "start": "x"}


def test_accept_ordering_by_quality() -> None:
    ranges = parse_accept('image/jpeg;q=0.5, multipart/related; type="application/dicom", */*;q=0')
    assert [r.media_type for r in ranges] == ["multipart/related", "image/jpeg"]


def test_frame_media_types() -> None:
    """PS3.18 8.7.3.5 / Table 8.7.3-5: frames in their own media type or decoded octets."""
    jpeg = "1.2.840.10008.1.2.4.50"
    plan = plan_frames(jpeg, parse_accept(None), 1)
    assert (plan.part_type, plan.decode) == ("image/jpeg", False)
    plan = plan_frames(jpeg, parse_accept('multipart/related; type="application/octet-stream"'), 1)
    assert (plan.part_type, plan.decode) == ("application/octet-stream", True)
    star = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    plan = plan_frames(jpeg, parse_accept(star), 1)
    assert (plan.transfer_syntax_uid, plan.decode) == (jpeg, False)
    with pytest.raises(NotAcceptable):
        plan_frames("1.2.840.10008.1.2.1", parse_accept("image/jpeg"), 1)
