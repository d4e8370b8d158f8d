"""C-FIND/C-MOVE/C-GET identifiers <-> the archive's one query form.

Pure translation: a request Identifier becomes a ``noctis_pacs.core.model.Query``
(the same form QIDO-RS compiles to), an index row becomes a response
Identifier holding exactly the requested keys (PS3.4 C.4.1.1.3.2).
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dimse.fastpath.encoded import EncodedIdentifier, encode_elements
from dimse.fastpath.encoded import installed as encoded_identifiers_sent
from noctis_pacs.core.model import BY_KEYWORD, Level, Match, MatchKind, Query, build_match

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
#: PS3.7 C.11.2: an Error Comment is LO, at most 64 characters.
_COMMENT_MAX = 64


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


#: The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1: PatientID at the patient level).
UNIQUE_KEYS: Mapping[Level, str] = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}


def retrieve_key_error(identifier: Dataset, model: str, level: Level) -> str | None:
    """Why a C-MOVE / C-GET identifier cannot be retrieved, or ``None`` when it can.

    PS3.4 C.4.2.2.1 (hierarchical retrieve; C.4.3.2.1 for C-GET): the identifier holds
    the unique key of the retrieve level, one value or a list of UIDs, and the unique
    key of every level above, one value each: Patient ID, then the Study and Series
    Instance UIDs in the Patient Root model, from the Study Instance UID in the Study
    Root model. A missing, empty or wildcard key would widen the retrieve to every
    entity of its level, so it is refused (the reason fits an Error Comment).
    """
    top = Level.PATIENT if model == PATIENT_ROOT else Level.STUDY
    for above in Level:
        if above < top or above > level:
            continue
        keyword = UNIQUE_KEYS[above]
        text = _raw(identifier[keyword]).strip().strip("\x00") if keyword in identifier else ""
        if not text or "*" in text or "?" in text:
            return f"{level.name} retrieve needs {keyword}"[:_COMMENT_MAX]
        if above < level and "\\" in text:
            return f"{keyword}: one value above {level.name} level"[:_COMMENT_MAX]
    return None


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
    if len(terms) == 1 and terms[0] in python_encoding and not terms[0].startswith("ISO 2022"):
        codec = codecs.lookup(python_encoding[terms[0]]).name
        try:
            for text in texts:
                text.encode(codec)
            return terms[0]
        except UnicodeEncodeError:
            pass
    return _UTF8


#: VRs whose value is text in the response's character set (PS3.5 6.1.2.3).
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: VRs whose value is ASCII text (PS3.5 6.2), padded with a space; UI pads with NUL.
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UR", "UI"})


def _text_codec(charset: str | None, texts: list[str]) -> str | None:
    """The Python codec for text values written directly, or None when pydicom must
    encode them (ISO 2022 code extensions, which need escape sequences)."""
    if all(t.isascii() for t in texts):
        return "ascii"
    if charset is None or charset.startswith("ISO 2022") or charset not in python_encoding:
        return None
    return python_encoding[charset]


def _encoded(vr: str, value: object, codec: str) -> bytes | None:
    """The value field of a text element (even length, padded), or None when the
    value is not plain text (numbers, sequences, binary VRs: pydicom writes those)."""
    if value is None:
        return b""
    if vr not in _ASCII_VRS and vr not in _CHARSET_VRS:
        return None
    if isinstance(value, list):
        value = "\\".join(value)
    if not isinstance(value, str):
        return None
    data = value.encode(codec if vr in _CHARSET_VRS else "ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


#: Binary VRs of the integer values a response may carry (PS3.5 6.2), as struct formats.
_BINARY_INTEGERS = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i"}
_SPECIFIC_CHARACTER_SET = 0x00080005


def _encode_directly(
    values: list[tuple[BaseTag, str, object]], charset: str | None, codec: str, *, implicit_vr: bool
) -> bytes | None:
    """The response as Little Endian bytes, or None when a value needs pydicom (binary
    values other than the integers above, non-empty sequences)."""
    elements: list[tuple[int, str, bytes]] = []
    if charset:
        elements.append((_SPECIFIC_CHARACTER_SET, "CS", _encoded("CS", charset, "ascii") or b""))
    for tag, vr, value in values:
        if vr == "SQ":
            if value:
                return None
            data: bytes | None = b""
        elif vr in _BINARY_INTEGERS and isinstance(value, int):
            data = struct.pack(_BINARY_INTEGERS[vr], value)
        else:
            data = _encoded(vr, value, codec)
        if data is None:
            return None
        elements.append((int(tag), vr, data))
    elements.sort(key=lambda element: element[0])
    return encode_elements(elements, implicit_vr=implicit_vr)


def response_identifier(
    identifier: Dataset,
    level: Level,
    row: Mapping[str, object],
    *,
    ae_title: str,
    transfer_syntax: str | None = None,
) -> Dataset:
    """Exactly the requested keys, with values from ``row`` (unknown keys empty).

    With the ``transfer_syntax`` of the presentation context, text values are written
    as encoded bytes (pydicom's raw elements) and the data set is marked as encoded
    that way, so that pynetdicom's encoding of each C-FIND response copies them instead
    of validating and converting every value again; with the fast path's encoder in
    (``dimse.fastpath.encoded``) a little-endian answer is returned as its bytes."""
    values: list[tuple[BaseTag, str, object]] = []
    texts: list[str] = []
    for elem in identifier:
        keyword = elem.keyword
        if elem.tag.group in (0x0000, 0x0002) or keyword == "SpecificCharacterSet":
            continue
        vr = str(elem.VR)
        value: object
        if keyword == "QueryRetrieveLevel":
            value = level.name
        elif keyword == "RetrieveAETitle":
            value = ae_title
        elif keyword == "InstanceAvailability":
            value = "ONLINE"
        elif vr == "SQ":
            value = Sequence()
        else:
            if vr == "UN" and keyword in BY_KEYWORD:
                vr = BY_KEYWORD[keyword].vr
            value = _response_value(vr, row.get(keyword)) if keyword in row else None
            if isinstance(value, str):
                texts.append(value)
            elif isinstance(value, list):
                texts.extend(value)
        values.append((elem.tag, vr, value))
    charset = _charset_for(identifier.get("SpecificCharacterSet"), texts)
    syntax = UID(transfer_syntax) if transfer_syntax else None
    codec = (
        _text_codec(charset, texts) if syntax is not None and syntax.is_transfer_syntax else None
    )
    direct = (
        encoded_identifiers_sent()
        and codec is not None
        and syntax is not None
        and syntax.is_little_endian
        and not syntax.is_deflated
    )
    if direct:
        assert codec is not None and syntax is not None
        implicit_vr = bool(syntax.is_implicit_VR)
        encoded = _encode_directly(values, charset, codec, implicit_vr=implicit_vr)
        if encoded is not None:
            return EncodedIdentifier(encoded, implicit_vr=implicit_vr)
    rsp = Dataset()
    for tag, vr, value in values:
        data = _encoded(vr, value, codec) if codec is not None else None
        if data is not None and syntax is not None:
            rsp[tag] = RawDataElement(
                tag, vr, len(data), data, 0, syntax.is_implicit_VR, syntax.is_little_endian
            )
        else:
            if vr == "UI" and isinstance(value, str):
                value = UID(value)
            rsp.add_new(tag, vr, value)
    if charset:
        rsp.SpecificCharacterSet = charset
    if codec is not None and syntax is not None:
        rsp.set_original_encoding(
            syntax.is_implicit_VR, syntax.is_little_endian, rsp._character_set
        )
    return rsp
