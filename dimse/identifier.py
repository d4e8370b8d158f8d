"""C-FIND/C-MOVE/C-GET identifiers <-> the archive's one query form.

Pure translation: a request Identifier becomes a ``noctis_pacs.model.Query``
(the same form QIDO-RS compiles to), an index row becomes a response
Identifier holding exactly the requested keys (PS3.4 C.4.1.1.3.2).
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID

from noctis_pacs.model import BY_KEYWORD, Level, Match, MatchKind, Query, build_match

PATIENT_ROOT = "patient"
STUDY_ROOT = "study"

#: Information model of each Query/Retrieve SOP class (PS3.4 C.6.1 / C.6.2).
MODELS: Mapping[str, str] = {
    "1.2.840.10008.5.1.4.1.2.1.1": PATIENT_ROOT,  # Patient Root FIND
    "1.2.840.10008.5.1.4.1.2.1.2": PATIENT_ROOT,  # Patient Root MOVE
    "1.2.840.10008.5.1.4.1.2.1.3": PATIENT_ROOT,  # Patient Root GET
    "1.2.840.10008.5.1.4.1.2.2.1": STUDY_ROOT,  # Study Root FIND
    "1.2.840.10008.5.1.4.1.2.2.2": STUDY_ROOT,  # Study Root MOVE
    "1.2.840.10008.5.1.4.1.2.2.3": STUDY_ROOT,  # Study Root GET
}

#: Keys that steer the request rather than match (PS3.4 C.4.1.1.3.1, C.4.1.1.3.2).
_CONTROL_KEYS = frozenset(
    {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"}
)
_UTF8 = "ISO_IR 192"


class IdentifierError(ValueError):
    """The identifier does not fit the information model (PS3.4 status A900)."""


@dataclass(frozen=True)
class ParsedIdentifier:
    level: Level
    query: Query
    #: Keys with a non-universal value the engine cannot match on (status FF01).
    unsupported: tuple[str, ...]


def _raw(elem: DataElement) -> str:
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def level_of(identifier: Dataset, model: str) -> Level:
    """Query/Retrieve Level, checked against the model (PS3.4 C.6.1.1 / C.6.2.1)."""
    text = str(identifier.get("QueryRetrieveLevel", "") or "").strip()
    if not text:
        raise IdentifierError("Query/Retrieve Level (0008,0052) missing")
    try:
        level = Level.parse(text)
    except ValueError:
        raise IdentifierError(f"unknown Query/Retrieve Level {text[:16]!r}") from None
    if text.upper() == "INSTANCE":
        raise IdentifierError("Query/Retrieve Level must be IMAGE, not INSTANCE")
    if model == STUDY_ROOT and level is Level.PATIENT:
        raise IdentifierError("Study Root has no PATIENT level")
    return level


def _match_for(elem: DataElement) -> Match | None:
    keyword = elem.keyword
    if not keyword:
        return None  # private or unknown tag: returned empty, never matched
    if elem.VR == "SQ":
        items = elem.value
        if not items:
            return None
        inner = [m for m in (_match_for(e) for e in items[0]) if m is not None]
        if not inner or all(m.kind is MatchKind.UNIVERSAL for m in inner):
            return None
        return Match(keyword, MatchKind.SEQUENCE, (), tuple(inner))
    return build_match(keyword, _raw(elem))


def parse_identifier(
    identifier: Dataset, model: str, *, case_insensitive_pn: bool = True
) -> ParsedIdentifier:
    """Translate an identifier into a ``Query`` at its level.

    Hierarchical (PS3.4 C.4.1.3.1): keys above and at the level match; keys below
    the level cannot match in a hierarchical query and are returned empty.
    Unique keys of higher levels narrow the search as the standard intends; when a
    caller leaves them out the archive still answers (a lenient, relational-like
    reading that dcmtk's and other SCUs rely on).
    """
    level = level_of(identifier, model)
    matches: list[Match] = []
    unsupported: list[str] = []
    for elem in identifier:
        keyword = elem.keyword
        if keyword in _CONTROL_KEYS or elem.tag.group in (0x0000, 0x0002):
            continue
        match = _match_for(elem)
        if match is None or match.kind is MatchKind.UNIVERSAL:
            continue
        attr = BY_KEYWORD.get(match.keyword)
        if attr is not None and attr.level > level:
            continue
        if attr is None and match.kind is not MatchKind.SEQUENCE:
            unsupported.append(match.keyword)
            continue
        matches.append(match)
    query = Query(level=level, matches=tuple(matches), case_insensitive_pn=case_insensitive_pn)
    return ParsedIdentifier(level=level, query=query, unsupported=tuple(unsupported))


def _response_value(vr: str, value: object) -> object:
    if value is None or value == "":
        return None
    if isinstance(value, list):
        return [str(v) for v in value] if value else None
    if vr in ("US", "SS", "UL", "SL"):
        return int(str(value))
    return str(value)


def _charset_for(requested: object, texts: list[str]) -> str | None:
    """Specific Character Set of a response (PS3.4 C.4.1.1.3.2, PS3.5 6.1.2.3).

    The request's character set is kept when every value can be written in it;
    otherwise, or for ISO 2022 code extensions, UTF-8 (ISO_IR 192).
    """
    terms = [
        str(t) for t in (requested if isinstance(requested, MultiValue | list) else [requested])
    ]
    terms = [t for t in terms if t and t != "None"]
    if all(t.isascii() for t in texts):
        return terms[0] if len(terms) == 1 else (None if not terms else _UTF8)
    if len(terms) == 1 and terms[0] in python_encoding:
        codec = codecs.lookup(python_encoding[terms[0]]).name
        try:
            for text in texts:
                text.encode(codec)
            return terms[0]
        except UnicodeEncodeError:
            pass
    return _UTF8


def response_identifier(
    identifier: Dataset, level: Level, row: Mapping[str, object], *, ae_title: str
) -> Dataset:
    """Exactly the requested keys, with values from ``row`` (unknown keys empty)."""
    rsp = Dataset()
    texts: list[str] = []
    for elem in identifier:
        keyword = elem.keyword
        if elem.tag.group in (0x0000, 0x0002) or keyword == "SpecificCharacterSet":
            continue
        if keyword == "QueryRetrieveLevel":
            rsp.QueryRetrieveLevel = level.name
            continue
        if keyword == "RetrieveAETitle":
            rsp.RetrieveAETitle = ae_title
            continue
        if keyword == "InstanceAvailability":
            rsp.InstanceAvailability = "ONLINE"
            continue
        vr = str(elem.VR)
        if vr == "SQ":
            rsp.add_new(elem.tag, "SQ", Sequence())
            continue
        if vr == "UN" and keyword in BY_KEYWORD:
            vr = BY_KEYWORD[keyword].vr
        value = _response_value(vr, row.get(keyword)) if keyword in row else None
        if vr in ("UI",) and isinstance(value, str):
            value = UID(value)
        rsp.add_new(elem.tag, vr, value)
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            texts.extend(value)
    charset = _charset_for(identifier.get("SpecificCharacterSet"), texts)
    if charset:
        rsp.SpecificCharacterSet = charset
    return rsp
