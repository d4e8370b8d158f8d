"""Worklist items: the JSON form users send, its validation and its DICOM form.

An item is one Requested Procedure (PS3.4 K.6.1.2, Table K.6-1: patient,
imaging service request, requested procedure) with one or more Scheduled
Procedure Steps.  The JSON form is what REST and ``worklist add`` accept;
``item_from_dataset`` reads the ``.wl`` files of dcmtk's wlmscpfs and
Orthanc's worklist plugin into the same form, keeping every attribute we do
not model in ``extra`` (DICOM JSON) so that nothing of an imported file is lost.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

# Scheduled Procedure Step Status, PS3.3 C.4.10.1 / PS3.4 F.7 (the MPPS values).
SCHEDULED = "SCHEDULED"
IN_PROGRESS = "IN PROGRESS"
COMPLETED = "COMPLETED"
DISCONTINUED = "DISCONTINUED"
STEP_STATUSES = (SCHEDULED, IN_PROGRESS, COMPLETED, DISCONTINUED)
FINAL_STATUSES = frozenset({COMPLETED, DISCONTINUED})

#: Modality defined terms, PS3.3 C.7.3.1.1.1 (current and the retired ones modalities still send).
MODALITIES = frozenset(
    [
        "AR",
        "ASMT",
        "AU",
        "BDUS",
        "BI",
        "BMD",
        "CR",
        "CT",
        "CTPROTOCOL",
        "DG",
        "DOC",
        "DX",
        "ECG",
        "EPS",
        "ES",
        "FID",
        "GM",
        "HC",
        "HD",
        "IO",
        "IOL",
        "IVOCT",
        "IVUS",
        "KER",
        "KO",
        "LEN",
        "LS",
        "MG",
        "MR",
        "M3D",
        "NM",
        "OAM",
        "OCT",
        "OP",
        "OPM",
        "OPT",
        "OPTBSV",
        "OPTENF",
        "OPV",
        "OSS",
        "OT",
        "PLAN",
        "POS",
        "PR",
        "PT",
        "PX",
        "REG",
        "RESP",
        "RF",
        "RG",
        "RTDOSE",
        "RTIMAGE",
        "RTINTENT",
        "RTPLAN",
        "RTRAD",
        "RTRECORD",
        "RTSEGANN",
        "RTSTRUCT",
        "RWV",
        "SEG",
        "SM",
        "SMR",
        "SR",
        "SRF",
        "STAIN",
        "TEXTUREMAP",
        "TG",
        "US",
        "VA",
        "XA",
        "XAPROTOCOL",
        "XC",
        "AS",
        "CD",
        "CF",
        "CP",
        "CS",
        "DD",
        "DF",
        "DM",
        "DS",
        "EC",
        "FA",
        "FS",
        "LP",
        "MA",
        "MS",
        "OPR",
        "ST",
        "VF",
    ]
)
SEXES = ("", "M", "F", "O")
PRIORITIES = ("", "STAT", "HIGH", "ROUTINE", "MEDIUM", "LOW")

_CODE_FIELDS = ("value", "scheme", "meaning")
_ITEM_TEXT = {
    # field: (keyword, maximum length from the VR, PS3.5 Table 6.2-1)
    "patient_name": ("PatientName", 320),
    "patient_id": ("PatientID", 64),
    "issuer_of_patient_id": ("IssuerOfPatientID", 64),
    "patient_birth_date": ("PatientBirthDate", 8),
    "patient_sex": ("PatientSex", 16),
    "accession_number": ("AccessionNumber", 16),
    "referring_physician_name": ("ReferringPhysicianName", 320),
    "requesting_physician_name": ("RequestingPhysician", 320),
    "requested_procedure_id": ("RequestedProcedureID", 16),
    "requested_procedure_description": ("RequestedProcedureDescription", 64),
    "requested_procedure_priority": ("RequestedProcedurePriority", 16),
    "study_instance_uid": ("StudyInstanceUID", 64),
}
_STEP_TEXT = {
    "step_id": ("ScheduledProcedureStepID", 16),
    "modality": ("Modality", 16),
    "station_name": ("ScheduledStationName", 16),
    "start_date": ("ScheduledProcedureStepStartDate", 8),
    "start_time": ("ScheduledProcedureStepStartTime", 16),
    "performing_physician_name": ("ScheduledPerformingPhysicianName", 320),
    "description": ("ScheduledProcedureStepDescription", 64),
    "location": ("ScheduledProcedureStepLocation", 16),
}
#: Keywords the model owns; everything else of an imported file goes to ``extra``.
MODELLED_ITEM_KEYWORDS = frozenset(
    [k for k, _ in _ITEM_TEXT.values()]
    + ["RequestedProcedureCodeSequence", "ScheduledProcedureStepSequence", "SpecificCharacterSet"]
)
MODELLED_STEP_KEYWORDS = frozenset(
    [k for k, _ in _STEP_TEXT.values()]
    + ["ScheduledStationAETitle", "ScheduledProtocolCodeSequence", "ScheduledProcedureStepStatus"]
)


class WorklistValidationError(ValueError):
    """The item is not acceptable; ``problems`` lists each field and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Code:
    """A coded entry (PS3.3 8.8): Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str

    def as_json(self) -> dict[str, str]:
        return {"value": self.value, "scheme": self.scheme, "meaning": self.meaning}

    def as_item(self) -> Dataset:
        ds = Dataset()
        ds.CodeValue = self.value
        ds.CodingSchemeDesignator = self.scheme
        ds.CodeMeaning = self.meaning
        return ds


@dataclass(frozen=True)
class Step:
    """One Scheduled Procedure Step (PS3.4 Table K.6-1, Scheduled Procedure Step module)."""

    step_id: str
    modality: str
    start_date: str
    start_time: str = ""
    station_ae_titles: tuple[str, ...] = ()
    station_name: str = ""
    performing_physician_name: str = ""
    description: str = ""
    location: str = ""
    protocol_code: Code | None = None
    status: str = SCHEDULED
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "modality": self.modality,
            "station_ae_title": list(self.station_ae_titles),
            "station_name": self.station_name,
            "start_date": self.start_date,
            "start_time": self.start_time,
            "performing_physician_name": self.performing_physician_name,
            "description": self.description,
            "location": self.location,
            "protocol_code": self.protocol_code.as_json() if self.protocol_code else None,
            "status": self.status,
            "extra": dict(self.extra),
        }


@dataclass(frozen=True)
class Item:
    """One Requested Procedure with its steps; ``extra`` is DICOM JSON of other attributes."""

    patient_name: str
    patient_id: str
    study_instance_uid: str
    requested_procedure_id: str
    steps: tuple[Step, ...]
    issuer_of_patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    requesting_physician_name: str = ""
    requested_procedure_description: str = ""
    requested_procedure_priority: str = ""
    requested_procedure_code: Code | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _ITEM_TEXT}
        out["requested_procedure_code"] = (
            self.requested_procedure_code.as_json() if self.requested_procedure_code else None
        )
        out["steps"] = [step.as_json() for step in self.steps]
        out["extra"] = dict(self.extra)
        return out


def aggregate_status(statuses: Iterable[str]) -> str:
    """The item's status from its steps: in progress while any step runs, final when all are."""
    values = list(statuses)
    if any(s == IN_PROGRESS for s in values):
        return IN_PROGRESS
    if values and all(s in FINAL_STATUSES for s in values):
        return COMPLETED if COMPLETED in values else DISCONTINUED
    if any(s in FINAL_STATUSES for s in values):
        return IN_PROGRESS
    return SCHEDULED


