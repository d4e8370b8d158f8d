"""Modality Worklist keys (PS3.4 K.6.1.2) and the query form they compile to.

A C-FIND identifier (or a REST filter) becomes a ``WorklistQuery``: PS3.4
C.2.2.2 matches (built by ``noctis_pacs.core.model.classify``, the same matching
types as Q/R) on item keys and on Scheduled Procedure Step Sequence item keys.
``response`` answers one matching step with exactly the keys requested,
type 1 and 2 keys present even when the archive has no value (K.6.1.2.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from noctis_pacs.core.model import Match, MatchKind, classify
from noctis_pacs.core.workflow.items import IN_PROGRESS, SCHEDULED, STEP_STATUSES

#: Matching keys on the item (PS3.4 Table K.6-1) -> worklist_items column.
ITEM_COLUMNS: Mapping[str, str] = {
    "PatientName": "patient_name",
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer_of_patient_id",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "AccessionNumber": "accession_number",
    "RequestedProcedureID": "requested_procedure_id",
    "StudyInstanceUID": "study_uid",
    "ReferringPhysicianName": "referring_physician_name",
}
#: Matching keys inside Scheduled Procedure Step Sequence items -> worklist_steps column.
STEP_COLUMNS: Mapping[str, str] = {
    "ScheduledStationAETitle": "station_ae_title",
    "ScheduledProcedureStepStartDate": "start_date",
    "ScheduledProcedureStepStartTime": "start_time",
    "Modality": "modality",
    "ScheduledPerformingPhysicianName": "performing_physician_name",
    "ScheduledProcedureStepID": "step_id",
    "ScheduledStationName": "station_name",
    "ScheduledProcedureStepLocation": "location",
    "ScheduledProcedureStepStatus": "status",
}
#: Columns holding several values as ``\a\b\`` (matched like ModalitiesInStudy).
MULTI_VALUED = frozenset({"station_ae_title"})


@dataclass(frozen=True)
class WorklistQuery:
    """Matches on items and on their steps; ``statuses`` bounds the steps offered."""

    item_matches: tuple[Match, ...] = ()
    step_matches: tuple[Match, ...] = ()
    statuses: tuple[str, ...] = (SCHEDULED,)
    case_insensitive_pn: bool = True
    limit: int | None = None
    offset: int = 0
    #: Only items of these facilities (a scoped principal or AE); empty = every item.
    facilities: frozenset[str] = frozenset()


def offered_statuses(include_in_progress: bool) -> tuple[str, ...]:
    """Steps a worklist offers: SCHEDULED, and IN PROGRESS when configured."""
    return (SCHEDULED, IN_PROGRESS) if include_in_progress else (SCHEDULED,)


def vr_of(keyword: str) -> str:
    return str(dictionary_VR(keyword))


def _value_text(ds: Dataset, keyword: str) -> str:
    element = ds[keyword]
    value = element.value
    if value is None:
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in value)
    return str(value)


def query_from_identifier(
    identifier: Dataset, *, include_in_progress: bool, case_insensitive_pn: bool
) -> WorklistQuery:
    """Compile a C-FIND identifier; keys the worklist does not index are return-only."""
    item_matches: list[Match] = []
    step_matches: list[Match] = []
    for keyword in ITEM_COLUMNS:
        if keyword in identifier:
            match = classify(keyword, vr_of(keyword), _value_text(identifier, keyword))
            if match.kind is not MatchKind.UNIVERSAL:
                item_matches.append(match)
    sps = identifier.get("ScheduledProcedureStepSequence")
    if sps:
        for keyword in STEP_COLUMNS:
            if keyword in sps[0]:
                match = classify(keyword, vr_of(keyword), _value_text(sps[0], keyword))
                if match.kind is not MatchKind.UNIVERSAL:
                    step_matches.append(match)
    return WorklistQuery(
        item_matches=tuple(item_matches),
        step_matches=tuple(step_matches),
        statuses=offered_statuses(include_in_progress),
        case_insensitive_pn=case_insensitive_pn,
    )


def _empty(tag: int, keyword: str) -> DataElement:
    vr = vr_of(keyword) if keyword else "UN"
    return DataElement(tag, vr, Sequence() if vr == "SQ" else None)


def _answer(request: Dataset, record: Dataset) -> Dataset:
    out = Dataset()
    for element in request:
        tag, keyword = element.tag, element.keyword
        if tag.group == 0x0008 and tag.element == 0x0005:
            continue
        if tag not in record:
            out.add(_empty(tag, keyword))
            continue
        held = record[tag]
        if element.VR != "SQ":
            out.add(DataElement(tag, held.VR, held.value))
            continue
        requested = element.value[0] if element.value else None
        items = []
        for item in held.value or []:
            # PS3.4 C.2.2.2.6: a zero-length item (or no item) asks for every attribute.
            items.append(
                _answer(requested, item) if requested is not None and len(requested) else item
            )
        out.add(DataElement(tag, "SQ", Sequence(items)))
    return out


def response(request: Dataset, record: Dataset) -> Dataset:
    """The C-FIND response identifier for one matching record (one step)."""
    out = _answer(request, record)
    text = " ".join(str(e.value) for e in out.iterall() if e.VR in ("PN", "LO", "SH", "LT", "ST"))
    if not text.isascii():
        out.SpecificCharacterSet = "ISO_IR 192"
    elif "SpecificCharacterSet" in request:
        out.SpecificCharacterSet = request.SpecificCharacterSet or "ISO_IR 6"
    return out


#: Query parameters of GET /workflow/worklist (and ``worklist list``) -> (item or step, DICOM keyword).
LIST_FILTERS: dict[str, tuple[str, str]] = {
    "patient_name": ("item", "PatientName"),
    "patient_id": ("item", "PatientID"),
    "accession_number": ("item", "AccessionNumber"),
    "requested_procedure_id": ("item", "RequestedProcedureID"),
    "study_instance_uid": ("item", "StudyInstanceUID"),
    "modality": ("step", "Modality"),
    "station_ae_title": ("step", "ScheduledStationAETitle"),
    "start_date": ("step", "ScheduledProcedureStepStartDate"),
    "start_time": ("step", "ScheduledProcedureStepStartTime"),
    "performing_physician_name": ("step", "ScheduledPerformingPhysicianName"),
    "step_id": ("step", "ScheduledProcedureStepID"),
}


def list_query(params: dict[str, str], *, max_results: int) -> tuple[WorklistQuery, list[str]]:
    """Filters of GET /workflow/worklist and ``worklist list`` as a ``WorklistQuery`` (same matching as MWL)."""
    item: list[Match] = []
    step: list[Match] = []
    for name, value in params.items():
        if name in ("limit", "offset", "status", "step_status"):
            continue
        if name not in LIST_FILTERS:
            raise ValueError(f"unknown filter {name!r}; known: {', '.join(sorted(LIST_FILTERS))}")
        where, keyword = LIST_FILTERS[name]
        match = classify(keyword, vr_of(keyword), value)
        if match.kind is not MatchKind.UNIVERSAL:
            (item if where == "item" else step).append(match)
    statuses = [s.strip().upper() for s in params.get("status", "").split(",") if s.strip()]
    step_statuses = [
        s.strip().upper() for s in params.get("step_status", "").split(",") if s.strip()
    ]
    for value in (*statuses, *step_statuses):
        if value not in STEP_STATUSES:
            raise ValueError(f"status: {value!r} is not one of {', '.join(STEP_STATUSES)}")
    query = WorklistQuery(
        item_matches=tuple(item),
        step_matches=tuple(step),
        statuses=tuple(step_statuses),
        limit=min(int(params.get("limit", max_results)), max_results),
        offset=int(params.get("offset", 0)),
    )
    return query, statuses
