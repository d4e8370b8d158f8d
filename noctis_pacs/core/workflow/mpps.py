"""Modality Performed Procedure Step rules (PS3.4 F.7), as pure checks.

``check_create`` and ``check_set`` raise ``MppsError`` carrying the PS3.7
status the SCP answers with; the DIMSE handler only maps it.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from noctis_pacs.core.workflow.items import (
    COMPLETED,
    DISCONTINUED,
    FINAL_STATUSES,
    IN_PROGRESS,
    valid_date,
    valid_time,
)

# N-CREATE / N-SET statuses, PS3.7 C.4 (Annex C status types), F.7.2.1.4 / F.7.2.2.4 of PS3.4.
SUCCESS = 0x0000
INVALID_ATTRIBUTE_VALUE = 0x0106  # PS3.7 C.4.2 / C.4.3
PROCESSING_FAILURE = 0x0110  # PS3.4 F.7.2.2.4.2: the PPS may no longer be updated
DUPLICATE_SOP_INSTANCE = 0x0111  # PS3.7 C.4.2
NO_SUCH_SOP_INSTANCE = 0x0112  # PS3.7 C.4.3
ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116  # PS3.7 C.4.2 / C.4.3
MISSING_ATTRIBUTE = 0x0120  # PS3.7 C.4.2
MISSING_ATTRIBUTE_VALUE = 0x0121  # PS3.7 C.4.2 / C.4.3

PPS_STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)

#: Type 1 attributes of the N-CREATE (PS3.4 Table F.7.2-1, "N-CREATE: 1").
CREATE_REQUIRED = (
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus",
    "Modality",
    "ScheduledStepAttributesSequence",
)
#: Attributes PS3.4 Table F.7.2-1 marks "Not allowed" for N-SET.
NOT_SETTABLE = frozenset(
    {
        "SOPClassUID",
        "SOPInstanceUID",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "IssuerOfPatientID",
        "ReferencedPatientSequence",
        "ScheduledStepAttributesSequence",
        "PerformedProcedureStepID",
        "PerformedStationAETitle",
        "PerformedStationName",
        "PerformedLocation",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "Modality",
        "StudyID",
    }
)
#: Required (type 1) when the step becomes final (PS3.4 F.7.2.2.2, Table F.7.2-2 "Final State").
FINAL_REQUIRED = ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime")
_DATES = ("PerformedProcedureStepStartDate", "PerformedProcedureStepEndDate")
_TIMES = ("PerformedProcedureStepStartTime", "PerformedProcedureStepEndTime")


class MppsError(Exception):
    """A refused N-CREATE / N-SET: ``status`` (PS3.7) and a comment for Error Comment."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment[:64]  # Error Comment is LO (PS3.7 C.4)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _check_values(ds: Dataset) -> None:
    for keyword in _DATES:
        value = _text(ds, keyword)
        if value and not valid_date(value):
            raise MppsError(ATTRIBUTE_VALUE_OUT_OF_RANGE, f"{keyword} is not a valid date")
    for keyword in _TIMES:
        value = _text(ds, keyword)
        if value and not valid_time(value):
            raise MppsError(ATTRIBUTE_VALUE_OUT_OF_RANGE, f"{keyword} is not a valid time")


def check_create(ds: Dataset) -> None:
    """PS3.4 F.7.2.1: an MPPS is created IN PROGRESS with its type 1 attributes."""
    for keyword in CREATE_REQUIRED:
        if keyword not in ds:
            raise MppsError(MISSING_ATTRIBUTE, f"{keyword} missing")
        value = ds[keyword].value
        if value in (None, "") or (keyword.endswith("Sequence") and not value):
            raise MppsError(MISSING_ATTRIBUTE_VALUE, f"{keyword} empty")
    status = _text(ds, "PerformedProcedureStepStatus")
    if status != IN_PROGRESS:
        raise MppsError(
            INVALID_ATTRIBUTE_VALUE, f"N-CREATE status must be IN PROGRESS, not {status[:20]}"
        )
    for item in ds.ScheduledStepAttributesSequence:
        if not _text(item, "StudyInstanceUID"):
            raise MppsError(MISSING_ATTRIBUTE_VALUE, "StudyInstanceUID empty in scheduled step")
    _check_values(ds)


def check_set(current: Dataset, modification: Dataset) -> str:
    """PS3.4 F.7.2.2: validate an N-SET on ``current``; return the resulting status."""
    current_status = _text(current, "PerformedProcedureStepStatus")
    if current_status in FINAL_STATUSES:
        raise MppsError(PROCESSING_FAILURE, f"MPPS is {current_status}: may no longer be updated")
    for element in modification:
        if element.keyword in NOT_SETTABLE:
            raise MppsError(INVALID_ATTRIBUTE_VALUE, f"{element.keyword} may not be set by N-SET")
    _check_values(modification)
    new_status = current_status
    if "PerformedProcedureStepStatus" in modification:
        new_status = _text(modification, "PerformedProcedureStepStatus")
        if new_status not in PPS_STATUSES:
            raise MppsError(INVALID_ATTRIBUTE_VALUE, f"{new_status[:20]!r} is not a PPS status")
    if new_status in FINAL_STATUSES:
        merged = merge(current, modification)
        for keyword in FINAL_REQUIRED:
            if not _text(merged, keyword):
                raise MppsError(PROCESSING_FAILURE, f"{keyword} required for {new_status}")
    return new_status


def merge(current: Dataset, modification: Dataset) -> Dataset:
    """Apply an N-SET modification list (PS3.7 10.1.3: replaces whole attributes)."""
    out = Dataset()
    out.update(current)
    for element in modification:
        out[element.tag] = element
    return out