# --- validation ---------------------------------------------------------------------


def valid_date(text: str) -> bool:
    """DA: ``YYYYMMDD``, a real calendar date (PS3.5 Table 6.2-1)."""
    if len(text) != 8 or not text.isdigit():
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def valid_time(text: str) -> bool:
    """TM: ``HH[MM[SS[.F{1,6}]]]`` within range (PS3.5 Table 6.2-1; colons tolerated)."""
    head, dot, frac = text.replace(":", "").partition(".")
    if len(head) not in (2, 4, 6) or not head.isdigit():
        return False
    if dot and (not frac.isdigit() or len(frac) > 6 or len(head) != 6):
        return False
    hh, mm, ss = int(head[:2]), int(head[2:4] or 0), int(head[4:6] or 0)
    return hh < 24 and mm < 60 and ss < 61


def _text(data: Mapping[str, Any], name: str, where: str, problems: list[str]) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, str | int):
        problems.append(f"{where}{name}: expected text, got {type(value).__name__}")
        return ""
    text = str(value).strip()
    if "\\" in text:
        problems.append(f"{where}{name}: must not contain a backslash")
    return text


def _code(data: Mapping[str, Any], name: str, where: str, problems: list[str]) -> Code | None:
    value = data.get(name)
    if value in (None, {}):
        return None
    if not isinstance(value, Mapping):
        problems.append(f"{where}{name}: expected an object with value, scheme, meaning")
        return None
    unknown = set(value) - set(_CODE_FIELDS)
    if unknown:
        problems.append(f"{where}{name}: unknown field(s) {', '.join(sorted(unknown))}")
    parts = [str(value.get(k) or "").strip() for k in _CODE_FIELDS]
    missing = [k for k, v in zip(_CODE_FIELDS, parts, strict=True) if not v]
    if missing:
        problems.append(f"{where}{name}: {', '.join(missing)} required (PS3.3 8.8)")
        return None
    return Code(*parts)


