"""An instance that contradicts the hierarchy the archive holds is refused, nothing stored.

PS3.3 C.7.3.1 / C.12.1 and PS3.5 9: a SOP Instance UID names one instance and a Series
Instance UID one series, each in one study, for good. An archive cannot file the same
SOP Instance UID (or Series Instance UID) under a second study without one of the two
answers being wrong: the fuzzing of issue 14 found that a resent instance with another
Study Instance UID but the same Series Instance UID was either refused with a
foreign-key error (0x0110 and a traceback) or filed under the series of the first study,
so its Retrieve URL answered 404 and the study counts went wrong.

The rule (docs/reliability.md, README): such an instance is refused with its reason,
C-STORE 0xA900 with an Error Comment and STOW-RS FailureReason 0xA900 (PS3.4 B.2.3,
PS3.18 10.5.3), whatever ``storage.duplicates`` says; the stored instance stays as it
was. To move an instance to another study, delete it first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage
from pynetdicom import build_context

from tests.conftest import RunningServer
from tests.dicomweb_support import multipart_body, new_boundary, stow_headers
from tests.factory import make_dataset, to_bytes, uid
from tests.test_dimse_support import associate


def _stow(server: RunningServer, ds: Dataset) -> httpx.Response:
    boundary = new_boundary()
    return httpx.post(
        f"{server.dicomweb_url}/studies",
        content=multipart_body([to_bytes(ds)], boundary),
        headers=stow_headers(boundary),
        timeout=60,
    )


def _c_store(server: RunningServer, ds: Dataset) -> Any:
    assoc = associate(server.dimse_port, [build_context(SecondaryCaptureImageStorage)])
    assert assoc.is_established
    try:
        return assoc.send_c_store(ds)
    finally:
        assoc.release()


def _instances(server: RunningServer, study: str) -> list[str]:
    found = httpx.get(f"{server.dicomweb_url}/studies/{study}/instances", timeout=30)
    if found.status_code == 404:
        return []
    assert found.status_code == 200, found.text
    return sorted(i["00080018"]["Value"][0] for i in found.json())


def _study_count(server: RunningServer, study: str) -> int | None:
    found = httpx.get(
        f"{server.dicomweb_url}/studies", params={"StudyInstanceUID": study}, timeout=30
    )
    assert found.status_code == 200, found.text
    if not found.json():
        return None
    return int(found.json()[0]["00201208"]["Value"][0])


def _copy(ds: Dataset, **changes: str) -> Dataset:
    other = make_dataset(study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID)
    other.SOPInstanceUID = ds.SOPInstanceUID
    other.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    other.InstanceNumber = 99  # other content: not an identical resend
    for keyword, value in changes.items():
        setattr(other, keyword, value)
    return other


def _refused_by_stow(server: RunningServer, ds: Dataset, named: str) -> None:
    response = _stow(server, ds)
    assert response.status_code == 409, response.text
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900]
    assert failed["00081155"]["Value"] == [str(ds.SOPInstanceUID)]
    warnings = " ".join(response.headers.get_list("warning"))
    assert named in warnings, warnings


def _refused_by_c_store(server: RunningServer, ds: Dataset, named: str) -> None:
    status = _c_store(server, ds)
    assert status.Status == 0xA900, status
    assert named in status.ErrorComment, status.ErrorComment


SENDERS: dict[str, Callable[[RunningServer, Dataset, str], None]] = {
    "stow": _refused_by_stow,
    "c-store": _refused_by_c_store,
}


@pytest.mark.parametrize("sender", sorted(SENDERS))
@pytest.mark.parametrize("series", ["same series", "another series"])
def test_a_stored_sop_instance_resent_under_another_study_is_refused(
    server: RunningServer, sender: str, series: str
) -> None:
    """The issue's case: a stored SOP Instance UID sent again with another Study
    Instance UID, in the same Series Instance UID or another one. Refused with 0xA900
    naming the conflict; the first instance is still served where it was, the second
    study does not appear, and the counts are those of the first study alone."""
    first = make_dataset(study_uid=uid())
    assert _stow(server, first).status_code == 200
    other_study = uid()
    changes = {"StudyInstanceUID": other_study}
    if series == "another series":
        changes["SeriesInstanceUID"] = uid()
    SENDERS[sender](server, _copy(first, **changes), "SOP Instance UID")
    assert _instances(server, first.StudyInstanceUID) == [str(first.SOPInstanceUID)]
    assert _study_count(server, first.StudyInstanceUID) == 1
    assert _instances(server, other_study) == []
    assert _study_count(server, other_study) is None
    stored = httpx.get(
        f"{server.dicomweb_url}/studies/{first.StudyInstanceUID}/series/"
        f"{first.SeriesInstanceUID}/instances/{first.SOPInstanceUID}",
        headers={"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        timeout=30,
    )
    assert stored.status_code == 200
    assert to_bytes(first) in stored.content  # the first one, untouched


@pytest.mark.parametrize("sender", sorted(SENDERS))
def test_a_stored_sop_instance_resent_in_another_series_of_its_study_is_refused(
    server: RunningServer, sender: str
) -> None:
    """Same study, another series: the instance cannot move between series either."""
    first = make_dataset(study_uid=uid())
    assert _stow(server, first).status_code == 200
    SENDERS[sender](server, _copy(first, SeriesInstanceUID=uid()), "SOP Instance UID")
    assert _instances(server, first.StudyInstanceUID) == [str(first.SOPInstanceUID)]
    assert _study_count(server, first.StudyInstanceUID) == 1


@pytest.mark.parametrize("sender", sorted(SENDERS))
def test_a_new_instance_in_a_series_of_another_study_is_refused(
    server: RunningServer, sender: str
) -> None:
    """A new SOP Instance UID whose Series Instance UID is stored under another study:
    filing it under that series would put it in the wrong study, so it is refused."""
    first = make_dataset(study_uid=uid())
    assert _stow(server, first).status_code == 200
    other_study = uid()
    intruder = make_dataset(study_uid=other_study, series_uid=first.SeriesInstanceUID)
    SENDERS[sender](server, intruder, "Series Instance UID")
    assert _instances(server, first.StudyInstanceUID) == [str(first.SOPInstanceUID)]
    assert _study_count(server, first.StudyInstanceUID) == 1
    assert _study_count(server, other_study) is None


def test_keep_first_refuses_the_conflict_too(
    server_factory: Callable[..., RunningServer],
) -> None:
    """``storage.duplicates = "keep_first"`` does not turn the conflict into an
    acknowledgement: the sender must learn that the instance is not in its study."""
    server = server_factory(env={"NOCTIS_STORAGE_DUPLICATES": "keep_first"})
    first = make_dataset(study_uid=uid())
    assert _stow(server, first).status_code == 200
    _refused_by_c_store(server, _copy(first, StudyInstanceUID=uid()), "SOP Instance UID")


def test_the_same_instance_resent_in_its_own_study_and_series_is_still_accepted(
    server: RunningServer,
) -> None:
    """The rule touches only conflicts: an instance resent with its own study and series
    replaces the stored one (``storage.duplicates = "overwrite"``, the default)."""
    first = make_dataset(study_uid=uid())
    assert _stow(server, first).status_code == 200
    assert _c_store(server, _copy(first)).Status == 0x0000
    assert _instances(server, first.StudyInstanceUID) == [str(first.SOPInstanceUID)]
    assert _study_count(server, first.StudyInstanceUID) == 1
