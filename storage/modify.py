"""Modify a study, series or instance in the archive (``Archive.modify``).

Every instance under the resource is read from its blob, changed by the request
(``noctis_pacs.core.modify``: attributes replaced and removed, new UIDs unless
``keep_uids``) and written to a spool file in its stored transfer syntax (pixel
data copied as stored, never decoded). Only when every instance was prepared is
anything stored, through the one ingest pipeline; then, unless the original is
kept, the old instances are deleted (with new UIDs) or were replaced in place
(``keep_uids``). A request or an instance that cannot be changed changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import dcmread
from pydicom.uid import generate_uid

from noctis_pacs.core.auth import Principal
from noctis_pacs.core.modify import ModifyError, ModifyRequest, UidPlan, apply_changes
from storage.ingest import Origin, Status

if TYPE_CHECKING:
    from storage.archive import Archive


@dataclass(frozen=True)
class ModifyResult:
    level: str
    #: The resource's UID before and after (equal with ``keep_uids``).
    old_uid: str
    new_uid: str
    study_uid: str
    instances: int
    kept_original: bool
    uid_map: dict[str, str]

    def public(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "old_uid": self.old_uid,
            "new_uid": self.new_uid,
            "study_uid": self.study_uid,
            "instances": self.instances,
            "kept_original": self.kept_original,
        }


def modify_resource(
    archive: Archive,
    request: ModifyRequest,
    *,
    study_uid: str,
    series_uid: str | None,
    sop_uid: str | None,
    principal: Principal | None,
    keep_original_default: bool,
) -> ModifyResult | None:
    """Apply ``request`` to the resource; ``None`` when it is not in the archive (or not
    in the principal's facilities). Raises ``ModifyError`` (nothing changed)."""
    level = "instance" if sop_uid else "series" if series_uid else "study"
    locations = archive.locate_uids(study_uid, series_uid, sop_uid, principal=principal)
    if not locations:
        return None
    keep_original = (
        request.keep_original if request.keep_original is not None else keep_original_default
    )
    if request.keep_uids:
        keep_original = False
    plan = UidPlan(level=level, keep_uids=request.keep_uids, new_uid=lambda: str(generate_uid()))
    spooled: list[Path] = []
    try:
        for location in locations:
            with archive.open_blob(location) as fh:
                ds = dcmread(fh)
            apply_changes(ds, request)
            plan.apply(ds)
            target = archive.spool_path()
            spooled.append(target)
            try:
                ds.save_as(target, enforce_file_format=True)
            except (ValueError, TypeError, OverflowError) as exc:
                raise ModifyError(f"instance {location.sop_uid} cannot be written: {exc}") from None
        origin = Origin("modify")
        failures = []
        for path in spooled:
            outcome = archive.ingestor.store_path(
                path, origin, move=True, replace=request.keep_uids
            )
            if outcome.status not in (Status.STORED, Status.ALREADY_STORED):
                failures.append(outcome.reason)
        if failures:
            raise ModifyError(
                f"{len(failures)} modified instance(s) could not be stored (the originals "
                f"are kept, copies stored so far stay): {failures[0]}"
            )
    finally:
        for path in spooled:
            path.unlink(missing_ok=True)
    if not request.keep_uids and not keep_original:
        archive.delete(study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid)
    old = sop_uid or series_uid or study_uid
    new = plan.mapping.get(old, old)
    return ModifyResult(
        level=level,
        old_uid=old,
        new_uid=new,
        study_uid=plan.mapping.get(study_uid, study_uid),
        instances=len(locations),
        kept_original=keep_original,
        uid_map=dict(plan.mapping),
    )
