"""The DICOM information model shared by both protocols.

Levels, the attributes the index keeps per level (the keys that C-FIND,
QIDO-RS and MWL match on or must return), and the query form every protocol
compiles its request into.  Pure: no I/O, no SQL.

Sources: PS3.4 C.6.1.1 / C.6.2.1 (Patient and Study Root keys),
PS3.18 Tables 10.6.1-5..7 and 10.6.3-3..5 (QIDO-RS keys and return attributes).
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydicom.datadict import keyword_for_tag, tag_for_keyword


class Level(enum.IntEnum):
    """Query/Retrieve levels, ordered from the top of the hierarchy."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3

    @classmethod
    def parse(cls, text: str) -> Level:
        name = text.strip().upper()
        if name == "INSTANCE":
            name = "IMAGE"
        try:
            return cls[name]
        except KeyError:
            raise ValueError(f"unknown query/retrieve level {text!r}") from None


@dataclass(frozen=True)
class Attribute:
    """One attribute the index keeps as a column.

    ``column`` is ``table.column`` in the index; ``counter`` marks attributes
    the archive maintains itself (counts, ModalitiesInStudy) that are matched
    but never taken from a file.
    """

    keyword: str
    vr: str
    level: Level
    column: str
    unique: bool = False
    counter: bool = False
    multi_valued: bool = False

    @property
    def tag(self) -> int:
        tag = tag_for_keyword(self.keyword)
        assert tag is not None, self.keyword
        return int(tag)


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

ATTRIBUTES: tuple[Attribute, ...] = (
    # Patient level (PS3.4 C.6.1.1.2)
    Attribute("PatientName", "PN", _P, "patients.patient_name"),
    Attribute("PatientID", "LO", _P, "patients.patient_id", unique=True),
    Attribute("IssuerOfPatientID", "LO", _P, "patients.issuer_of_patient_id"),
    Attribute("PatientBirthDate", "DA", _P, "patients.patient_birth_date"),
    Attribute("PatientSex", "CS", _P, "patients.patient_sex"),
    Attribute("NumberOfPatientRelatedStudies", "IS", _P, "patients.num_studies", counter=True),
    Attribute("NumberOfPatientRelatedSeries", "IS", _P, "patients.num_series", counter=True),
    Attribute("NumberOfPatientRelatedInstances", "IS", _P, "patients.num_instances", counter=True),
    # Study level (PS3.4 C.6.1.1.3, PS3.18 Table 10.6.1-5)
    Attribute("StudyInstanceUID", "UI", _ST, "studies.study_uid", unique=True),
    Attribute("StudyDate", "DA", _ST, "studies.study_date"),
    Attribute("StudyTime", "TM", _ST, "studies.study_time"),
    Attribute("AccessionNumber", "SH", _ST, "studies.accession_number"),
    Attribute("StudyID", "SH", _ST, "studies.study_id"),
    Attribute("ReferringPhysicianName", "PN", _ST, "studies.referring_physician_name"),
    Attribute("StudyDescription", "LO", _ST, "studies.study_description"),
    Attribute("TimezoneOffsetFromUTC", "SH", _ST, "studies.timezone_offset"),
    Attribute(
        "ModalitiesInStudy", "CS", _ST, "studies.modalities", counter=True, multi_valued=True
    ),
    Attribute(
        "SOPClassesInStudy", "UI", _ST, "studies.sop_classes", counter=True, multi_valued=True
    ),
    Attribute("NumberOfStudyRelatedSeries", "IS", _ST, "studies.num_series", counter=True),
    Attribute("NumberOfStudyRelatedInstances", "IS", _ST, "studies.num_instances", counter=True),
    # Series level (PS3.4 C.6.1.1.4, PS3.18 Table 10.6.1-6)
    Attribute("SeriesInstanceUID", "UI", _SE, "series.series_uid", unique=True),
    Attribute("Modality", "CS", _SE, "series.modality"),
    Attribute("SeriesNumber", "IS", _SE, "series.series_number"),
    Attribute("SeriesDescription", "LO", _SE, "series.series_description"),
    Attribute("SeriesDate", "DA", _SE, "series.series_date"),
    Attribute("SeriesTime", "TM", _SE, "series.series_time"),
    Attribute("BodyPartExamined", "CS", _SE, "series.body_part_examined"),
    Attribute("StationName", "SH", _SE, "series.station_name"),
    Attribute("InstitutionName", "LO", _SE, "series.institution_name"),
    Attribute("PerformedProcedureStepStartDate", "DA", _SE, "series.pps_start_date"),
    Attribute("PerformedProcedureStepStartTime", "TM", _SE, "series.pps_start_time"),
    Attribute("NumberOfSeriesRelatedInstances", "IS", _SE, "series.num_instances", counter=True),
    # The first Request Attributes Sequence item, flattened (PS3.18 Table 10.6.3-4
    # returns the sequence; C-FIND and QIDO-RS also match on it, PS3.4 C.2.2.2.6).
    Attribute("RequestedProcedureID", "SH", _SE, "series.requested_procedure_id"),
    Attribute("ScheduledProcedureStepID", "SH", _SE, "series.scheduled_procedure_step_id"),
    # Instance level (PS3.4 C.6.1.1.5, PS3.18 Table 10.6.1-7)
    Attribute("SOPInstanceUID", "UI", _I, "instances.sop_uid", unique=True),
    Attribute("SOPClassUID", "UI", _I, "instances.sop_class_uid"),
    Attribute("InstanceNumber", "IS", _I, "instances.instance_number"),
    Attribute("Rows", "US", _I, "instances.rows"),
    Attribute("Columns", "US", _I, "instances.columns"),
    Attribute("BitsAllocated", "US", _I, "instances.bits_allocated"),
    Attribute("NumberOfFrames", "IS", _I, "instances.number_of_frames"),
    Attribute("ContentDate", "DA", _I, "instances.content_date"),
    Attribute("ContentTime", "TM", _I, "instances.content_time"),
    Attribute("AcquisitionNumber", "IS", _I, "instances.acquisition_number"),
)

