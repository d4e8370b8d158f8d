"""Remote peers: DICOM AEs (C-MOVE destinations, allowed callers, send targets) and
DICOMweb peers (STOW-RS targets).

Pure rules: what a valid remote is, and how one from ``[dimse.remotes.NAME]`` looks
next to one kept in the index.  AE titles follow PS3.5 Table 6.2-1 (AE VR: at most
16 characters of the default repertoire, no backslash, no control characters, not
all spaces).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from noctis_pacs.core.settings import RemoteAE

DIMSE, DICOMWEB = "dimse", "dicomweb"
KINDS = (DIMSE, DICOMWEB)
PERMISSIONS = ("store", "query", "retrieve")
#: Where a remote comes from: the configuration file (read-only) or the index.
FROM_CONFIG, FROM_INDEX = "config", "index"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELDS = frozenset(
    {"name", "kind", "ae_title", "host", "port", "url", "username", "secret", "permissions"}
    | {"check_host"}
)


class RemoteError(ValueError):
    """A remote that cannot be saved; the message says why."""


@dataclass(frozen=True)
class Remote:
    name: str
    kind: str = DIMSE
    ae_title: str = ""
    host: str = ""
    port: int = 0
    #: DICOMweb peers: the service root (``https://host/dicom-web``).
    url: str = ""
    username: str = ""
    #: A DICOMweb peer's password or bearer token; never shown, logged or returned.
    secret: str = ""
    permissions: tuple[str, ...] = PERMISSIONS
    check_host: bool = False
    source: str = FROM_INDEX

    def public(self) -> dict[str, Any]:
        """What the API and the CLI show (the secret only as whether one is set)."""
        shown: dict[str, Any] = {"name": self.name, "kind": self.kind, "source": self.source}
        if self.kind == DIMSE:
            shown.update(
                ae_title=self.ae_title,
                host=self.host,
                port=self.port,
                permissions=list(self.permissions),
                check_host=self.check_host,
            )
        else:
            shown.update(url=self.url, username=self.username, has_secret=bool(self.secret))
        return shown


def check_ae_title(value: str) -> str:
    """A valid AE title (PS3.5 Table 6.2-1), stripped; raises ``RemoteError``."""
    title = value.strip()
    if not title:
        raise RemoteError("ae_title is empty")
    if len(title) > 16:
        raise RemoteError(f"ae_title {title!r} is longer than 16 characters (PS3.5 6.2)")
    if "\\" in title or any(ord(c) < 0x20 or ord(c) > 0x7E for c in title):
        raise RemoteError(f"ae_title {title!r} has a backslash or a control character (PS3.5 6.2)")
    return title


def parse_remote(raw: Mapping[str, Any]) -> Remote:
    """A remote from a JSON object or CLI options; raises ``RemoteError`` with the reason."""
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise RemoteError(f"unknown field(s): {', '.join(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RemoteError(
            "name must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    kind = raw.get("kind", DIMSE)
    if kind not in KINDS:
        raise RemoteError(f"kind must be one of {', '.join(KINDS)}")
    if kind == DICOMWEB:
        return _dicomweb(name, raw)
    ae_title = raw.get("ae_title")
    if not isinstance(ae_title, str):
        raise RemoteError("ae_title is required (a string)")
    host = raw.get("host")
    if not isinstance(host, str) or not host.strip() or any(c.isspace() for c in host.strip()):
        raise RemoteError("host is required (a host name or address)")
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise RemoteError("port must be an integer from 1 to 65535")
    permissions = raw.get("permissions", list(PERMISSIONS))
    if not isinstance(permissions, list | tuple) or not all(p in PERMISSIONS for p in permissions):
        raise RemoteError(f"permissions must be a list of {', '.join(PERMISSIONS)}")
    check_host = raw.get("check_host", False)
    if not isinstance(check_host, bool):
        raise RemoteError("check_host must be true or false")
    return Remote(
        name=name,
        kind=DIMSE,
        ae_title=check_ae_title(ae_title),
        host=host.strip(),
        port=port,
        permissions=tuple(dict.fromkeys(permissions)),
        check_host=check_host,
    )


def _dicomweb(name: str, raw: Mapping[str, Any]) -> Remote:
    url = raw.get("url")
    if not isinstance(url, str):
        raise RemoteError("url is required for a DICOMweb peer")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RemoteError("url must be an http:// or https:// service root")
    username, secret = raw.get("username", ""), raw.get("secret", "")
    if not isinstance(username, str) or not isinstance(secret, str):
        raise RemoteError("username and secret must be strings")
    return Remote(
        name=name, kind=DICOMWEB, url=url.strip().rstrip("/"), username=username, secret=secret
    )


def from_config(name: str, remote: RemoteAE) -> Remote:
    """A ``[dimse.remotes.NAME]`` entry as a (read-only) remote."""
    return Remote(
        name=name,
        kind=DIMSE,
        ae_title=remote.ae_title.strip(),
        host=remote.host,
        port=remote.port,
        permissions=tuple(remote.permissions),
        check_host=remote.check_host,
        source=FROM_CONFIG,
    )
