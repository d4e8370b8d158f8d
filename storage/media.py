"""Study export as files: a zip of the stored Part 10 files, or PS3.10 media (a File-set
with its DICOMDIR, PS3.10 Section 8 and PS3.3 Annex F) zipped for CD-style hand-over.

The DICOMDIR and the file layout (``PT000000/ST000000/SE000000/IM000000``, PS3.10
8.5 / PS3.12: IDs of at most 8 characters) come from pydicom's ``FileSet``; each
file is copied as stored (no re-encoding).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from pydicom.fileset import FileSet

#: File-set ID of the media (PS3.3 F.5: CS, at most 16 characters).
FILESET_ID = "NOCTIS"


class MediaError(ValueError):
    """The instances cannot be written as PS3.10 media; the message says why."""


#: A Part 10 file to put in a zip: its path, or what opens it (a blob in a pack).
Source = Path | Callable[[], BinaryIO]


def write_zip(files: Sequence[tuple[str, Source]], target: Path, *, dicomdir: bool) -> int:
    """Write ``files`` ((SOP Instance UID, source)) into the zip ``target``: as PS3.10
    media with a DICOMDIR, or as ``<SOP Instance UID>.dcm``. Returns the number of
    instances written; raises ``MediaError`` when a record cannot be built."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        if not dicomdir:
            for sop_uid, source in files:
                if isinstance(source, Path):
                    zf.write(source, f"{sop_uid}.dcm")
                    continue
                with source() as src, zf.open(f"{sop_uid}.dcm", "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            return len(files)
        with tempfile.TemporaryDirectory(prefix="noctis-media-", dir=target.parent) as tmp:
            root = Path(tmp) / "media"
            staged = Path(tmp) / "stored"
            staged.mkdir()
            fileset = FileSet()
            fileset.ID = FILESET_ID
            for n, (sop_uid, source) in enumerate(files):
                path = source if isinstance(source, Path) else staged / f"{n}.dcm"
                if not isinstance(source, Path):  # FileSet copies a path's file as stored
                    with source() as src, open(path, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                try:
                    fileset.add(path)
                except (ValueError, KeyError, AttributeError) as exc:
                    raise MediaError(
                        f"instance {sop_uid} cannot get a DICOMDIR record: {exc}"
                    ) from None
            fileset.write(root)
            written = 0
            for item in sorted(root.rglob("*")):
                if item.is_file():
                    zf.write(item, item.relative_to(root).as_posix())
                    written += item.name != "DICOMDIR"
            shutil.rmtree(root, ignore_errors=True)
    return written