#: Sequence attributes matched through flattened columns (PS3.4 C.2.2.2.6).
#: Maps sequence keyword -> {item keyword: column}.
SEQUENCE_ATTRIBUTES: Mapping[str, Mapping[str, str]] = {
    "RequestAttributesSequence": {
        "RequestedProcedureID": "series.requested_procedure_id",
        "ScheduledProcedureStepID": "series.scheduled_procedure_step_id",
    },
}

BY_KEYWORD: Mapping[str, Attribute] = {a.keyword: a for a in ATTRIBUTES}


def attributes_at(level: Level) -> tuple[Attribute, ...]:
    return tuple(a for a in ATTRIBUTES if a.level == level)


def resolve_keyword(key: str) -> str:
    """Turn a keyword or an 8-hex-digit tag (``00100010``) into a keyword.

    Raises ``ValueError`` naming the key when it is neither.
    """
    text = key.strip()
    if len(text) == 8 and all(c in "0123456789abcdefABCDEF" for c in text):
        keyword = keyword_for_tag(int(text, 16))
        if keyword:
            return str(keyword)
        raise ValueError(f"unknown attribute tag {text}")
    if tag_for_keyword(text) is None:
        raise ValueError(f"unknown attribute {text!r}")
    return text


# --- The query form -----------------------------------------------------------------


class MatchKind(enum.Enum):
    """PS3.4 C.2.2.2 matching types."""

    UNIVERSAL = "universal"  # C.2.2.2.3: empty value
    SINGLE = "single"  # C.2.2.2.1
    LIST_OF_UID = "uid_list"  # C.2.2.2.2
    WILDCARD = "wildcard"  # C.2.2.2.4
    RANGE = "range"  # C.2.2.2.5
    SEQUENCE = "sequence"  # C.2.2.2.6


@dataclass(frozen=True)
class Match:
    """One matching key: the keyword, its kind and the value(s) to match."""

    keyword: str
    kind: MatchKind
    values: tuple[str, ...] = ()
    items: tuple[Match, ...] = ()  # for SEQUENCE

    @property
    def value(self) -> str:
        return self.values[0] if self.values else ""


RANGE_VRS = frozenset({"DA", "TM", "DT"})


class InvalidMatchValue(ValueError):
    """A match value its VR does not allow (PS3.5 6.2, PS3.4 C.2.2.2): QIDO-RS answers
    400 and C-FIND a C000-range failure, each with this message as the reason."""


_TM = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,6})?)?)?")
_DT = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,6})?)?)?)?)?)?"
    r"(?:[+-](\d{2})(\d{2}))?"
)


def _valid_date(year: int, month: int | None, day: int | None) -> bool:
    if month is not None and not 1 <= month <= 12:
        return False
    if day is not None:
        assert month is not None
        return 1 <= day <= calendar.monthrange(year, month)[1]
    return True


def _valid_time(hour: int, minute: int | None, second: int | None) -> bool:
    return hour <= 23 and (minute is None or minute <= 59) and (second is None or second <= 60)


def _number(text: str | None) -> int | None:
    return int(text) if text is not None else None


