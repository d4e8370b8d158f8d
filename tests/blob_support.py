"""Damage a stored blob the way a disk or an operator can, in either layout (a file of
its own under ``blobs/``, or a record in a pack under ``packs/``, ``storage.packs``)."""

from __future__ import annotations

import os

from storage.blobstore import FileSystemBlobStore
from storage.packs import parse_key


def blob_region(blobs: FileSystemBlobStore, key: str) -> tuple[str, int, int]:
    """(file, offset, length) of the blob's bytes on disk."""
    place = parse_key(key)
    if place is None:
        path = blobs.local_path(key)
        assert path is not None
        return str(path), 0, path.stat().st_size
    return str(blobs.root / "packs" / f"{place.pack}.pack"), place.offset, place.length


def overwrite_blob(blobs: FileSystemBlobStore, key: str, data: bytes, at: int = 0) -> None:
    """Overwrite bytes of the blob in place (``at`` from its start), as bit rot does."""
    path, offset, length = blob_region(blobs, key)
    assert at + len(data) <= length
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset + at)
    finally:
        os.close(fd)


def remove_blob(blobs: FileSystemBlobStore, key: str) -> None:
    """Take the blob away behind the index's back (its file, or its pack record)."""
    if parse_key(key) is None:
        path = blobs.local_path(key)
        assert path is not None
        path.unlink()
    else:
        blobs.delete(key)
