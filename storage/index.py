"""Index writes: one instance in, every level and counter kept right.

Counters (Number of ... Related ..., ModalitiesInStudy, SOPClassesInStudy)
are maintained here at ingest and delete, never computed per query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydicom.datadict import tag_for_keyword

from noctis_pacs.core.audit import utc_now
from noctis_pacs.core.auth import DEFAULT_FACILITY
from storage.db import Connection
from storage.parse import ParsedInstance, normalise_pn, pn_words, to_json_text
from storage.sqlfiles import named_queries

JsonDict = dict[str, Any]


@cache
def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


def Q(name: str) -> str:  # noqa: N802 - reads like a SQL lookup
    return named_queries("queries.sql")[name]


#: The time now as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC): the core's one formatter, so index
#: rows and audit records carry the same clock text.
now_iso = utc_now


def _values(meta: JsonDict, keyword: str) -> list[Any]:
    element = meta.get(_tag(keyword))
    if not element:
        return []
    values = element.get("Value")
    return list(values) if isinstance(values, list) else []


def _as_text(value: Any) -> str:
    if isinstance(value, dict):  # PN (PS3.18 F.2.2): groups joined as DICOM writes them
        groups = [value.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


def text_of(meta: JsonDict, keyword: str) -> str:
    """The value of ``keyword`` in DICOM JSON ``meta`` as index text (multi-values joined)."""
    return _text(meta, keyword)


def _text(meta: JsonDict, keyword: str) -> str:
    element = meta.get(_tag(keyword))
    values = element.get("Value") if element else None
    if not isinstance(values, list):
        return ""
    if len(values) == 1 and type(values[0]) is str:  # most attributes: said once, no join
        return values[0].strip()
    return "\\".join(_as_text(v) for v in values).strip()


def _int_or_none(meta: JsonDict, keyword: str) -> int | None:
    values = _values(meta, keyword)
    if not values or values[0] is None:
        return None
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return None


def normalise_time(value: str) -> str:
    """TM as ``HHMMSS[.ffffff]`` without colons (ACR-NEMA style is accepted too)."""
    text = value.replace(":", "").strip()
    if not text:
        return ""
    head, dot, frac = text.partition(".")
    return head.ljust(6, "0")[:6] + (dot + frac if frac else "")


def _first_item(meta: JsonDict, sequence: str, keyword: str) -> str:
    items = _values(meta, sequence)
    return _text(items[0], keyword) if items and isinstance(items[0], dict) else ""


@dataclass
class InstanceRecord:
    """Everything the index stores for one instance."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]


