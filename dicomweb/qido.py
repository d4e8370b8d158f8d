"""QIDO-RS (PS3.18 10.6): search studies, series and instances.

Query parameters compile to the one query form (``noctis_pacs.core.model.Query``)
that C-FIND uses too.  Choices, documented in ``docs/dicomweb.md``:

- an empty match is ``200`` with ``[]`` (PS3.18 10.6.3.1 allows 200 or 204);
- ``X-Total-Count`` (beyond the standard) gives the number of matches before
  ``limit``/``offset`` so viewers can page completely;
- ``orderby`` (beyond the standard): comma-separated keywords or tags, ``-``
  in front for descending, e.g. ``orderby=-StudyDate,PatientName``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicomweb import media
from dicomweb.auth import principal_of
from dicomweb.errors import BadRequest, NotAcceptable, warning_value
from dicomweb.json_builders import JsonDataset, single
from dicomweb.negotiation import parse_accept
from dicomweb.resources import Context, path_uids, public_base
from noctis_pacs.core.model import (
    BY_KEYWORD,
    InvalidMatchValue,
    Level,
    Match,
    OrderDirection,
    Query,
    build_match,
    resolve_keyword,
)
from storage.archive import MAX_INTEGER, QueryError

_STUDY_FIELDS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "TimezoneOffsetFromUTC",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
#: Returned as a sequence built from its flattened item keys (PS3.18 Table 10.6.3-4).
REQUEST_ATTRIBUTES = "RequestAttributesSequence"
_REQUEST_ITEM_KEYS = ("RequestedProcedureID", "ScheduledProcedureStepID")
_SERIES_FIELDS = (
    "StudyInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "TimezoneOffsetFromUTC",
    REQUEST_ATTRIBUTES,
)
_INSTANCE_FIELDS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
    "TimezoneOffsetFromUTC",
)
#: Return attributes (PS3.18 Tables 10.6.3-3, -4, -5); a query without the
#: parent's UID also returns the parent levels' attributes (PS3.18 10.6.3.3).
_FIELDS = {Level.STUDY: _STUDY_FIELDS, Level.SERIES: _SERIES_FIELDS, Level.IMAGE: _INSTANCE_FIELDS}
_RESERVED = frozenset({"limit", "offset", "fuzzymatching", "includefield", "orderby"})
_TRUNCATED = (
    "The number of results exceeded the maximum supported by the server."
    " Additional results can be requested."
)
_UTF8 = single("CS", "ISO_IR 192")
#: VRs whose DICOM JSON value is not the text itself (PS3.18 F.2.2 PN, F.2.3 numbers).
_CONVERTED_VRS = frozenset({"PN", "IS", "US", "UL", "SS", "SL", "DS", "FL", "FD", "SQ"})
_ONLINE = single("CS", "ONLINE")


def _positive_int(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not an integer") from None
    if value < minimum:
        raise BadRequest(f"{name}={value} must be at least {minimum}")
    if value > MAX_INTEGER:
        raise BadRequest(f"{name}={value} is larger than {MAX_INTEGER}")
    return value


def _keyword(key: str, what: str) -> str:
    try:
        return resolve_keyword(key)
    except ValueError as exc:
        raise BadRequest(f"{what}: {exc}") from None


class _Parsed:
    def __init__(self) -> None:
        self.values: dict[str, list[str]] = {}
        self.sequences: dict[str, dict[str, list[str]]] = {}
        self.limit: int | None = None
        self.offset = 0
        self.fuzzy = False
        self.include: set[str] = set()
        self.include_all = False
        self.order: list[tuple[str, OrderDirection]] = []


def parse_parameters(items: Iterable[tuple[str, str]]) -> _Parsed:
    """PS3.18 8.3.4 / 10.6.1.2: keys by keyword or tag, and the query modifiers."""
    parsed = _Parsed()
    for key, value in items:
        if key == "limit":
            parsed.limit = _positive_int("limit", value, 1)
        elif key == "offset":
            parsed.offset = _positive_int("offset", value, 0)
        elif key == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise BadRequest(f"fuzzymatching={value!r}: use true or false")
            parsed.fuzzy = value.lower() == "true"
        elif key == "includefield":
            for field in (f.strip() for f in value.split(",")):
                if field.lower() == "all":
                    parsed.include_all = True
                elif field:
                    parsed.include.add(_keyword(field, "includefield"))
        elif key == "orderby":
            for field in (f.strip() for f in value.split(",")):
                if not field:
                    continue
                descending = field.startswith("-")
                name = _keyword(field.lstrip("-+"), "orderby")
                parsed.order.append(
                    (name, OrderDirection.DESC if descending else OrderDirection.ASC)
                )
        elif "." in key:
            outer, _, inner = key.partition(".")
            seq = _keyword(outer, "sequence key")
            item = _keyword(inner, f"key {key}")
            parsed.sequences.setdefault(seq, {}).setdefault(item, []).append(value)
        else:
            parsed.values.setdefault(_keyword(key, "query key"), []).append(value)
    return parsed


def _matches(parsed: _Parsed) -> list[Match]:
    matches = []
    for keyword, values in parsed.values.items():
        # Repeated keys form a value list (PS3.18 8.3.4.1): OR of their values.
        matches.append(build_match(keyword, "\\".join(values)))
    for seq, items in parsed.sequences.items():
        inner = tuple(build_match(k, "\\".join(v)) for k, v in items.items())
        matches.append(build_match(seq, "", inner))
    return matches


def make_qido_endpoint(ctx: Context, level: Level) -> Any:
    archive = ctx.archive
    max_results = ctx.settings.query.max_results
    case_insensitive = ctx.settings.query.case_insensitive_pn

    def search(request: Request) -> Response:
        """PS3.18 10.6.1: Search Transaction."""
        _check_accept(request.headers.get("accept"))
        study_uid, series_uid, _ = path_uids(request)
        parsed = parse_parameters(request.query_params.multi_items())
        try:
            matches = _matches(parsed)
        except InvalidMatchValue as exc:  # PS3.18 8.3.4 / PS3.5 6.2: the reason, not []
            raise BadRequest(str(exc)) from None
        scope: list[Match] = []
        if study_uid:
            scope.append(build_match("StudyInstanceUID", study_uid))
        if series_uid:
            scope.append(build_match("SeriesInstanceUID", series_uid))
        query = Query(
            level=level,
            matches=tuple(scope + matches),
            fuzzy=parsed.fuzzy,
            case_insensitive_pn=case_insensitive,
            limit=parsed.limit,
            offset=parsed.offset,
            order_by=tuple(parsed.order),
        )
        warnings: list[str] = []
        try:
            result = archive.query(query, principal=principal_of(request))
            ignored = archive.ignored_keys(query) if matches else []
            page = min(parsed.limit or max_results, max_results)
            if parsed.offset == 0 and len(result.rows) < page:
                total = len(result.rows)
            elif len(result.rows) < page and result.rows:
                total = parsed.offset + len(result.rows)
            else:
                total = archive.count(
                    Query(
                        level=level,
                        matches=query.matches,
                        fuzzy=query.fuzzy,
                        case_insensitive_pn=case_insensitive,
                    ),
                    principal=principal_of(request),
                )
        except QueryError as exc:
            raise BadRequest(str(exc)) from None
        if ignored:
            warnings.append(f"not supported as matching keys, ignored: {', '.join(ignored)}")
        if result.truncated:
            warnings.append(_TRUNCATED)
        fields = _fields(level, study_uid, series_uid, parsed, matches)
        missing = sorted(parsed.include - set(BY_KEYWORD))
        from_metadata = level == Level.IMAGE and (parsed.include_all or bool(missing))
        if missing and not from_metadata:
            warnings.append(f"includefield not available in query results: {', '.join(missing)}")
        encode = _row_encoder(fields, level, public_base(request, ctx.settings))
        body = [encode(row) for row in result.rows]
        if from_metadata:
            _add_stored_attributes(archive, body, parsed)
        response = Response(
            json.dumps(body, separators=(",", ":"), ensure_ascii=False),
            media_type=media.DICOM_JSON,
            headers={media.TOTAL_COUNT_HEADER: str(total)},
        )
        for text in warnings:
            response.headers.append("Warning", warning_value(text))
        return response

    return search


def _check_accept(accept: str | None) -> None:
    for item in parse_accept(accept):
        if item.matches(media.DICOM_JSON) or item.media_type == media.JSON:
            return
    raise NotAcceptable(
        f"QIDO-RS answers in {media.DICOM_JSON}; Accept {accept!r} excludes it (PS3.18 10.6.1.4)"
    )


def _fields(
    level: Level,
    study_uid: str | None,
    series_uid: str | None,
    parsed: _Parsed,
    matches: list[Match],
) -> list[str]:
    fields: list[str] = list(_FIELDS[level])
    if level >= Level.SERIES and not study_uid:
        fields = list(_STUDY_FIELDS) + fields
    if level == Level.IMAGE and not series_uid:
        fields = list(_SERIES_FIELDS) + fields
    wanted = set(fields)
    if parsed.include_all:
        wanted.update(k for k, a in BY_KEYWORD.items() if a.level <= level)
    wanted.update(k for k in parsed.include if k in BY_KEYWORD)
    wanted.update(m.keyword for m in matches if m.keyword in BY_KEYWORD)
    ordered = list(dict.fromkeys(fields))
    ordered += sorted(wanted - set(ordered))
    return ordered


def _add_stored_attributes(archive: Any, body: list[JsonDataset], parsed: _Parsed) -> None:
    """Instance level (PS3.18 10.6.1.2.2, 10.6.3.3.3): ``includefield=all`` adds every
    non-bulk attribute stored at ingest (the instance's WADO-RS metadata without its
    BulkDataURIs), and a named includefield the index has no column for is taken from
    there too; attributes already in the result keep their values."""
    wanted: set[str] | None = None
    if not parsed.include_all:
        wanted = {_tag_of(k) for k in parsed.include if k not in BY_KEYWORD}
    sop_tag = f"{BY_KEYWORD['SOPInstanceUID'].tag:08X}"
    uids = [str(item[sop_tag]["Value"][0]) for item in body if sop_tag in item]
    stored = archive.metadata_of(uids)
    for item in body:
        sop = item.get(sop_tag)
        text = stored.get(str(sop["Value"][0])) if isinstance(sop, dict) else None
        if not text:
            continue
        for tag, element in json.loads(text).items():
            if tag in item or tag.startswith("0002") or not isinstance(element, dict):
                continue
            if "BulkDataURI" in element or "InlineBinary" in element:
                continue
            if wanted is not None and tag not in wanted:
                continue
            item[tag] = element
        item_sorted = dict(sorted(item.items()))
        item.clear()
        item.update(item_sorted)


def _tag_of(keyword: str) -> str:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"{int(tag):08X}" if tag is not None else ""


def _request_attributes(row: dict[str, object]) -> dict[str, object]:
    item = {
        f"{BY_KEYWORD[k].tag:08X}": single("SH", row.get(k, ""))
        for k in _REQUEST_ITEM_KEYS
        if row.get(k)
    }
    return {"vr": "SQ", "Value": [item]} if item else {"vr": "SQ"}


def _row_encoder(
    fields: list[str], level: Level, base: str
) -> Callable[[dict[str, object]], JsonDataset]:
    """A function turning one result row into its DICOM JSON dataset (tags in order);
    each field's tag and VR are looked up once per response, not once per row."""
    specs: list[tuple[str, str | None, str]] = []
    for keyword in fields:
        if keyword == REQUEST_ATTRIBUTES:
            specs.append((media.TAG_REQUEST_ATTRIBUTES_SEQUENCE, None, "SQ"))
        elif keyword not in _REQUEST_ITEM_KEYS:
            attribute = BY_KEYWORD[keyword]
            specs.append((f"{attribute.tag:08X}", keyword, attribute.vr))
    online = level in (Level.STUDY, Level.IMAGE)

    def encode(row: dict[str, object]) -> JsonDataset:
        out: JsonDataset = {media.TAG_SPECIFIC_CHARACTER_SET: _UTF8}
        for tag, keyword, vr in specs:
            if keyword is None:
                out[tag] = _request_attributes(row)
            elif keyword in row:
                value = row[keyword]
                if type(value) is str and vr not in _CONVERTED_VRS:
                    out[tag] = {"vr": vr, "Value": [value]} if value else {"vr": vr}
                else:
                    out[tag] = single(vr, value)
        url = f"{base}/studies/{row['StudyInstanceUID']}"
        if level >= Level.SERIES:
            url += f"/series/{row['SeriesInstanceUID']}"
        if level == Level.IMAGE:
            url += f"/instances/{row['SOPInstanceUID']}"
        if online:
            out[media.TAG_INSTANCE_AVAILABILITY] = _ONLINE
        out[media.TAG_RETRIEVE_URL] = single("UR", url)
        return dict(sorted(out.items()))

    return encode
