"""Accept header parsing (RFC 9110 12.5.1) and PS3.18 8.7 media type negotiation."""

from __future__ import annotations

from dataclasses import dataclass

from dicomweb.errors import NotAcceptable
from dicomweb.media import ANY_TRANSFER_SYNTAX, MULTIPART_RELATED
from dicomweb.multipart import parse_media_type, split_params


@dataclass(frozen=True)
class MediaRange:
    media_type: str
    params: dict[str, str]
    q: float

    @property
    def type_param(self) -> str | None:
        value = self.params.get("type")
        return value.lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")

    def matches(self, media_type: str) -> bool:
        """Whether this range covers ``media_type`` (``*/*``, ``type/*`` or exact)."""
        if self.media_type in ("*/*", "*"):
            return True
        major, _, minor = self.media_type.partition("/")
        if minor == "*":
            return media_type.startswith(major + "/")
        return self.media_type == media_type


def parse_accept(header: str | None) -> list[MediaRange]:
    """The acceptable ranges, best first; a missing or empty header accepts anything."""
    if not header or not header.strip():
        return [MediaRange("*/*", {}, 1.0)]
    ranges: list[tuple[float, int, MediaRange]] = []
    for index, item in enumerate(split_params(header, ",")):
        if not item:
            continue
        media_type, params = parse_media_type(item)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q <= 0:
            continue
        ranges.append((-q, index, MediaRange(media_type, params, q)))
    return [r for _, _, r in sorted(ranges, key=lambda t: (t[0], t[1]))]


@dataclass(frozen=True)
class Choice:
    """What to send: a multipart message (or a single body) of ``part_type`` parts.

    ``transfer_syntaxes`` lists what the client accepts in order of preference;
    ``*`` means as stored; ``None`` entries mean the media type's default.
    """

    multipart: bool
    part_type: str
    transfer_syntaxes: tuple[str | None, ...]


def choose(
    accept: str | None,
    *,
    part_types: tuple[str, ...],
    single_allowed: bool,
    resource: str,
) -> Choice:
    """Pick the response form for a retrieve (PS3.18 8.7.2 / 10.4.1.1.3).

    ``part_types`` are the media types this resource can produce, preferred
    first; ``single_allowed`` lets a bare media type (no multipart) through.
    Raise 406 naming what the resource offers when nothing matches.
    """
    ranges = parse_accept(accept)
    for candidate in ranges:
        for part_type in part_types:
            if candidate.media_type == MULTIPART_RELATED:
                wanted = candidate.type_param
                if wanted is None or wanted == part_type or _wild(wanted, part_type):
                    syntaxes = _syntaxes_for(ranges, part_type)
                    return Choice(True, part_type, syntaxes)
            elif candidate.media_type in ("*/*", "*", "multipart/*"):
                return Choice(True, part_type, _syntaxes_for(ranges, part_type))
            elif single_allowed and candidate.matches(part_type):
                return Choice(False, part_type, _syntaxes_for(ranges, part_type))
    offered = ", ".join(f'multipart/related; type="{t}"' for t in part_types)
    raise NotAcceptable(
        f"{resource} is available as {offered}; the Accept header {accept!r} allows none of them"
    )


def _wild(wanted: str, part_type: str) -> bool:
    major, _, minor = wanted.partition("/")
    return minor == "*" and part_type.startswith(major + "/")


def _syntaxes_for(ranges: list[MediaRange], part_type: str) -> tuple[str | None, ...]:
    """Every transfer syntax the Accept ranges allow for ``part_type``, preferred first."""
    out: list[str | None] = []
    for item in ranges:
        relevant = (
            item.media_type == MULTIPART_RELATED
            and (item.type_param in (None, part_type) or _wild(item.type_param or "", part_type))
        ) or item.matches(part_type)
        if relevant:
            syntax = item.transfer_syntax
            if syntax is not None:
                syntax = syntax.strip()
            if syntax not in out:
                out.append(syntax)
    return tuple(out) or (None,)


def accepts_anything_as_stored(choice: Choice) -> bool:
    return ANY_TRANSFER_SYNTAX in choice.transfer_syntaxes
