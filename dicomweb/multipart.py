"""multipart/related (RFC 2387, PS3.18 8.6.1.2.1): a streaming parser and a writer.

The parser is push-based and holds at most one delimiter's worth of bytes
besides the chunk it is fed: parts of any size pass through it to whatever
sink the caller writes them to.  The writer yields the framing around the
caller's own chunk iterators, so responses stream from the blobs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class MultipartError(ValueError):
    """The body is not a well-formed multipart message; the message says where."""


@dataclass(frozen=True)
class PartStart:
    headers: dict[str, str]  # lower-cased names

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd

_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)
_PART_END = PartEnd()


def split_params(value: str, separator: str = ";") -> list[str]:
    """Split a header value on ``separator`` outside quoted strings (RFC 9110 5.6.4)."""
    out, current, quoted, escaped = [], [], False, False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\" and quoted:
            current.append(char)
            escaped = True
        elif char == '"':
            current.append(char)
            quoted = not quoted
        elif char == separator and not quoted:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    out.append("".join(current).strip())
    return out


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"'`` -> (media type, parameters)."""
    pieces = split_params(value)
    media_type = pieces[0].strip().lower()
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        name, sep, raw = piece.partition("=")
        if not sep:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.strip().lower()] = raw
    return media_type, params


class MultipartParser:
    """Feed bytes, get ``PartStart`` / ``PartData`` / ``PartEnd`` events; ``close`` at the end."""

    def __init__(self, boundary: str, *, max_header_bytes: int = 16384) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("the multipart boundary must be 1 to 200 characters")
        self.delimiter = b"\r\n--" + boundary.encode("latin-1")
        self.max_header_bytes = max_header_bytes
        # A leading CRLF lets the first boundary (which has none) match like the others.
        self.buffer = bytearray(b"\r\n")
        self.state = _PREAMBLE
        self.parts = 0

    @property
    def done(self) -> bool:
        return self.state == _DONE

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self.state == _DONE:
            return events  # the epilogue is ignored (RFC 2046 5.1.1)
        self.buffer += data
        while True:
            if self.state == _BODY:
                index = self.buffer.find(self.delimiter)
                if index < 0:
                    keep = len(self.delimiter) - 1
                    if len(self.buffer) > keep:
                        cut = len(self.buffer) - keep
                        events.append(PartData(bytes(self.buffer[:cut])))
                        del self.buffer[:cut]
                    return events
                if index:
                    events.append(PartData(bytes(self.buffer[:index])))
                events.append(_PART_END)
                del self.buffer[: index + len(self.delimiter)]
                self.state = _AFTER_DELIMITER
            elif self.state == _PREAMBLE:
                index = self.buffer.find(self.delimiter)
                if index < 0:
                    keep = len(self.delimiter) - 1
                    if len(self.buffer) > keep:
                        del self.buffer[: len(self.buffer) - keep]
                    return events
                del self.buffer[: index + len(self.delimiter)]
                self.state = _AFTER_DELIMITER
            elif self.state == _AFTER_DELIMITER:
                if len(self.buffer) < 2:
                    return events
                if self.buffer[:2] == b"--":
                    self.state = _DONE
                    self.buffer.clear()
                    return events
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    if len(self.buffer) > 256:
                        raise MultipartError("no line break after a multipart boundary")
                    return events
                if self.buffer[:end].strip(b" \t"):
                    raise MultipartError("unexpected bytes after a multipart boundary")
                del self.buffer[: end + 2]
                self.state = _HEADERS
            elif self.state == _HEADERS:
                if self.buffer[:2] == b"\r\n":
                    del self.buffer[:2]
                    headers: dict[str, str] = {}
                else:
                    end = self.buffer.find(b"\r\n\r\n")
                    if end < 0:
                        if len(self.buffer) > self.max_header_bytes:
                            raise MultipartError(
                                f"part {self.parts + 1}: headers exceed {self.max_header_bytes} bytes"
                            )
                        return events
                    headers = _parse_headers(bytes(self.buffer[:end]), self.parts + 1)
                    del self.buffer[: end + 4]
                self.parts += 1
                events.append(PartStart(headers))
                self.state = _BODY

    def close(self) -> None:
        """Raise ``MultipartError`` unless the closing delimiter was seen."""
        if self.state == _DONE:
            return
        if self.state == _PREAMBLE:
            raise MultipartError("no multipart boundary found in the body")
        raise MultipartError("the body ends before the closing multipart boundary")


def _parse_headers(block: bytes, part: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MultipartError(f"part {part}: malformed header line {line[:60]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


# -- writer ---------------------------------------------------------------------------


def new_boundary() -> str:
    return "noctis-" + secrets.token_hex(16)


def related_content_type(boundary: str, root_type: str) -> str:
    """``Content-Type`` of a multipart/related response whose parts are ``root_type``."""
    return f'multipart/related; type="{root_type}"; boundary={boundary}'


def part_head(boundary: str, content_type: str, *, first: bool, length: int | None = None) -> bytes:
    head = ("" if first else "\r\n") + f"--{boundary}\r\nContent-Type: {content_type}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


def framing_size(boundary: str, content_types: Iterable[str], lengths: Iterable[int]) -> int:
    """Byte size of a whole message with these parts (for ``Content-Length``)."""
    total = len(closing(boundary))
    for index, (content_type, length) in enumerate(zip(content_types, lengths, strict=True)):
        total += len(part_head(boundary, content_type, first=index == 0, length=length)) + length
    return total


def write_parts(
    boundary: str, parts: Iterable[tuple[str, int | None, Iterable[bytes]]]
) -> Iterator[bytes]:
    """Yield a multipart/related body from ``(content type, length or None, chunks)`` parts."""
    first = True
    for content_type, length, chunks in parts:
        yield part_head(boundary, content_type, first=first, length=length)
        first = False
        yield from chunks
    if first:
        # An empty message still needs a first delimiter to be well-formed.
        yield f"--{boundary}--\r\n".encode("latin-1")
        return
    yield closing(boundary)
