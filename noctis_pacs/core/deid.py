"""De-identification with the PS3.15 Annex E Basic Application Level Confidentiality
Profile, and its Retain Longitudinal Temporal Information with Full Dates Option and
Clean Descriptors Option (PS3.15 E.3.6, E.3.5): rules, pure.

``ACTIONS`` holds, for each attribute this module handles, the action code of Table
E.1-1 (its Basic Profile column) and, where they differ, the codes of the two
options' columns. Where the table allows several actions (``X/Z``, ``X/Z/D``, ...)
the first is applied. The codes mean (PS3.15 E.1.1):

- ``D`` replace with a dummy value of the same VR, ``Z`` empty (or a dummy),
- ``X`` remove, ``K`` keep, ``C`` clean (keep the value with the patient's
  identifying values taken out),
- ``U`` replace the UID with a new one, the same new one for the same old one
  within one de-identification (``UidMap``), anywhere in the data set, sequences too.

Beyond the table's rows: every private attribute is removed (the Basic Profile
without the Retain Safe Private Option), as are curves (50xx) and overlay data and
comments (60xx, E.1.1 note); Patient Identity Removed (0012,0062) becomes YES, and
De-identification Method (0012,0063) with its Code Sequence (0012,0064: CID 7050
codes 113100, 113105, 113106) and Longitudinal Temporal Information Modified
(0028,0303) say what was done. Pixel data are not touched: an instance whose Burned
In Annotation (0028,0301) is YES is refused or passed with a warning
(:func:`burned_in`), as the request says.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

BASIC, RETAIN_DATES, CLEAN_DESCRIPTORS = "basic", "retain_dates", "clean_descriptors"

#: keyword -> (Basic Profile action, Retain Longitudinal Full Dates action, Clean
#: Descriptors action); ``""`` for an option: as in the Basic Profile column.
ACTIONS: dict[str, tuple[str, str, str]] = {
    # Dates and times (Table E.1-1; the full-dates option column is K)
    "StudyDate": ("Z", "K", ""),
    "SeriesDate": ("X/D", "K", ""),
    "AcquisitionDate": ("X/Z", "K", ""),
    "ContentDate": ("Z/D", "K", ""),
    "StudyTime": ("Z", "K", ""),
    "SeriesTime": ("X/D", "K", ""),
    "AcquisitionTime": ("X/Z", "K", ""),
    "ContentTime": ("Z/D", "K", ""),
    "AcquisitionDateTime": ("X/Z/D", "K", ""),
    "InstanceCreationDate": ("X/D", "K", ""),
    "InstanceCreationTime": ("X/Z/D", "K", ""),
    "PerformedProcedureStepStartDate": ("X", "K", ""),
    "PerformedProcedureStepStartTime": ("X", "K", ""),
    "PatientBirthTime": ("X", "", ""),
    # Patient
    "PatientName": ("Z", "", ""),
    "PatientID": ("Z", "", ""),
    "PatientBirthDate": ("Z", "", ""),
    "PatientSex": ("Z", "", ""),
    "PatientAge": ("X", "", ""),
    "PatientSize": ("X", "", ""),
    "PatientWeight": ("X", "", ""),
    "PatientAddress": ("X", "", ""),
    "PatientTelephoneNumbers": ("X", "", ""),
    "PatientMotherBirthName": ("X", "", ""),
    "OtherPatientIDs": ("X", "", ""),
    "OtherPatientNames": ("X", "", ""),
    "OtherPatientIDsSequence": ("X", "", ""),
    "MedicalRecordLocator": ("X", "", ""),
    "EthnicGroup": ("X", "", ""),
    "Occupation": ("X", "", ""),
    "AdditionalPatientHistory": ("X", "", "C"),
    "PatientComments": ("X", "", "C"),
    "MilitaryRank": ("X", "", ""),
    "BranchOfService": ("X", "", ""),
    "CountryOfResidence": ("X", "", ""),
    "RegionOfResidence": ("X", "", ""),
    # Study, visit, request
    "AccessionNumber": ("Z", "", ""),
    "StudyID": ("Z", "", ""),
    "StudyDescription": ("X", "", "C"),
    "SeriesDescription": ("X", "", "C"),
    "ImageComments": ("X", "", "C"),
    "ProtocolName": ("X/D", "", "C"),
    "AdmittingDiagnosesDescription": ("X", "", "C"),
    "RequestedProcedureDescription": ("X/Z", "", "C"),
    "PerformedProcedureStepDescription": ("X", "", "C"),
    "PerformedProcedureStepID": ("X", "", ""),
    "RequestAttributesSequence": ("X", "", ""),
    "ReferencedPatientSequence": ("X", "", ""),
    "ReferencedStudySequence": ("X/Z", "", ""),
    "ReferencedPerformedProcedureStepSequence": ("X/Z/D", "", ""),
    # People and places
    "ReferringPhysicianName": ("Z", "", ""),
    "ReferringPhysicianAddress": ("X", "", ""),
    "ReferringPhysicianTelephoneNumbers": ("X", "", ""),
    "PhysiciansOfRecord": ("X", "", ""),
    "PerformingPhysicianName": ("X", "", ""),
    "NameOfPhysiciansReadingStudy": ("X", "", ""),
    "OperatorsName": ("X/Z/D", "", ""),
    "RequestingPhysician": ("X", "", ""),
    "InstitutionName": ("X/Z/D", "", ""),
    "InstitutionAddress": ("X", "", ""),
    "InstitutionalDepartmentName": ("X", "", ""),
    "StationName": ("X/Z/D", "", ""),
    "DeviceSerialNumber": ("X/Z/D", "", ""),
    # UIDs (U: replaced consistently, also inside sequences)
    "StudyInstanceUID": ("U", "", ""),
    "SeriesInstanceUID": ("U", "", ""),
    "SOPInstanceUID": ("U", "", ""),
    "FrameOfReferenceUID": ("U", "", ""),
    "SynchronizationFrameOfReferenceUID": ("U", "", ""),
    "ReferencedSOPInstanceUID": ("U", "", ""),
    "ReferencedFrameOfReferenceUID": ("U", "", ""),
    "IrradiationEventUID": ("U", "", ""),
    "MediaStorageSOPInstanceUID": ("U", "", ""),
}

#: The codes of CID 7050 (De-identification Method) for what was applied.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_RETAIN_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")

#: Dummy values for ``D`` (and a ``Z`` the archive needs filled), by VR.
_DUMMIES = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "PN": "ANONYMOUS"}
_DUMMIES.update({"LO": "ANONYMOUS", "SH": "ANONYMOUS", "CS": "ANONYMOUS", "ST": "ANONYMOUS"})

#: ``Z`` attributes given a dummy instead of zero length (E.1.1 allows either): they are
#: Type 1 in the DICOMDIR's STUDY record (PS3.3 F.5), which PS3.10 media need.
_Z_DUMMIES = {"StudyDate": "19000101", "StudyTime": "000000", "StudyID": "ANON"}

_FIELDS = frozenset(
    {"retain_longitudinal_dates", "clean_descriptors", "burned_in", "patient_name"} | {"patient_id"}
)
REFUSE, WARN = "refuse", "warn"


class DeidError(ValueError):
    """A de-identification request that cannot be run; the message says why."""


@dataclass(frozen=True)
class DeidOptions:
    retain_longitudinal_dates: bool = False
    clean_descriptors: bool = False
    #: What an instance with burned-in annotation does: ``refuse`` the job or ``warn``.
    burned_in: str = REFUSE
    #: The pseudonyms given to the patient (``Z`` allows a dummy; empty: ``ANONYMOUS``
    #: and ``ANON-<n>``, n counting the distinct original patients of one export).
    patient_name: str = ""
    patient_id: str = ""

    def public(self) -> dict[str, Any]:
        return dict(vars(self))


def parse_options(raw: dict[str, Any]) -> DeidOptions:
    """The options of a request (unknown fields refused); raises ``DeidError``."""
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise DeidError(f"unknown field(s): {', '.join(unknown)}")
    for flag in ("retain_longitudinal_dates", "clean_descriptors"):
        if not isinstance(raw.get(flag, False), bool):
            raise DeidError(f"{flag} must be true or false")
    burned = raw.get("burned_in", REFUSE)
    if burned not in (REFUSE, WARN):
        raise DeidError("burned_in must be refuse or warn")
    for name, limit in (("patient_name", 64), ("patient_id", 64)):
        value = raw.get(name, "")
        if not isinstance(value, str) or len(value) > limit or "\\" in value:
            raise DeidError(f"{name} must be a string of at most {limit} characters")
    return DeidOptions(
        retain_longitudinal_dates=bool(raw.get("retain_longitudinal_dates", False)),
        clean_descriptors=bool(raw.get("clean_descriptors", False)),
        burned_in=str(burned),
        patient_name=str(raw.get("patient_name", "")),
        patient_id=str(raw.get("patient_id", "")),
    )


def action_for(keyword: str, options: DeidOptions) -> str:
    """The single action applied to ``keyword`` (the first of a compound code)."""
    basic, dates, clean = ACTIONS[keyword]
    code = basic
    if options.retain_longitudinal_dates and dates:
        code = dates
    if options.clean_descriptors and clean:
        code = clean
    return code.split("/")[0]


def burned_in(ds: Dataset) -> bool:
    """Whether the instance says its pixel data carry burned-in annotation (PS3.3
    C.7.6.1.1.4: Burned In Annotation YES), which this profile does not clean."""
    return str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"


@dataclass
class UidMap:
    """Old UID -> new UID within one de-identification (PS3.15 E.1.1 action U)."""

    new_uid: Callable[[], str]
    mapping: dict[str, str] = field(default_factory=dict)

    def __call__(self, old: str) -> str:
        if old not in self.mapping:
            self.mapping[old] = self.new_uid()
        return self.mapping[old]


@dataclass
class Deidentifier:
    """Applies the profile to data sets of one export: UIDs and patient pseudonyms are
    mapped consistently across them."""

    options: DeidOptions
    uids: UidMap
    _patients: dict[str, str] = field(default_factory=dict)
    _counter: Any = field(default_factory=lambda: itertools.count(1))

    def pseudonym(self, patient_id: str) -> str:
        if self.options.patient_id:
            return self.options.patient_id
        if patient_id not in self._patients:
            self._patients[patient_id] = f"ANON-{next(self._counter):04d}"
        return self._patients[patient_id]

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place (and its File Meta's SOP Instance UID)."""
        identifying = _identifying_values(ds)
        new_patient_id = self.pseudonym(str(ds.get("PatientID", "")))
        _walk(ds, self.options, self.uids, identifying, top=True)
        ds.PatientName = self.options.patient_name or "ANONYMOUS"
        ds.PatientID = new_patient_id
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        _mark(ds, self.options)


