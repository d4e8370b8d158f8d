"""Helpers of the workflow tests: items over REST, MWL / MPPS SCUs (synthetic data only)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE
from pynetdicom.association import Association

MWL_FIND = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"


def token() -> str:
    return uuid.uuid4().hex[:10].upper()


def item_json(patient_id: str, **overrides: Any) -> dict[str, Any]:
    steps = overrides.pop("steps", None) or [
        {
            "step_id": "SPS1",
            "modality": "CT",
            "station_ae_title": "CT01",
            "station_name": "CTROOM1",
            "start_date": "20240115",
            "start_time": "0930",
            "performing_physician_name": "House^Gregory",
            "description": "CT head",
        }
    ]
    item = {
        "patient_name": "Doe^Jane",
        "patient_id": patient_id,
        "patient_birth_date": "19800101",
        "patient_sex": "F",
        "accession_number": patient_id[:16],
        "requested_procedure_id": f"RP{patient_id}"[:16],
        "requested_procedure_description": "Head CT",
        "steps": steps,
    }
    item.update(overrides)
    return item


def create_item(http_url: str, item: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{http_url}/workflow/worklist", json=item, timeout=30)
    assert response.status_code == 201, response.text
    return dict(response.json())


@contextmanager
def association(port: int, *contexts: str, ae_title: str = "NOCTIS") -> Iterator[Association]:
    ae = AE(ae_title="WFTEST")
    for uid in contexts:
        ae.add_requested_context(uid)
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def mwl_identifier(**keys: Any) -> Dataset:
    """A worklist identifier asking for the usual return keys, with ``keys`` as matching keys.

    Keys named ``sps_<Keyword>`` go into the Scheduled Procedure Step Sequence item.
    """
    ds = Dataset()
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "StudyInstanceUID",
        "ReferringPhysicianName",
    ):
        setattr(ds, keyword, "")
    sps = Dataset()
    for keyword in (
        "Modality",
        "ScheduledStationAETitle",
        "ScheduledStationName",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "ScheduledPerformingPhysicianName",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepLocation",
    ):
        setattr(sps, keyword, "")
    for key, value in keys.items():
        if key.startswith("sps_"):
            setattr(sps, key[4:], value)
        else:
            setattr(ds, key, value)
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    return ds


def mwl_find(port: int, identifier: Dataset) -> tuple[list[Dataset], int]:
    """(pending identifiers, final status) of one MWL C-FIND."""
    found: list[Dataset] = []
    final = -1
    with association(port, MWL_FIND) as assoc:
        for status, ds in assoc.send_c_find(identifier, MWL_FIND):
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                assert ds is not None
                found.append(ds)
            else:
                final = code
    return found, final


def mpps_create_dataset(
    study_uid: str, step_id: str, *, accession: str = "", status: str = "IN PROGRESS"
) -> Dataset:
    """An N-CREATE attribute list with the PS3.4 Table F.7.2-1 type 1 and 2 attributes."""
    ds = Dataset()
    ref = Dataset()
    ref.StudyInstanceUID = study_uid
    ref.AccessionNumber = accession
    ref.ScheduledProcedureStepID = step_id
    ref.RequestedProcedureID = ""
    ref.ReferencedStudySequence = Sequence()
    ds.ScheduledStepAttributesSequence = Sequence([ref])
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "X"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CT01"
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20240115"
    ds.PerformedProcedureStepStartTime = "093500"
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = ""
    ds.PerformedSeriesSequence = Sequence()
    return ds
