"""MPPS N-CREATE / N-SET against the real server, both backends (PS3.4 F.7)."""

from __future__ import annotations

import httpx
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from tests.conftest import RunningServer
from tests.workflow_support import (
    MPPS,
    association,
    create_item,
    item_json,
    mpps_create_dataset,
    mwl_find,
    mwl_identifier,
    token,
)


def _item(server: RunningServer, item_id: str) -> dict[str, object]:
    response = httpx.get(f"{server.http_url}/workflow/worklist/{item_id}", timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def _step_status(server: RunningServer, item_id: str, step_id: str) -> str:
    item = _item(server, item_id)
    steps = item["steps"]
    assert isinstance(steps, list)
    return next(str(s["status"]) for s in steps if s["step_id"] == step_id)


def _final(ds_status: Dataset) -> int:
    return int(ds_status.Status)


def _completion(status: str = "COMPLETED") -> Dataset:
    mod = Dataset()
    mod.PerformedProcedureStepStatus = status
    mod.PerformedProcedureStepEndDate = "20240115"
    mod.PerformedProcedureStepEndTime = "100000"
    series = Dataset()
    series.SeriesInstanceUID = generate_uid()
    series.PerformingPhysicianName = ""
    series.ProtocolName = "head"
    series.OperatorsName = ""
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedImageSequence = Sequence()
    series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence()
    mod.PerformedSeriesSequence = Sequence([series])
    return mod


def test_create_then_complete_moves_the_worklist_item(server: RunningServer) -> None:
    """PS3.4 F.7.2.1 / F.7.2.2: N-CREATE IN PROGRESS, N-SET COMPLETED; the SPS follows."""
    pid = token()
    item = create_item(server.http_url, item_json(pid))
    study_uid = str(item["study_instance_uid"])
    mpps_uid = generate_uid()
    with association(server.dimse_port, MPPS) as assoc:
        status, reply = assoc.send_n_create(mpps_create_dataset(study_uid, "SPS1"), MPPS, mpps_uid)
        assert _final(status) == 0x0000
        assert reply is not None and reply.PerformedProcedureStepStatus == "IN PROGRESS"
        assert _step_status(server, str(item["id"]), "SPS1") == "IN PROGRESS"
        assert _item(server, str(item["id"]))["status"] == "IN PROGRESS"
        # The worklist no longer offers the step (only SCHEDULED by default).
        found, _ = mwl_find(server.dimse_port, mwl_identifier(PatientID=pid))
        assert found == []
        # An N-SET that stays IN PROGRESS is allowed and merges attributes.
        mod = Dataset()
        mod.PerformedProcedureStepDescription = "CT head, 2 series"
        status, _ = assoc.send_n_set(mod, MPPS, mpps_uid)
        assert _final(status) == 0x0000
        status, reply = assoc.send_n_set(_completion(), MPPS, mpps_uid)
        assert _final(status) == 0x0000
    assert _step_status(server, str(item["id"]), "SPS1") == "COMPLETED"
    assert _item(server, str(item["id"]))["status"] == "COMPLETED"
    stored = httpx.get(f"{server.http_url}/workflow/mpps/{mpps_uid}", timeout=10).json()
    assert stored["status"] == "COMPLETED"
    assert stored["study_instance_uid"] == study_uid


def test_discontinued_and_link_by_accession(server: RunningServer) -> None:
    """PS3.4 F.7.2.2: DISCONTINUED is final; the step is found by Accession Number too."""
    pid = token()
    item = create_item(server.http_url, item_json(pid))
    mpps_uid = generate_uid()
    create = mpps_create_dataset(generate_uid(), "SPS1", accession=pid[:16])
    with association(server.dimse_port, MPPS) as assoc:
        status, _ = assoc.send_n_create(create, MPPS, mpps_uid)
        assert _final(status) == 0x0000
        assert _step_status(server, str(item["id"]), "SPS1") == "IN PROGRESS"
        status, _ = assoc.send_n_set(_completion("DISCONTINUED"), MPPS, mpps_uid)
        assert _final(status) == 0x0000
    assert _item(server, str(item["id"]))["status"] == "DISCONTINUED"


def test_illegal_transitions_and_their_statuses(server: RunningServer) -> None:
    """PS3.4 F.7.2.1.4 / F.7.2.2.4 and PS3.7 C.4: refused N-CREATE / N-SET statuses."""
    pid = token()
    item = create_item(server.http_url, item_json(pid))
    study_uid = str(item["study_instance_uid"])
    mpps_uid = generate_uid()
    with association(server.dimse_port, MPPS) as assoc:
        # N-CREATE must be IN PROGRESS: 0106 Invalid Attribute Value.
        bad = mpps_create_dataset(study_uid, "SPS1", status="COMPLETED")
        status, _ = assoc.send_n_create(bad, MPPS, generate_uid())
        assert _final(status) == 0x0106
        # A type 1 attribute missing: 0120 Missing Attribute.
        missing = mpps_create_dataset(study_uid, "SPS1")
        del missing.PerformedProcedureStepID
        status, _ = assoc.send_n_create(missing, MPPS, generate_uid())
        assert _final(status) == 0x0120
        # An impossible date: 0116 Attribute Value Out of Range.
        wrong_date = mpps_create_dataset(study_uid, "SPS1")
        wrong_date.PerformedProcedureStepStartDate = "20241345"
        status, _ = assoc.send_n_create(wrong_date, MPPS, generate_uid())
        assert _final(status) == 0x0116
        # Nothing of the refused requests reached the worklist.
        assert _step_status(server, str(item["id"]), "SPS1") == "SCHEDULED"
        status, _ = assoc.send_n_create(mpps_create_dataset(study_uid, "SPS1"), MPPS, mpps_uid)
        assert _final(status) == 0x0000
        # The same SOP Instance twice: 0111 Duplicate SOP Instance.
        status, _ = assoc.send_n_create(mpps_create_dataset(study_uid, "SPS1"), MPPS, mpps_uid)
        assert _final(status) == 0x0111
        # N-SET on an unknown instance: 0112 No Such SOP Instance.
        status, _ = assoc.send_n_set(_completion(), MPPS, generate_uid())
        assert _final(status) == 0x0112
        # A status that is not a PPS status: 0106.
        mod = Dataset()
        mod.PerformedProcedureStepStatus = "FINISHED"
        status, _ = assoc.send_n_set(mod, MPPS, mpps_uid)
        assert _final(status) == 0x0106
        # An attribute N-SET may not change (Table F.7.2-1 "Not allowed"): 0106.
        mod = Dataset()
        mod.PerformedProcedureStepStartDate = "20240116"
        status, _ = assoc.send_n_set(mod, MPPS, mpps_uid)
        assert _final(status) == 0x0106
        # COMPLETED without the final-state attributes (End Date/Time): 0110.
        mod = Dataset()
        mod.PerformedProcedureStepStatus = "COMPLETED"
        status, _ = assoc.send_n_set(mod, MPPS, mpps_uid)
        assert _final(status) == 0x0110
        assert _step_status(server, str(item["id"]), "SPS1") == "IN PROGRESS"
        status, _ = assoc.send_n_set(_completion(), MPPS, mpps_uid)
        assert _final(status) == 0x0000
        # Any N-SET after a final state: 0110 Processing Failure (F.7.2.2.4.2).
        for again in (_completion("DISCONTINUED"), _completion("IN PROGRESS")):
            status, _ = assoc.send_n_set(again, MPPS, mpps_uid)
            assert _final(status) == 0x0110
    assert _step_status(server, str(item["id"]), "SPS1") == "COMPLETED"


def test_unscheduled_mpps_and_scp_assigned_uid(server: RunningServer) -> None:
    """PS3.7 10.1.5.1.4: without an Affected SOP Instance UID the SCP assigns and returns one."""
    from pynetdicom import AE, evt

    received: list[str] = []

    def on_receive(event: evt.Event) -> None:
        command = event.message.command_set
        if "AffectedSOPInstanceUID" in command:
            received.append(str(command.AffectedSOPInstanceUID))

    ae = AE(ae_title="WFTEST")
    ae.add_requested_context(MPPS)
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        ae_title="NOCTIS",
        evt_handlers=[(evt.EVT_DIMSE_RECV, on_receive)],
    )
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_create(mpps_create_dataset(generate_uid(), ""), MPPS)
        assert _final(status) == 0x0000
    finally:
        assoc.release()
    assert len(received) == 1
    stored = httpx.get(f"{server.http_url}/workflow/mpps/{received[0]}", timeout=10)
    assert stored.status_code == 200 and stored.json()["status"] == "IN PROGRESS"