def is_valid_value(vr: str, text: str) -> bool:
    """Whether ``text`` is a valid DA, TM or DT value (PS3.5 6.2): YYYYMMDD with a real
    calendar date; HH[MM[SS[.F{1-6}]]] within 23:59:60 (the ACR-NEMA HH:MM:SS form
    PS3.5 still lists for TM is accepted); YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]."""
    if vr == "DA":
        if len(text) != 8 or not text.isdigit():
            return False
        return _valid_date(int(text[:4]), int(text[4:6]), int(text[6:]))
    if vr == "TM":
        found = _TM.fullmatch(text.replace(":", ""))
        if found is None:
            return False
        return _valid_time(int(found[1]), _number(found[2]), _number(found[3]))
    if vr == "DT":
        found = _DT.fullmatch(text)
        if found is None:
            return False
        year, month, day, hour, minute, second, off_h, off_m = (_number(g) for g in found.groups())
        assert year is not None
        if not _valid_date(year, month, day):
            return False
        if hour is not None and not _valid_time(hour, minute, second):
            return False
        return off_h is None or (off_h <= 14 and off_m is not None and off_m <= 59)
    return True


_FORMS = {"DA": "a date YYYYMMDD", "TM": "a time HHMMSS.FFFFFF", "DT": "a date-time YYYYMMDDHHMMSS"}


def _check_values(keyword: str, vr: str, values: Sequence[str]) -> None:
    for value in values:
        if value and not is_valid_value(vr, value):
            raise InvalidMatchValue(f"{keyword}: {value[:24]!r} is not {_FORMS[vr]} (PS3.5 6.2)")


def classify(keyword: str, vr: str, raw: str) -> Match:
    """Build the ``Match`` that PS3.4 C.2.2.2 gives a key with value ``raw``; a DA, TM
    or DT value (single, list or range bound, C.2.2.2.5) that PS3.5 6.2 does not allow
    raises ``InvalidMatchValue``: one rule for every protocol."""
    match = _classify(keyword, vr, raw)
    if vr in RANGE_VRS and match.kind is not MatchKind.UNIVERSAL:
        if match.kind is MatchKind.RANGE and not any(match.values):
            raise InvalidMatchValue(f"{keyword}: a range needs at least one bound")
        if match.kind is MatchKind.WILDCARD:
            raise InvalidMatchValue(f"{keyword}: wildcards do not apply to {vr} values")
        _check_values(keyword, vr, match.values)
    return match


def _classify(keyword: str, vr: str, raw: str) -> Match:
    text = raw.strip() if vr not in ("UI",) else raw.strip().strip("\x00")
    if text == "" or text == "*":
        return Match(keyword, MatchKind.UNIVERSAL)
    if vr == "UI":
        uids = tuple(u.strip() for u in text.replace(",", "\\").split("\\") if u.strip())
        if len(uids) > 1:
            return Match(keyword, MatchKind.LIST_OF_UID, uids)
        return Match(keyword, MatchKind.SINGLE, uids)
    if vr in RANGE_VRS and "-" in text:
        low, _, high = text.partition("-")
        return Match(keyword, MatchKind.RANGE, (low.strip(), high.strip()))
    if "\\" in text and vr in ("CS", "SH", "LO", "AE", "IS", "DA", "TM"):
        # A value list of single values: treated as OR of single-value matches
        # (PS3.4 C.2.2.2.2 extended to non-UID keys, as dcm4chee and Orthanc do).
        return Match(keyword, MatchKind.LIST_OF_UID, tuple(v for v in text.split("\\") if v))
    if ("*" in text or "?" in text) and vr not in ("DA", "TM", "DT", "UI"):
        return Match(keyword, MatchKind.WILDCARD, (text,))
    return Match(keyword, MatchKind.SINGLE, (text,))


class OrderDirection(enum.Enum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True)
class Query:
    """A protocol-independent query: what every C-FIND / QIDO-RS / MWL compiles to.

    ``limit`` ``None`` means the server maximum; callers read ``QueryResult.total``
    for the number of matches before limit/offset.
    """

    level: Level
    matches: tuple[Match, ...] = ()
    fuzzy: bool = False
    case_insensitive_pn: bool = True
    limit: int | None = None
    offset: int = 0
    order_by: tuple[tuple[str, OrderDirection], ...] = ()
    count_total: bool = False
    #: Only studies of these facilities match (a scoped principal); empty = every study.
    facilities: frozenset[str] = frozenset()


@dataclass
class QueryResult:
    """Rows as keyword -> value (strings or ints; multi-valued as lists)."""

    rows: list[dict[str, object]] = field(default_factory=list)
    total: int | None = None
    truncated: bool = False


def build_match(keyword: str, raw: str, items: Sequence[Match] = ()) -> Match:
    """Classify ``raw`` for ``keyword`` using the attribute's VR from the dictionary."""
    if items:
        return Match(keyword, MatchKind.SEQUENCE, (), tuple(items))
    attr = BY_KEYWORD.get(keyword)
    if attr is not None:
        vr = attr.vr
    else:
        from pydicom.datadict import dictionary_VR

        vr = str(dictionary_VR(keyword))
    return classify(keyword, vr, raw)
