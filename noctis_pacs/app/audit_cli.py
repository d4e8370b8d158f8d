"""``noctis-pacs audit [verify | prune]``: read, check and prune the audit trail.

``audit`` prints the records matching ``--since`` / ``--until`` / ``--study`` /
``--principal`` / ``--action``, oldest first (``--json``: one object per line with
``time``, ``principal``, ``action``, ``study_uids``, ``outcome``, ``client`` and
the rest of the record).  ``audit verify`` walks the hash chain and exits 1 naming
the first broken record.  ``audit prune`` removes records older than
``audit.retention_days`` (or ``--days``).  Reading the trail is itself recorded.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
from typing import Any

from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.audit import AuditAction, AuditEvent
from noctis_pacs.core.settings import Settings

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?Z?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class TimeError(ValueError):
    pass


def parse_time(text: str, *, now: float | None = None) -> str:
    """``2026-12-06``, ``2026-12-06T10:00[:00]`` (UTC) or ``30m`` / ``24h`` / ``7d`` ago, as
    the text the trail's times compare with."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        seconds = int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)]
        moment = (time.time() if now is None else now) - seconds
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    if not _ISO.match(text):
        raise TimeError(f"{text!r} is not a time: use 2026-12-06, 2026-12-06T10:00 or 24h")
    return text.rstrip("Z").replace(" ", "T")


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "audit",
        help="the audit trail: list records, `audit verify` the hash chain, `audit prune`",
    )
    common_options(parser)
    parser.add_argument(
        "what", nargs="?", choices=("list", "verify", "prune"), default="list", help="(list)"
    )
    parser.add_argument("--since", help="from this time (UTC; or 30m, 24h, 7d ago)")
    parser.add_argument("--until", help="before this time (UTC; or 30m, 24h, 7d ago)")
    parser.add_argument("--study", help="records naming this Study Instance UID")
    parser.add_argument("--principal", help="records of this principal (token, user, AE title)")
    parser.add_argument("--action", help="records of this action (qido, c-store, ...)")
    parser.add_argument("--limit", type=int, help="at most this many records")
    parser.add_argument("--days", type=int, help="prune: keep this many days (retention_days)")
    parser.add_argument("--json", action="store_true", help="JSON lines")
    parser.set_defaults(handler=run)


def operator() -> str:
    """Who runs the CLI (the operating-system user), for its audit records."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in a bare container
        return "cli"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from storage.archive import Archive

    archive = Archive(settings)
    try:
        if args.what == "verify":
            return _verify(archive, args)
        if args.what == "prune":
            return _prune(archive, args, settings)
        return _list(archive, args)
    except TimeError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        archive.close()


def _list(archive: Any, args: argparse.Namespace) -> int:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    records = archive.audit_records(
        since=since,
        until=until,
        study_uid=args.study,
        principal=args.principal,
        action=args.action,
        limit=args.limit,
    )
    for record in records:
        if args.json:
            print(json.dumps(record.to_json(), ensure_ascii=False))
        else:
            who = record.principal or "-"
            if record.principal_kind:
                who += f"({record.principal_kind})"
            studies = ",".join(record.study_uids) or "-"
            print(
                f"{record.seq}\t{record.time}\t{who}\t{record.client or '-'}\t{record.action}"
                f"\t{record.outcome}\t{studies}\t{record.detail}"
            )
    archive.audit(
        AuditEvent(
            action=AuditAction.AUDIT_READ,
            principal=operator(),
            principal_kind="cli",
            study_uids=(args.study,) if args.study else (),
            query={
                k: v
                for k, v in {
                    "since": since,
                    "until": until,
                    "principal": args.principal,
                    "action": args.action,
                }.items()
                if v
            },
            detail=f"{len(records)} record(s)",
        )
    )
    return EXIT_OK


def _verify(archive: Any, args: argparse.Namespace) -> int:
    result = archive.verify_audit()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "broken_seq": result.broken_seq,
                    "reason": result.reason,
                }
            )
        )
    elif result.ok:
        print(f"audit trail intact: {result.checked} record(s) verified")
    else:
        print(f"audit trail broken at record {result.broken_seq}: {result.reason}")
    return EXIT_OK if result.ok else EXIT_FAILED


def _prune(archive: Any, args: argparse.Namespace, settings: Settings) -> int:
    days = settings.audit.retention_days if args.days is None else args.days
    if days <= 0:
        print("audit prune: no retention set (audit.retention_days or --days)", file=sys.stderr)
        return EXIT_USAGE
    cutoff = parse_time(f"{days}d")
    removed = archive.prune_audit(cutoff)
    archive.audit(
        AuditEvent(
            action=AuditAction.AUDIT_PRUNE,
            principal=operator(),
            principal_kind="cli",
            detail=f"{removed} record(s) before {cutoff} removed",
        )
    )
    print(f"removed {removed} audit record(s) older than {days} day(s)")
    return EXIT_OK