def build_record(
    parsed: ParsedInstance,
    *,
    metadata: JsonDict,
    blob_key: str,
    blob_size: int,
    sha256: str,
    origin: dict[str, str],
    facility: str = DEFAULT_FACILITY,
) -> InstanceRecord:
    """The index rows of one instance; ``facility`` is its study's when this instance
    creates the study (a study keeps the facility it was created with)."""
    ds = metadata
    name = _text(ds, "PatientName")
    referring = _text(ds, "ReferringPhysicianName")
    received = now_iso()
    return InstanceRecord(
        patient={
            "patient_id": _text(ds, "PatientID"),
            "issuer_of_patient_id": _text(ds, "IssuerOfPatientID"),
            "patient_name": name,
            "patient_name_norm": normalise_pn(name),
            "patient_name_words": pn_words(name),
            "patient_birth_date": _text(ds, "PatientBirthDate"),
            "patient_sex": _text(ds, "PatientSex"),
        },
        study={
            "study_uid": parsed.study_uid,
            "study_date": _text(ds, "StudyDate"),
            "study_time": normalise_time(_text(ds, "StudyTime")),
            "accession_number": _text(ds, "AccessionNumber"),
            "study_id": _text(ds, "StudyID"),
            "referring_physician_name": referring,
            "referring_physician_name_norm": normalise_pn(referring),
            "study_description": _text(ds, "StudyDescription"),
            "timezone_offset": _text(ds, "TimezoneOffsetFromUTC"),
            "facility": facility,
            "now": received,
        },
        series={
            "series_uid": parsed.series_uid,
            "modality": _text(ds, "Modality"),
            "series_number": _int_or_none(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription"),
            "series_date": _text(ds, "SeriesDate"),
            "series_time": normalise_time(_text(ds, "SeriesTime")),
            "body_part_examined": _text(ds, "BodyPartExamined"),
            "station_name": _text(ds, "StationName"),
            "institution_name": _text(ds, "InstitutionName"),
            "pps_start_date": _text(ds, "PerformedProcedureStepStartDate"),
            "pps_start_time": normalise_time(_text(ds, "PerformedProcedureStepStartTime")),
            "requested_procedure_id": _first_item(
                ds, "RequestAttributesSequence", "RequestedProcedureID"
            ),
            "scheduled_procedure_step_id": _first_item(
                ds, "RequestAttributesSequence", "ScheduledProcedureStepID"
            ),
        },
        instance={
            "sop_uid": parsed.sop_instance_uid,
            "sop_class_uid": parsed.sop_class_uid,
            "instance_number": _int_or_none(ds, "InstanceNumber"),
            "rows": _int_or_none(ds, "Rows"),
            "columns": _int_or_none(ds, "Columns"),
            "bits_allocated": _int_or_none(ds, "BitsAllocated"),
            "number_of_frames": _int_or_none(ds, "NumberOfFrames"),
            "content_date": _text(ds, "ContentDate"),
            "content_time": normalise_time(_text(ds, "ContentTime")),
            "acquisition_number": _int_or_none(ds, "AcquisitionNumber"),
            "transfer_syntax_uid": parsed.transfer_syntax_uid,
            "specific_character_set": _text(ds, "SpecificCharacterSet"),
            "blob_key": blob_key,
            "blob_size": blob_size,
            "sha256": sha256,
            "frames": json.dumps(parsed.frames, separators=(",", ":"))
            if parsed.frames is not None
            else None,
            "metadata": to_json_text(metadata),
            "origin_protocol": origin.get("protocol", ""),
            "origin_ae": origin.get("ae", ""),
            "origin_host": origin.get("host", ""),
            "received_at": received,
        },
    )


def _join_list(values: list[str]) -> str:
    return "\\" + "".join(f"{v}\\" for v in values if v)


class HierarchyConflict(Exception):
    """An instance the index cannot file without contradicting what it holds: its
    Series Instance UID (or SOP Instance UID) is stored under another study (or series).
    Raised inside the index transaction, whose writes are then rolled back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def insert_instance(conn: Connection, record: InstanceRecord) -> None:
    """Insert one new instance (its SOP Instance UID must not be indexed yet); raises
    ``HierarchyConflict`` when its series belongs to another study (PS3.3 C.7.3.1: a
    Series Instance UID names one series of one study), before the instance row is
    written (what was counted by then is rolled back with the transaction)."""
    patient_row, patient_counted = _file_under(conn, "patient", record.patient)
    patient_fk = patient_row[0]
    study_row, study_counted = _file_under(
        conn, "study", {**record.study, "patient_fk": patient_fk}
    )
    study_fk, study_patient_fk, _modalities, sop_classes, study_count = study_row
    series_row, series_counted = _file_under(
        conn, "series", {**record.series, "study_fk": study_fk}
    )
    series_fk, series_study_fk, series_count, *prior_modality = series_row
    if series_study_fk != study_fk:
        owner = conn.one(Q("study_uid_by_id"), {"id": series_study_fk})
        raise HierarchyConflict(
            f"Series Instance UID {record.series['series_uid']} is stored in another study"
            f" ({owner[0] if owner else 'unknown'}); a series belongs to one study"
        )
    conn.execute(Q("instance_insert"), {**record.instance, "series_fk": series_fk})
    new_series = 1 if series_count == 0 else 0
    new_study = 1 if study_count == 0 else 0
    now = record.study["now"]
    if not series_counted:
        conn.execute(Q("series_add_instances"), {"n": 1, "id": series_fk})
    if not study_counted or new_series:
        n = 0 if study_counted else 1
        conn.execute(Q("study_add"), {"n": n, "s": new_series, "now": now, "id": study_fk})
    if patient_fk != study_patient_fk:
        # The study belongs to the patient it arrived with first: the instance counts
        # there, and a patient row upserted for another Patient ID in this instance
        # stays only if something else uses it.
        if patient_counted:
            conn.execute(Q("patient_add"), {"n": -1, "s": 0, "st": 0, "id": patient_fk})
            patient_counted = False
        conn.execute(Q("patient_delete_if_empty"), {"id": patient_fk})
    if not patient_counted or new_series or new_study:
        n = 0 if patient_counted else 1
        conn.execute(
            Q("patient_add"), {"n": n, "s": new_series, "st": new_study, "id": study_patient_fk}
        )
    # A new instance can only add to the study's lists: merge its values in rather
    # than list every series and instance of the study again, which would make each
    # insert into a large study scan all of it. Except when it changes the Modality of
    # a stored series (the row takes the latest instance's): the old value stays listed
    # only if another series has it, so the study's series are listed again then.
    listed_modalities = _split_list(_modalities)
    listed_classes = _split_list(sop_classes)
    modality = record.series["modality"]
    # PostgreSQL returns the series' Modality before its upsert (``_upsert``); SQLite
    # tells only that some series value changed (``_file_under``), perhaps the Modality.
    modality_changed = prior_modality[0] != modality if prior_modality else not series_counted
    if new_series:
        modalities = listed_modalities | ({modality} if modality else set())
    elif modality_changed:
        modalities = {r[0] for r in conn.all(Q("study_modalities"), {"id": study_fk}) if r[0]}
    else:
        modalities = listed_modalities
    sop_class = record.instance["sop_class_uid"] or ""
    classes = listed_classes
    if sop_class and sop_class not in classes:  # no new set for the usual instance
        classes = classes | {sop_class}
    if modalities != listed_modalities or classes is not listed_classes:
        _set_lists(conn, study_fk, modalities, classes)


def _file_under(conn: Connection, row: str, values: Mapping[str, Any]) -> tuple[Any, bool]:
    """Insert or update the patient, study or series row an instance is filed under: its
    ``RETURNING`` values, and whether the instance is counted in it already.

    On SQLite the update is made only when a value changed (``_insert_if_changed``): an
    instance of a series already indexed then rewrites none of those rows' index entries
    (a third fewer pages per commit: docs/performance.md), and an unchanged row is read
    by the statement that counts the instance in it (``<row>_count_instance``: one
    statement where a read and a later update were). PostgreSQL keeps the one upsert (a
    read after it would be another round trip; its update of unchanged indexed values is
    a heap-only tuple) and counts later."""
    if conn.dialect != "sqlite":
        return conn.one(_upsert(row), values), False
    changed = conn.one(_insert_if_changed(row), values)
    if changed is not None:
        return changed, False
    return conn.one(Q(f"{row}_count_instance"), values), True


@cache
def _upsert(row: str) -> str:
    """``<row>_insert`` as PostgreSQL runs it: a series' also returns the series'
    Modality before the statement (NULL for a new series), which ``insert_instance``
    needs to keep ModalitiesInStudy right when an instance changes it. A subquery reads
    the statement's snapshot, which does not see the statement's own update: the old
    value in the same statement, no other round trip. (SQLite's ``RETURNING`` subqueries
    see the row after the change; there ``_insert_if_changed`` tells a changed row.)"""
    plain = Q(f"{row}_insert")
    if row != "series":
        return plain
    prior = "SELECT prior.modality FROM series prior WHERE prior.series_uid = :series_uid"
    return f"{plain},\n    ({prior})"


#: Columns an upsert sets that are no change of their own (the row's time stamp).
_STAMPS = frozenset({"updated_at"})
#: ``column = excluded.column`` in an upsert's ``DO UPDATE SET``.
_SET_FROM_EXCLUDED = re.compile(r"\b(\w+) = excluded\.\1\b")


@cache
def _insert_if_changed(row: str) -> str:
    """``<row>_insert`` with its update made conditional: only when a column it sets
    (its ``DO UPDATE SET`` list, read from the statement itself) differs."""
    plain = Q(f"{row}_insert")
    table = plain.split()[2]  # INSERT INTO <table> (...
    at = plain.index("\nRETURNING ")
    sets = _SET_FROM_EXCLUDED.findall(plain[plain.index(" DO UPDATE SET") : at])
    changed = "\n    OR ".join(
        f"{table}.{c} IS DISTINCT FROM excluded.{c}" for c in sets if c not in _STAMPS
    )
    return f"{plain[:at]}\nWHERE {changed}{plain[at:]}"


def _split_list(joined: str | None) -> set[str]:
    return {v for v in (joined or "").split("\\") if v}


def _set_lists(conn: Connection, study_fk: int, modalities: set[str], classes: set[str]) -> None:
    """ModalitiesInStudy and SOPClassesInStudy, each sorted (the same order whichever
    way they were computed, on either backend)."""
    conn.execute(
        Q("study_set_lists"),
        {
            "modalities": _join_list(sorted(modalities)),
            "sop_classes": _join_list(sorted(classes)),
            "id": study_fk,
        },
    )


def _refresh_lists(conn: Connection, study_fk: int) -> None:
    modalities = {r[0] for r in conn.all(Q("study_modalities"), {"id": study_fk})}
    classes = {r[0] for r in conn.all(Q("study_sop_classes"), {"id": study_fk})}
    _set_lists(conn, study_fk, modalities, classes)


def remove_instance(conn: Connection, instance_id: int, series_fk: int) -> None:
    """Delete one instance row and keep every counter right; drop emptied parents."""
    study_fk, patient_fk = conn.one(Q("series_parents"), {"id": series_fk})
    conn.execute(Q("instance_delete"), {"id": instance_id})
    conn.execute(Q("series_add_instances"), {"n": -1, "id": series_fk})
    emptied_series = conn.execute(Q("series_delete_if_empty"), {"id": series_fk}).rowcount
    conn.execute(Q("study_add"), {"n": -1, "s": -emptied_series, "now": now_iso(), "id": study_fk})
    emptied_study = conn.execute(Q("study_delete_if_empty"), {"id": study_fk}).rowcount
    conn.execute(
        Q("patient_add"), {"n": -1, "s": -emptied_series, "st": -emptied_study, "id": patient_fk}
    )
    conn.execute(Q("patient_delete_if_empty"), {"id": patient_fk})
    if not emptied_study:
        _refresh_lists(conn, study_fk)