def _check_length(
    fields: Mapping[str, tuple[str, int]],
    values: Mapping[str, str],
    where: str,
    problems: list[str],
) -> None:
    for name, (keyword, limit) in fields.items():
        if len(values.get(name, "")) > limit:
            problems.append(f"{where}{name}: longer than {limit} characters ({keyword})")


def _step(data: Any, index: int, problems: list[str]) -> Step | None:
    where = f"steps[{index}]."
    if not isinstance(data, Mapping):
        problems.append(f"steps[{index}]: expected an object")
        return None
    known = set(_STEP_TEXT) | {"station_ae_title", "protocol_code", "status", "extra"}
    unknown = set(data) - known
    if unknown:
        problems.append(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}".replace(".:", ":")
        )
    values = {name: _text(data, name, where, problems) for name in _STEP_TEXT}
    values["modality"] = values["modality"].upper()
    _check_length(_STEP_TEXT, values, where, problems)
    if not values["step_id"]:
        values["step_id"] = str(index + 1)
    if not values["modality"]:
        problems.append(f"{where}modality: required (Modality, type 1)")
    elif values["modality"] not in MODALITIES:
        problems.append(
            f"{where}modality: {values['modality']!r} is not a modality defined term"
            " (PS3.3 C.7.3.1.1.1)"
        )
    if not values["start_date"]:
        problems.append(f"{where}start_date: required (Scheduled Procedure Step Start Date)")
    elif not valid_date(values["start_date"]):
        problems.append(f"{where}start_date: {values['start_date']!r} is not a date (YYYYMMDD)")
    if values["start_time"] and not valid_time(values["start_time"]):
        problems.append(f"{where}start_time: {values['start_time']!r} is not a time (HHMM[SS])")
    values["start_time"] = values["start_time"].replace(":", "")
    raw_ae = data.get("station_ae_title") or []
    titles = [raw_ae] if isinstance(raw_ae, str) else raw_ae
    if not isinstance(titles, list) or not all(isinstance(t, str) for t in titles):
        problems.append(f"{where}station_ae_title: expected an AE title or a list of them")
        titles = []
    ae_titles = tuple(t.strip() for t in titles if t.strip())
    for title in ae_titles:
        if len(title) > 16 or "\\" in title:
            problems.append(f"{where}station_ae_title: {title!r} is not an AE title (PS3.5 AE)")
    status = str(data.get("status") or SCHEDULED).upper()
    if status not in STEP_STATUSES:
        problems.append(f"{where}status: {status!r} is not one of {', '.join(STEP_STATUSES)}")
    extra = data.get("extra") or {}
    if not isinstance(extra, Mapping):
        problems.append(f"{where}extra: expected DICOM JSON (an object)")
        extra = {}
    return Step(
        station_ae_titles=ae_titles,
        protocol_code=_code(data, "protocol_code", where, problems),
        status=status,
        extra=dict(extra),
        **values,
    )


def validate_item(data: Any, *, new_study_uid: str) -> Item:
    """Check the JSON form of an item; raise ``WorklistValidationError`` listing every problem.

    ``new_study_uid`` is used when the item has no Study Instance UID (it is type 1
    in the worklist, PS3.4 Table K.6-1, so the archive assigns one).
    """
    if not isinstance(data, Mapping):
        raise WorklistValidationError(["the worklist item must be a JSON object"])
    problems: list[str] = []
    known = set(_ITEM_TEXT) | {"requested_procedure_code", "steps", "extra"}
    unknown = set(data) - known - {"id", "status", "created_at", "updated_at"}
    if unknown:
        problems.append(f"unknown field(s) {', '.join(sorted(unknown))}")
    values = {name: _text(data, name, "", problems) for name in _ITEM_TEXT}
    values["patient_sex"] = values["patient_sex"].upper()
    values["requested_procedure_priority"] = values["requested_procedure_priority"].upper()
    _check_length(_ITEM_TEXT, values, "", problems)
    for name, label in (("patient_name", "Patient's Name"), ("patient_id", "Patient ID")):
        if not values[name]:
            problems.append(f"{name}: required ({label}, type 1 in the worklist)")
    if values["patient_birth_date"] and not valid_date(values["patient_birth_date"]):
        problems.append(
            f"patient_birth_date: {values['patient_birth_date']!r} is not a date (YYYYMMDD)"
        )
    if values["patient_sex"] not in SEXES:
        problems.append(f"patient_sex: {values['patient_sex']!r} is not M, F or O")
    if values["requested_procedure_priority"] not in PRIORITIES:
        problems.append(
            f"requested_procedure_priority: {values['requested_procedure_priority']!r}"
            f" is not one of {', '.join(p for p in PRIORITIES if p)}"
        )
    uid = values["study_instance_uid"] or new_study_uid
    if len(uid) > 64 or not all(part.isdigit() for part in uid.split(".")):
        problems.append(f"study_instance_uid: {uid!r} is not a UID (PS3.5 9.1)")
    values["study_instance_uid"] = uid
    raw_steps = data.get("steps")
    steps: list[Step] = []
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append("steps: at least one scheduled procedure step is required")
    else:
        for index, raw in enumerate(raw_steps):
            step = _step(raw, index, problems)
            if step is not None:
                steps.append(step)
        ids = [s.step_id for s in steps]
        if len(set(ids)) != len(ids):
            problems.append("steps: step_id values must differ within an item")
    if not values["requested_procedure_id"]:
        values["requested_procedure_id"] = (
            values["accession_number"] or uid.rsplit(".", 1)[-1][-16:]
        )
    extra = data.get("extra") or {}
    if not isinstance(extra, Mapping):
        problems.append("extra: expected DICOM JSON (an object)")
        extra = {}
    code = _code(data, "requested_procedure_code", "", problems)
    if problems:
        raise WorklistValidationError(problems)
    return Item(steps=tuple(steps), requested_procedure_code=code, extra=dict(extra), **values)