def _identifying_values(ds: Dataset) -> list[str]:
    """The patient's identifying strings a cleaned descriptor must not keep."""
    values = []
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"):
        text = str(ds.get(keyword, "") or "")
        values.append(text)
        if keyword == "PatientName":
            values += [part for part in text.replace("^", " ").split() if len(part) > 1]
    return sorted({v for v in values if v}, key=len, reverse=True)


def _clean(text: str, identifying: list[str]) -> str:
    for value in identifying:
        text = text.replace(value, "")
        text = text.replace(value.upper(), "").replace(value.lower(), "")
    return " ".join(text.split())


def _walk(
    ds: Dataset, options: DeidOptions, uids: UidMap, identifying: list[str], *, top: bool
) -> None:
    for elem in list(ds):
        tag: BaseTag = elem.tag
        if (
            tag.is_private
            or tag.group in range(0x5000, 0x5100, 2)
            or (tag.group in range(0x6000, 0x6100, 2) and tag.element in (0x3000, 0x4000))
        ):
            del ds[tag]
            continue
        keyword = elem.keyword
        if keyword in ACTIONS:
            code = action_for(keyword, options)
            if code == "X":
                del ds[tag]
                continue
            if code == "Z":
                elem.value = [] if elem.VR == "SQ" else _Z_DUMMIES.get(keyword, "")
                continue
            if code == "D":
                elem.value = [] if elem.VR == "SQ" else _DUMMIES.get(elem.VR, "")
                continue
            if code == "C":
                elem.value = _clean(str(elem.value or ""), identifying)
                continue
            if code == "U" and elem.value:
                values = elem.value if elem.VM > 1 else [elem.value]
                mapped = [uids(str(v)) for v in values]
                elem.value = mapped if elem.VM > 1 else mapped[0]
                continue
        if elem.VR == "SQ" and isinstance(elem.value, Sequence):
            for item in elem.value:
                _walk(item, options, uids, identifying, top=False)


def _mark(ds: Dataset, options: DeidOptions) -> None:
    """Patient Identity Removed, De-identification Method (and its codes), Longitudinal
    Temporal Information Modified (PS3.15 E.1.1, E.3.6; PS3.3 C.7.1.1)."""
    codes = [CODE_BASIC]
    if options.retain_longitudinal_dates:
        codes.append(CODE_RETAIN_DATES)
    if options.clean_descriptors:
        codes.append(CODE_CLEAN_DESCRIPTORS)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "; ".join(meaning for _, meaning in codes)[:64]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = (
        "UNMODIFIED" if options.retain_longitudinal_dates else "REMOVED"
    )
