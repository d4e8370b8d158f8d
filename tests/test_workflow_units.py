"""Pure workflow rules: item validation, .wl conversion, MPPS state machine, MWL answers."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from noctis_pacs.core.workflow.items import (
    WorklistValidationError,
    aggregate_status,
    item_from_dataset,
    mwl_dataset,
    valid_date,
    valid_time,
    validate_item,
)
from noctis_pacs.core.workflow.mpps import (
    INVALID_ATTRIBUTE_VALUE,
    PROCESSING_FAILURE,
    MppsError,
    check_set,
)
from noctis_pacs.core.workflow.mwl import response


def test_dates_and_times() -> None:
    """PS3.5 Table 6.2-1 DA and TM."""
    assert valid_date("20240229") and not valid_date("20230229") and not valid_date("2024-01-01")
    assert valid_time("0930") and valid_time("093000.123") and valid_time("09:30:00")
    assert not valid_time("2400") and not valid_time("0960") and not valid_time("9")


def test_validation_assigns_and_lists_problems() -> None:
    item = validate_item(
        {
            "patient_name": "A^B",
            "patient_id": "1",
            "steps": [{"modality": "ct", "start_date": "20240101"}],
        },
        new_study_uid="1.2.3",
    )
    assert item.study_instance_uid == "1.2.3" and item.steps[0].step_id == "1"
    assert item.steps[0].modality == "CT" and item.requested_procedure_id
    with pytest.raises(WorklistValidationError) as caught:
        validate_item({"patient_id": "x" * 65, "steps": [{}, {}]}, new_study_uid="1.2")
    text = str(caught.value)
    assert "patient_name: required" in text and "longer than 64" in text
    assert "steps[1].modality: required" in text


def test_aggregate_status() -> None:
    assert aggregate_status(["SCHEDULED", "SCHEDULED"]) == "SCHEDULED"
    assert aggregate_status(["COMPLETED", "SCHEDULED"]) == "IN PROGRESS"
    assert aggregate_status(["COMPLETED", "DISCONTINUED"]) == "COMPLETED"
    assert aggregate_status(["DISCONTINUED"]) == "DISCONTINUED"


def test_wl_dataset_round_trip_keeps_unmodelled_attributes() -> None:
    ds = Dataset()
    ds.PatientName = "Vivaldi^Antonio"
    ds.PatientID = "AV1"
    ds.PatientWeight = "70"
    ds.StudyInstanceUID = "1.2.3.4"
    sps = Dataset()
    sps.Modality = "MR"
    sps.ScheduledStationAETitle = ["AA32", "AA33"]
    sps.ScheduledProcedureStepStartDate = "19951015"
    sps.ScheduledProcedureStepID = "S1"
    sps.PreMedication = "none"
    ds.ScheduledProcedureStepSequence = Sequence([sps])
    item = validate_item(item_from_dataset(ds), new_study_uid="9.9")
    record = mwl_dataset(item, item.steps[0])
    assert float(record.PatientWeight) == 70
    assert record.ScheduledProcedureStepSequence[0].PreMedication == "none"
    assert list(record.ScheduledProcedureStepSequence[0].ScheduledStationAETitle) == [
        "AA32",
        "AA33",
    ]


def test_mwl_response_has_requested_keys_only() -> None:
    """PS3.4 K.6.1.2.2 / C.2.2.2.6: requested keys, empty when unknown; empty item = all."""
    item = validate_item(
        {
            "patient_name": "Ä^B",
            "patient_id": "1",
            "steps": [{"modality": "CT", "start_date": "20240101"}],
        },
        new_study_uid="1.2",
    )
    request = Dataset()
    request.PatientName = ""
    request.PatientWeight = ""
    request.ScheduledProcedureStepSequence = Sequence([Dataset()])
    answer = response(request, mwl_dataset(item, item.steps[0]))
    assert answer.PatientName == "Ä^B" and answer.SpecificCharacterSet == "ISO_IR 192"
    assert "PatientWeight" in answer and "PatientID" not in answer
    assert answer.ScheduledProcedureStepSequence[0].Modality == "CT"


def test_mpps_state_machine() -> None:
    """PS3.4 F.7.2.2: final states are final; the status value is enumerated."""
    current = Dataset()
    current.PerformedProcedureStepStatus = "IN PROGRESS"
    mod = Dataset()
    mod.PerformedProcedureStepStatus = "DISCONTINUED"
    mod.PerformedProcedureStepEndDate = "20240101"
    mod.PerformedProcedureStepEndTime = "1000"
    assert check_set(current, mod) == "DISCONTINUED"
    current.PerformedProcedureStepStatus = "COMPLETED"
    with pytest.raises(MppsError) as caught:
        check_set(current, mod)
    assert caught.value.status == PROCESSING_FAILURE
    current.PerformedProcedureStepStatus = "IN PROGRESS"
    mod.PerformedProcedureStepStatus = "PAUSED"
    with pytest.raises(MppsError) as caught:
        check_set(current, mod)
    assert caught.value.status == INVALID_ATTRIBUTE_VALUE