# --- DICOM form ----------------------------------------------------------------------


def _str(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip()


def _code_json(ds: Dataset, keyword: str) -> dict[str, str] | None:
    seq = ds.get(keyword)
    if not seq:
        return None
    item = seq[0]
    return {
        "value": _str(item, "CodeValue"),
        "scheme": _str(item, "CodingSchemeDesignator"),
        "meaning": _str(item, "CodeMeaning"),
    }


def _extra(ds: Dataset, modelled: frozenset[str]) -> dict[str, Any]:
    rest = Dataset()
    for element in ds:
        if element.keyword not in modelled and element.tag.group not in (0x0002, 0x0000):
            rest.add(element)
    return rest.to_json_dict() if len(rest) else {}


def item_from_dataset(ds: Dataset) -> dict[str, Any]:
    """The JSON form of a worklist file's dataset (then validated like any item)."""
    out: dict[str, Any] = {name: _str(ds, keyword) for name, (keyword, _) in _ITEM_TEXT.items()}
    out = {k: v for k, v in out.items() if v}
    code = _code_json(ds, "RequestedProcedureCodeSequence")
    if code:
        out["requested_procedure_code"] = code
    steps = []
    for sps in ds.get("ScheduledProcedureStepSequence") or []:
        step: dict[str, Any] = {
            name: _str(sps, keyword) for name, (keyword, _) in _STEP_TEXT.items()
        }
        step = {k: v for k, v in step.items() if v}
        titles = sps.get("ScheduledStationAETitle")
        if titles:
            step["station_ae_title"] = (
                [str(t) for t in titles] if sps["ScheduledStationAETitle"].VM > 1 else [str(titles)]
            )
        protocol = _code_json(sps, "ScheduledProtocolCodeSequence")
        if protocol:
            step["protocol_code"] = protocol
        status = _str(sps, "ScheduledProcedureStepStatus")
        if status in STEP_STATUSES:
            step["status"] = status
        extra = _extra(sps, MODELLED_STEP_KEYWORDS)
        if extra:
            step["extra"] = extra
        steps.append(step)
    out["steps"] = steps
    extra = _extra(ds, MODELLED_ITEM_KEYWORDS)
    if extra:
        out["extra"] = extra
    return out


def step_dataset(step: Step) -> Dataset:
    """One Scheduled Procedure Step Sequence item."""
    ds = Dataset.from_json(dict(step.extra)) if step.extra else Dataset()
    for name, (keyword, _) in _STEP_TEXT.items():
        setattr(ds, keyword, getattr(step, name))
    ds.ScheduledStationAETitle = list(step.station_ae_titles) or ""
    ds.ScheduledProtocolCodeSequence = Sequence(
        [step.protocol_code.as_item()] if step.protocol_code else []
    )
    ds.ScheduledProcedureStepStatus = step.status
    return ds


def mwl_dataset(item: Item, step: Step) -> Dataset:
    """The worklist record for one step: the item's attributes with that step's SPS item."""
    ds = Dataset.from_json(dict(item.extra)) if item.extra else Dataset()
    for name, (keyword, _) in _ITEM_TEXT.items():
        setattr(ds, keyword, getattr(item, name))
    ds.RequestedProcedureCodeSequence = Sequence(
        [item.requested_procedure_code.as_item()] if item.requested_procedure_code else []
    )
    ds.ScheduledProcedureStepSequence = Sequence([step_dataset(step)])
    return ds
