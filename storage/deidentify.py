"""De-identify a study (``Archive.deidentify``): every instance read from its blob, the
PS3.15 Annex E Basic Profile applied (``noctis_pacs.core.deid``) with one UID map and
one patient pseudonym map for the whole run, written in its stored transfer syntax
(pixel data copied as stored), then zipped as PS3.10 media with a DICOMDIR or stored
as a new study through the one ingest pipeline. Instances whose pixel data carry
burned-in annotation refuse the run before anything is written, or pass with a
warning, as asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.uid import generate_uid

from noctis_pacs.core.deid import REFUSE, Deidentifier, DeidError, DeidOptions, UidMap, burned_in
from storage.ingest import Origin, Status
from storage.media import MediaError, write_zip

if TYPE_CHECKING:
    from storage.archive import Archive

ZIP, STORE = "zip", "store"


@dataclass
class DeidResult:
    instances: int = 0
    study_uids: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: (old SOP Instance UID, "sent" | "failed", detail) per instance.
    outcomes: list[tuple[str, str, str]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "study_uids": self.study_uids,
            "warnings": self.warnings[:20],
        }


def deidentify_study(
    archive: Archive,
    *,
    study_uid: str,
    options: DeidOptions,
    output: str,
    target: Path | None,
    cancelled: Callable[[], bool] = lambda: False,
) -> DeidResult:
    """De-identify ``study_uid`` into the zip ``target`` (``output`` zip) or as a new study
    (``store``). Raises ``DeidError`` (nothing written) for a missing study, burned-in
    annotation with ``options.burned_in == "refuse"``, or media that cannot be built."""
    locations = archive.locate_uids(study_uid)
    if not locations:
        raise DeidError(f"study {study_uid} is not in the archive")
    result = DeidResult()
    flagged = []
    for location in locations:
        with archive.open_blob(location) as fh:
            header = dcmread(fh, stop_before_pixels=True, specific_tags=["BurnedInAnnotation"])
        if burned_in(header):
            flagged.append(location.sop_uid)
    if flagged and options.burned_in == REFUSE:
        raise DeidError(
            f"{len(flagged)} instance(s) have burned-in annotation (0028,0301 YES) that this "
            "profile does not remove from the pixel data; refused (ask burned_in: warn)"
        )
    if flagged:
        result.warnings.append(
            f"{len(flagged)} instance(s) keep burned-in annotation in their pixel data"
        )
    deidentifier = Deidentifier(options, UidMap(lambda: str(generate_uid())))
    spooled: list[tuple[str, str, Path]] = []
    try:
        for location in locations:
            if cancelled():
                raise DeidError("cancelled")
            with archive.open_blob(location) as fh:
                ds = dcmread(fh)
            deidentifier.apply(ds)
            path = archive.spool_path()
            spooled.append((location.sop_uid, str(ds.SOPInstanceUID), path))
            ds.save_as(path, enforce_file_format=True)
        result.study_uids = [deidentifier.uids.mapping.get(study_uid, study_uid)]
        if output == ZIP:
            assert target is not None
            try:
                write_zip([(new, path) for _, new, path in spooled], target, dicomdir=True)
            except MediaError as exc:
                raise DeidError(str(exc)) from None
            result.outcomes = [(old, "sent", "") for old, _, _ in spooled]
        else:
            origin = Origin("deidentify")
            for old, _, path in spooled:
                outcome = archive.store_path(path, origin, move=True)
                ok = outcome.status in (Status.STORED, Status.ALREADY_STORED)
                result.outcomes.append((old, "sent" if ok else "failed", outcome.reason or ""))
        flagged_set = set(flagged)
        result.outcomes = [
            (old, state, detail or ("burned-in annotation kept" if old in flagged_set else ""))
            for old, state, detail in result.outcomes
        ]
        result.instances = sum(1 for _, state, _ in result.outcomes if state == "sent")
    finally:
        for _, _, path in spooled:
            path.unlink(missing_ok=True)
    return result
