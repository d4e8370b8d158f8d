"""Noctis as a STOW-RS client (PS3.18 10.5): stored instances sent as they lie on
disk to a DICOMweb peer, in batches of one ``multipart/related;
type="application/dicom"`` request each, with the peer's credentials (HTTP Basic
with a user name, else a Bearer token).

The per-instance outcome comes from the response: 200 stores everything; 202 and
409 list the refused instances in the Failed SOP Sequence (PS3.18 Table 10.5.3-3),
whose Failure Reason is reported; any other answer fails the whole batch.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dicomweb import media
from noctis_pacs.core.remotes import Remote
from storage.archive import Archive, InstanceLocation

Outcome = Callable[[str, str, str], None]


def _authorization(remote: Remote) -> dict[str, str]:
    if not remote.secret:
        return {}
    if remote.username:
        token = base64.b64encode(f"{remote.username}:{remote.secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {"Authorization": f"Bearer {remote.secret}"}


def _body(archive: Archive, locations: Sequence[InstanceLocation], boundary: str) -> bytes:
    parts: list[bytes] = []
    for location in locations:
        parts.append(f"--{boundary}\r\nContent-Type: {media.DICOM}\r\n\r\n".encode("ascii"))
        parts.extend(archive.iter_blob(location))
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts)


def _failures(body: bytes) -> dict[str, str] | None:
    """SOP Instance UID -> failure reason from a STOW-RS response; ``None`` if unreadable."""
    try:
        document: Any = json.loads(body or b"{}")
    except ValueError:
        return None
    if isinstance(document, list):
        document = document[0] if document else {}
    if not isinstance(document, dict):
        return None
    failed: dict[str, str] = {}
    sequence = document.get(media.TAG_FAILED_SOP_SEQUENCE, {}).get("Value", [])
    for item in sequence if isinstance(sequence, list) else []:
        uid = (item.get(media.TAG_REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or [""])[0]
        reason = (item.get(media.TAG_FAILURE_REASON, {}).get("Value") or [""])[0]
        code = f"0x{int(reason):04X}" if isinstance(reason, int) else str(reason)
        failed[str(uid)] = f"refused by the peer (Failure Reason {code})"
    return failed


def _batches(
    locations: Sequence[InstanceLocation], size: int
) -> Iterator[Sequence[InstanceLocation]]:
    for start in range(0, len(locations), size):
        yield locations[start : start + size]


def stow(
    archive: Archive,
    remote: Remote,
    locations: Sequence[InstanceLocation],
    *,
    batch: int,
    timeout: float,
    outcome: Outcome,
    cancelled: Callable[[], bool] = lambda: False,
) -> str | None:
    """Send ``locations`` to the DICOMweb peer ``remote``; each instance's outcome goes to
    ``outcome``. Returns why the rest were not tried (peer unreachable), else ``None``."""
    url = f"{remote.url}/studies"
    for group in _batches(locations, batch):
        if cancelled():
            return "cancelled"
        boundary = uuid.uuid4().hex
        request = urllib.request.Request(
            url,
            data=_body(archive, group, boundary),
            method="POST",
            headers={
                "Content-Type": (
                    f'{media.MULTIPART_RELATED}; type="{media.DICOM}"; boundary={boundary}'
                ),
                "Accept": media.DICOM_JSON,
                "User-Agent": "noctis-pacs-send",
                **_authorization(remote),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
                status, body = int(answer.status), answer.read()
        except urllib.error.HTTPError as exc:
            status, body = int(exc.code), exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"cannot reach {remote.url}: {reason}"
        failed = _failures(body) if status in (200, 202, 409) else None
        if failed is None:
            for location in group:
                outcome(location.sop_uid, "failed", f"the peer answered HTTP {status}")
            if status in (401, 403):
                return f"the peer refused the credentials (HTTP {status})"
            continue
        for location in group:
            reason = failed.get(location.sop_uid)
            outcome(location.sop_uid, "failed" if reason else "sent", reason or "")
    return None
