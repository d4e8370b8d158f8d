"""Admin CLI verbs: ``remote add|list|remove|echo``, ``send`` and ``jobs``.

They work on the index while the server runs: a remote added here is used at
once by C-MOVE and the DIMSE allow-list of every running process; a send queued
here is run by a serving process's job runner (or by this command with
``--wait``, when no server runs). Each act is recorded like the REST API's
(principal ``cli``).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import Any

from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.settings import Settings

CLI_PRINCIPAL = "cli"


def register(sub: Any) -> None:
    remote = sub.add_parser("remote", help="remote AEs and DICOMweb peers, at run time")
    remote_sub = remote.add_subparsers(dest="remote_command", required=True)
    add = remote_sub.add_parser("add", help="add a remote (used at once, no restart)")
    common_options(add)
    add.add_argument("name")
    add.add_argument("--ae-title", help="the remote's AE title (DICOM)")
    add.add_argument("--host")
    add.add_argument("--port", type=int)
    add.add_argument(
        "--permissions",
        default="store,query,retrieve",
        help="comma-separated: store, query, retrieve (allow-list)",
    )
    add.add_argument("--check-host", action="store_true", help="callers must come from --host")
    add.add_argument("--url", help="a DICOMweb peer's service root (instead of a DICOM AE)")
    add.add_argument("--username", default="", help="DICOMweb peer: HTTP Basic user name")
    add.add_argument(
        "--secret-stdin",
        action="store_true",
        help="DICOMweb peer: read its password or token from standard input",
    )
    add.set_defaults(handler=cmd_remote_add)
    for name, handler, text in (
        ("list", cmd_remote_list, "list the remotes"),
        ("remove", cmd_remote_remove, "remove a remote kept in the index"),
        ("echo", cmd_remote_echo, "C-ECHO a remote AE and say why it failed"),
    ):
        parser = remote_sub.add_parser(name, help=text)
        common_options(parser)
        if name == "list":
            parser.add_argument("--json", action="store_true")
        else:
            parser.add_argument("name")
        parser.set_defaults(handler=handler)

    send = sub.add_parser("send", help="send a study, series or instances to a remote (a job)")
    common_options(send)
    send.add_argument("destination", help="the remote's name")
    send.add_argument("--study")
    send.add_argument("--series")
    send.add_argument("--instance", action="append", help="SOP Instance UID (repeatable)")
    send.add_argument("--max-attempts", type=int, default=5)
    send.add_argument("--wait", action="store_true", help="run the job here and wait for its end")
    send.set_defaults(handler=cmd_send)

    retention = sub.add_parser("retention", help="retention policies, protected studies, runs")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_sub.add_parser("run", help="apply the policies now (or --dry-run)")
    common_options(run)
    run.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=cmd_retention_run)
    policy = retention_sub.add_parser("add", help="add a policy")
    common_options(policy)
    policy.add_argument("name")
    policy.add_argument("--max-age-days", type=int, default=0)
    policy.add_argument("--basis", default="study_date", help="study_date or received")
    policy.add_argument("--quota-bytes", type=int, default=0)
    policy.add_argument("--facility", default="")
    policy.add_argument("--modality", default="")
    policy.set_defaults(handler=cmd_retention_add)
    for name, handler, text in (
        ("list", cmd_retention_list, "list the policies and protected studies"),
        ("remove", cmd_retention_remove, "remove a policy"),
        ("protect", cmd_retention_protect, "protect a study (Study Instance UID)"),
        ("unprotect", cmd_retention_unprotect, "remove a study's protection"),
    ):
        parser = retention_sub.add_parser(name, help=text)
        common_options(parser)
        if name != "list":
            parser.add_argument("name" if name == "remove" else "study")
        if name == "protect":
            parser.add_argument("--reason", default="")
        parser.set_defaults(handler=handler)

    jobs = sub.add_parser("jobs", help="list jobs; show, cancel or retry one")
    common_options(jobs)
    jobs.add_argument(
        "action", nargs="?", default="list", choices=["list", "show", "cancel", "retry"]
    )
    jobs.add_argument("job", nargs="?", type=int)
    jobs.add_argument("--state", help="only jobs in this state (list)")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=cmd_jobs)


def _archive(settings: Settings) -> Any:
    from storage.archive import Archive

    return Archive(settings)


def _record(archive: Any, action: str, outcome: str, **details: Any) -> None:
    archive.record_admin_act(
        principal=CLI_PRINCIPAL,
        action=action,
        outcome=outcome,
        client=getpass.getuser(),
        details=details,
    )


def cmd_remote_add(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.core.remotes import DICOMWEB, RemoteError, parse_remote

    raw: dict[str, Any] = {"name": args.name}
    if args.url:
        raw.update(kind=DICOMWEB, url=args.url, username=args.username)
        if args.secret_stdin:
            raw["secret"] = sys.stdin.readline().rstrip("\n")
    else:
        raw.update(
            ae_title=args.ae_title,
            host=args.host,
            port=args.port,
            permissions=[p.strip() for p in args.permissions.split(",") if p.strip()],
            check_host=args.check_host,
        )
    archive = _archive(settings)
    try:
        try:
            remote = parse_remote(raw)
            archive.remotes.add(remote)
        except RemoteError as exc:
            _record(archive, "remote.add", "refused", reason=str(exc))
            print(f"remote add: {exc}", file=sys.stderr)
            return EXIT_USAGE
        _record(archive, "remote.add", "success", name=remote.name, kind=remote.kind)
    finally:
        archive.close()
    print(f"added remote {remote.name}")
    return EXIT_OK


def cmd_remote_list(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        remotes = [r.public() for r in archive.remotes.entries()]
    finally:
        archive.close()
    if args.json:
        print(json.dumps(remotes))
        return EXIT_OK
    for r in remotes:
        if r["kind"] == "dimse":
            where = f"{r['ae_title']}@{r['host']}:{r['port']} ({','.join(r['permissions'])})"
        else:
            where = r["url"]
        print(f"{r['name']:<20} {r['kind']:<9} {r['source']:<7} {where}")
    return EXIT_OK


def cmd_remote_remove(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.core.remotes import RemoteError

    archive = _archive(settings)
    try:
        try:
            removed = archive.remotes.remove(args.name)
        except RemoteError as exc:
            _record(archive, "remote.remove", "refused", name=args.name, reason=str(exc))
            print(f"remote remove: {exc}", file=sys.stderr)
            return EXIT_FAILED
        _record(archive, "remote.remove", "success" if removed else "not found", name=args.name)
    finally:
        archive.close()
    if not removed:
        print(f"remote remove: no remote named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed remote {args.name}")
    return EXIT_OK


def cmd_remote_echo(args: argparse.Namespace, settings: Settings) -> int:
    from dimse.scu import echo

    archive = _archive(settings)
    try:
        remote = archive.remotes.get(args.name)
        if remote is None or remote.kind != "dimse":
            print(f"remote echo: no DICOM remote named {args.name!r}", file=sys.stderr)
            return EXIT_FAILED
        result = echo(
            remote, calling_ae=settings.dimse.ae_title, timeout=settings.jobs.timeout_seconds
        )
        _record(archive, "remote.echo", "success" if result.ok else "failure", name=remote.name)
    finally:
        archive.close()
    if result.ok:
        print(f"C-ECHO {remote.name} ({remote.ae_title}): success in {result.milliseconds:.0f} ms")
        return EXIT_OK
    print(f"C-ECHO {remote.name} ({remote.ae_title}) failed: {result.reason}", file=sys.stderr)
    return EXIT_FAILED


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.app.job_runner import JobRunner
    from noctis_pacs.core.model import Level, Match, MatchKind, Query

    matches = [
        Match(keyword, MatchKind.SINGLE, (value,))
        for keyword, value in (("StudyInstanceUID", args.study), ("SeriesInstanceUID", args.series))
        if value
    ]
    if args.instance:
        matches.append(Match("SOPInstanceUID", MatchKind.LIST_OF_UID, tuple(args.instance)))
    if not matches:
        print("send: give --study, --series or --instance", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.max_attempts <= 100:
        print("send: --max-attempts must be from 1 to 100", file=sys.stderr)
        return EXIT_USAGE
    archive = _archive(settings)
    try:
        if archive.remotes.get(args.destination) is None:
            print(f"send: no remote named {args.destination!r}", file=sys.stderr)
            return EXIT_FAILED
        locations = archive.locate(Query(level=Level.IMAGE, matches=tuple(matches)))
        if not locations:
            print("send: nothing in the archive matches", file=sys.stderr)
            return EXIT_FAILED
        request = {"study": args.study, "series": args.series, "instances": args.instance}
        job_id = archive.jobs.create(
            kind="send",
            destination=args.destination,
            request={k: v for k, v in request.items() if v},
            sop_uids=[loc.sop_uid for loc in locations],
            max_attempts=args.max_attempts,
            created_by=CLI_PRINCIPAL,
        )
        _record(archive, "send", "queued", job=job_id, destination=args.destination)
        print(f"job {job_id}: send of {len(locations)} instance(s) to {args.destination} queued")
        if not args.wait:
            return EXIT_OK
        runner = JobRunner(settings, archive)
        while True:
            job = archive.jobs.get(job_id)
            if job is None or job.state in ("succeeded", "failed", "cancelled"):
                break
            if not runner.run_one():
                time.sleep(0.5)
        print(f"job {job_id}: {job.state if job else 'gone'}")
        return EXIT_OK if job is not None and job.state == "succeeded" else EXIT_FAILED
    finally:
        archive.close()


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    if args.action != "list" and args.job is None:
        print(f"jobs {args.action}: give the job id", file=sys.stderr)
        return EXIT_USAGE
    archive = _archive(settings)
    try:
        if args.action == "list":
            jobs = [j.public() for j in archive.jobs.recent(state=args.state)]
            if args.json:
                print(json.dumps(jobs))
            for j in [] if args.json else jobs:
                print(
                    f"{j['id']:>6} {j['kind']:<6} {j['state']:<10} {j['destination']:<16} "
                    f"{j['done']}/{j['total']} sent, {j['failed']} failed, "
                    f"attempt {j['attempts']}/{j['max_attempts']} {j['error']}"
                )
            return EXIT_OK
        job = archive.jobs.get(args.job)
        if job is None:
            print(f"jobs: no job {args.job}", file=sys.stderr)
            return EXIT_FAILED
        if args.action == "show":
            shown = {**job.public(), "items": archive.jobs.items(job.id)}
            print(json.dumps(shown, indent=None if args.json else 2))
            return EXIT_OK
        change = archive.jobs.cancel if args.action == "cancel" else archive.jobs.retry
        if not change(job.id):
            _record(archive, f"job.{args.action}", "refused", job=job.id, state=job.state)
            print(f"jobs {args.action}: job {job.id} is {job.state}", file=sys.stderr)
            return EXIT_FAILED
        _record(archive, f"job.{args.action}", "success", job=job.id)
        print(f"job {job.id}: {args.action} done")
        return EXIT_OK
    finally:
        archive.close()


def cmd_retention_run(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        result = archive.retention_run(dry_run=args.dry_run, principal=CLI_PRINCIPAL)
    finally:
        archive.close()
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    verb = "would delete" if args.dry_run else "deleted"
    print(f"retention {verb} {len(result['studies'])} study(ies), {result['bytes']} bytes")
    for item in result["studies"]:
        print(f"  {item['study_uid']}  {item['policy']}: {item['reason']}")
    return EXIT_OK


def cmd_retention_add(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.core.retention import PolicyError, parse_policy

    raw = {
        "name": args.name,
        "max_age_days": args.max_age_days,
        "basis": args.basis,
        "quota_bytes": args.quota_bytes,
        "facility": args.facility,
        "modality": args.modality,
    }
    try:
        policy = parse_policy(raw)
    except PolicyError as exc:
        print(f"retention add: {exc}", file=sys.stderr)
        return EXIT_USAGE
    archive = _archive(settings)
    try:
        added = archive.retention.add_policy(policy)
        _record(archive, "retention.policy.add", "success" if added else "refused", name=args.name)
    finally:
        archive.close()
    if not added:
        print(f"retention add: a policy named {args.name!r} exists already", file=sys.stderr)
        return EXIT_FAILED
    print(f"added retention policy {args.name}")
    return EXIT_OK


def cmd_retention_list(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        listing = {
            "policies": [p.public() for p in archive.retention.policies()],
            "protected": archive.retention.protected(),
        }
    finally:
        archive.close()
    print(json.dumps(listing, indent=2))
    return EXIT_OK


def cmd_retention_remove(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        removed = archive.retention.remove_policy(args.name)
        _record(archive, "retention.policy.remove", "success" if removed else "not found")
    finally:
        archive.close()
    if not removed:
        print(f"retention remove: no policy named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_retention_protect(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        archive.retention.protect(args.study, args.reason)
        _record(archive, "retention.protect", "success")
    finally:
        archive.close()
    print(f"study {args.study} is protected from retention")
    return EXIT_OK


def cmd_retention_unprotect(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        removed = archive.retention.unprotect(args.study)
        _record(archive, "retention.unprotect", "success" if removed else "not found")
    finally:
        archive.close()
    if not removed:
        print(f"retention unprotect: study {args.study} is not protected", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
