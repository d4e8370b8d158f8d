"""The ``noctis-pacs`` command line.

Every verb shares ``--config``, ``--data-dir`` and ``--db`` (DESIGN.md), works
while the server runs (the index is shared, SQLite in WAL mode), and exits
non-zero on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from noctis_pacs.app import admin_cli, audit_cli, render_cli, route_cli, token_cli, worklist_cli
from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from noctis_pacs.core.logs import configure_logging
from noctis_pacs.core.settings import Settings, SettingsError, load_settings


class Progress:
    """A one-line progress bar on stderr (quiet when stderr is not a terminal)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, done: int, total: int | None, extra: str = "") -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if not final and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6)
        if total:
            width = 30
            filled = int(width * done / total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"{self.label} [{bar}] {done}/{total} {rate:.0f}/s {extra}"
        else:
            text = f"{self.label} {done} {rate:.0f}/s {extra}"
        if self.tty:
            self.stream.write("\r" + text.ljust(100))
            if final:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noctis-pacs", description="Noctis PACS DICOM archive")
    parser.add_argument("--version", action="version", version=f"noctis-pacs {version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP (DICOMweb) and DIMSE servers")
    common_options(serve, creates_archive=True)
    serve.add_argument("--http-host")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--dimse-host")
    serve.add_argument("--dimse-port", type=int)
    serve.add_argument("--ae-title")
    only = serve.add_mutually_exclusive_group()
    only.add_argument("--dimse-only", action="store_true", help="run DIMSE without HTTP")
    only.add_argument("--http-only", action="store_true", help="run HTTP without DIMSE")

    imp = sub.add_parser("import", help="store files, folders (recursively) and zip archives")
    common_options(imp)
    imp.add_argument("paths", nargs="+", type=Path)
    imp.add_argument("--jobs", type=int, default=4, help="parallel stores (default 4)")

    stats = sub.add_parser("stats", help="counts and bytes per level")
    common_options(stats)
    stats.add_argument("--json", action="store_true", help="print a JSON object")

    verify = sub.add_parser("verify", help="check every blob exists and matches its hash")
    common_options(verify)
    verify.add_argument("--json", action="store_true")

    reindex = sub.add_parser("reindex", help="rebuild the index from the blobs")
    common_options(reindex)

    delete = sub.add_parser("delete", help="delete a study, series or instance")
    common_options(delete)
    delete.add_argument("--study", help="Study Instance UID")
    delete.add_argument("--series", help="Series Instance UID")
    delete.add_argument("--instance", help="SOP Instance UID")

    db = sub.add_parser("db", help="index maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate", help="create the archive, or bring its index to this version's schema"
    )
    common_options(migrate, creates_archive=True)

    for register in VERB_MODULES:
        register(sub)
    return parser


#: Later verbs (worklist, render, ...) register here: ``register(subparsers)`` adds a
#: parser whose ``handler`` default is ``handler(args, settings) -> int``.
#: Verbs defined in their own modules: each ``register(subparsers)`` adds its parsers
#: and sets ``handler`` on them. Add a verb module here.
VERB_MODULES: tuple[Callable[[Any], None], ...] = (
    worklist_cli.register,
    render_cli.register,
    audit_cli.register,
    token_cli.register,
    admin_cli.register,
    route_cli.register,
)


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, Any]] = {
        "storage": {"data_dir": getattr(args, "data_dir", None), "db": getattr(args, "db", None)},
        "http": {
            "host": getattr(args, "http_host", None),
            "port": getattr(args, "http_port", None),
        },
        "dimse": {
            "host": getattr(args, "dimse_host", None),
            "port": getattr(args, "dimse_port", None),
            "ae_title": getattr(args, "ae_title", None),
        },
    }
    return load_settings(getattr(args, "config", None), overrides=overrides)


def version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("noctis-pacs")
    except PackageNotFoundError:
        return "unknown"


def _data_dir_source(args: argparse.Namespace) -> str:
    """Where the data directory setting came from, for messages."""
    import os

    if getattr(args, "data_dir", None):
        return "--data-dir"
    if getattr(args, "config", None):
        return f"--config {args.config}"
    if os.environ.get("NOCTIS_STORAGE_DATA_DIR"):
        return "NOCTIS_STORAGE_DATA_DIR"
    if os.environ.get("NOCTIS_CONFIG"):
        return f"NOCTIS_CONFIG={os.environ['NOCTIS_CONFIG']}"
    return f"the default, relative to the current folder {Path.cwd()}"


def missing_archive_message(args: argparse.Namespace, settings: Settings) -> str | None:
    """What to tell a user whose verb needs an archive that is not there, or ``None``."""
    from storage.archive import archive_missing

    reason = archive_missing(settings)
    if reason is None:
        return None
    data_dir = Path(settings.storage.data_dir).resolve()
    return (
        f"noctis-pacs {args.command}: no archive found: {reason} "
        f"(data directory {data_dir}, from {_data_dir_source(args)}). "
        "Point to an archive with --data-dir DIR (and --db URL when its index is elsewhere), "
        "--config FILE or the NOCTIS_CONFIG environment variable; "
        "create a new one with `noctis-pacs db migrate` or this verb's --create."
    )


def _open_archive(settings: Settings) -> Any:
    from storage.archive import Archive

    return Archive(settings)


def _iter_inputs(paths: Sequence[Path]) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(label, opener) for each file under ``paths``; zip members are opened lazily."""
    for path in paths:
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                yield from _iter_inputs([child])
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [i.filename for i in archive.infolist() if not i.is_dir()]
            for name in names:

                def opener(path: Path = path, name: str = name) -> Any:
                    return zipfile.ZipFile(path).open(name)

                yield f"{path}:{name}", opener
        elif path.is_file():
            yield str(path), partial(_same, path)
        else:
            yield str(path), partial(_same, FileNotFoundError(f"{path}: no such file"))


def _same(value: Any) -> Any:
    return value


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from storage.archive import Origin, Status

    archive = _open_archive(settings)
    inputs = list(_iter_inputs(args.paths))
    progress = Progress("import")
    counts: Counter[str] = Counter()
    rejected: list[tuple[str, str]] = []
    origin = Origin("import", host="cli")
    studies: dict[str, None] = {}

    def one(item: tuple[str, Callable[[], Any]]) -> tuple[str, Any]:
        label, opener = item
        source = opener()
        if isinstance(source, Exception):
            return label, source
        if isinstance(source, Path):
            return label, archive.store_path(source, origin)
        with source:
            return label, archive.store_stream(source, origin)

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for n, (label, outcome) in enumerate(pool.map(one, inputs), 1):
                if isinstance(outcome, Exception):
                    counts["rejected"] += 1
                    rejected.append((label, str(outcome)))
                else:
                    counts[outcome.status.value] += 1
                    if outcome.status is Status.STORED:
                        studies.setdefault(outcome.study_uid, None)
                    if outcome.status not in (Status.STORED, Status.ALREADY_STORED):
                        rejected.append((label, outcome.reason))
                progress(n, len(inputs), f"stored={counts['stored']} rejected={len(rejected)}")
        archive.audit(
            AuditEvent(
                action=AuditAction.IMPORT,
                outcome=AuditOutcome.PARTIAL if rejected else AuditOutcome.SUCCESS,
                principal=audit_cli.operator(),
                principal_kind="cli",
                study_uids=tuple(studies),
                detail=f"{counts['stored']} stored, {len(rejected)} rejected",
            )
        )
    finally:
        archive.close()
    print(
        f"stored {counts['stored']}, already stored {counts['already_stored']}, "
        f"rejected {len(rejected)} of {len(inputs)} file(s)"
    )
    reasons = Counter(reason for _, reason in rejected)
    for label, reason in rejected[:50]:
        print(f"  rejected {label}: {reason}")
    if len(rejected) > 50:
        print(f"  ... and {len(rejected) - 50} more; by reason:")
        for reason, count in reasons.most_common():
            print(f"    {count} x {reason}")
    return EXIT_FAILED if rejected else EXIT_OK


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    archive = _open_archive(settings)
    try:
        stats = archive.stats()
    finally:
        archive.close()
    if args.json:
        print(json.dumps(stats))
    else:
        for key, value in stats.items():
            print(f"{key:>10}: {value}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    archive = _open_archive(settings)
    try:
        report = archive.verify(Progress("verify"))
    finally:
        archive.close()
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"checked {report['checked']}: {len(report['missing'])} missing, "
            f"{len(report['corrupt'])} corrupt, {len(report['orphans'])} orphan blob(s) "
            f"`reindex` adopts, {len(report['unadoptable'])} it skips, "
            f"{len(report['strays'])} stray file(s)"
        )
        for uid in report["missing"][:20]:
            print(f"  missing blob for instance {uid}")
        for uid in report["corrupt"][:20]:
            print(f"  hash mismatch for instance {uid}")
        for key in report["orphans"][:20]:
            print(f"  orphan blob {key} (not in the index; `reindex` adopts it)")
        for item in report["unadoptable"][:20]:
            print(f"  orphan blob {item['blob']}: {item['reason']}; `reindex` skips it")
        for stray in report["strays"][:20]:
            print(f"  stray file blobs/{stray}: not a blob of this store; `reindex` skips it")
    return EXIT_OK if report["ok"] else EXIT_FAILED


def cmd_reindex(args: argparse.Namespace, settings: Settings) -> int:
    archive = _open_archive(settings)
    try:
        report = archive.reindex(Progress("reindex"))
    finally:
        archive.close()
    print(
        f"indexed {report['indexed']} of {report['blobs']} blob(s) ({report['added']} added, "
        f"{report['removed']} index entries without a blob removed); "
        f"{len(report['skipped'])} unreadable, {len(report['duplicates'])} duplicate(s)"
    )
    for item in report["skipped"][:20]:
        print(f"  skipped blob {item['blob']}: {item['reason']}")
    return EXIT_FAILED if report["skipped"] else EXIT_OK


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    if not (args.study or args.series or args.instance):
        print("delete: give --study, --series or --instance", file=sys.stderr)
        return EXIT_USAGE
    archive = _open_archive(settings)
    try:
        count = archive.delete(study_uid=args.study, series_uid=args.series, sop_uid=args.instance)
        archive.audit(
            AuditEvent(
                action=AuditAction.DELETE,
                outcome=AuditOutcome.SUCCESS if count else AuditOutcome.FAILURE,
                principal=audit_cli.operator(),
                principal_kind="cli",
                study_uids=(args.study,) if args.study else (),
                series_uids=(args.series,) if args.series else (),
                sop_uids=(args.instance,) if args.instance else (),
                detail=f"{count} instance(s) deleted",
            )
        )
    finally:
        archive.close()
    if count == 0:
        print("delete: nothing matched", file=sys.stderr)
        return EXIT_FAILED
    print(f"deleted {count} instance(s)")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from storage.blobstore import FileSystemBlobStore
    from storage.db import open_database
    from storage.schema import current_version, latest_version, migrate

    db = open_database(settings.db_url)
    FileSystemBlobStore(Path(settings.storage.data_dir))  # makes the blob store's folders
    try:
        before = current_version(db)
        applied = migrate(db)
        after = current_version(db)
    finally:
        db.close()
    if before is None:
        print(
            f"created a new archive: index {db.url_for_logs()} at version {after}, "
            f"blobs under {Path(settings.storage.data_dir).resolve()}"
        )
    elif applied:
        print(f"migrated the index from version {before} to {after} ({latest_version(db.dialect)})")
    else:
        print(f"the index is at version {after}, nothing to do")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import os

    from noctis_pacs.app.server import PortInUseError, serve

    config_file = args.config or os.environ.get("NOCTIS_CONFIG")
    try:
        serve(
            settings,
            http=not args.dimse_only,
            dimse=not args.http_only,
            config_file=str(Path(config_file).resolve()) if config_file else None,
        )
    except PortInUseError as exc:
        print(f"noctis-pacs serve: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": cmd_serve,
    "import": cmd_import,
    "stats": cmd_stats,
    "verify": cmd_verify,
    "reindex": cmd_reindex,
    "delete": cmd_delete,
    "db": cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except SettingsError as exc:
        print(f"noctis-pacs: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.logging.level, settings.logging.format)
    handler = getattr(args, "handler", None) or HANDLERS[args.command]
    try:
        if not getattr(args, "creates_archive", False) and not getattr(args, "create", False):
            message = missing_archive_message(args, settings)
            if message is not None:
                print(message, file=sys.stderr)
                return EXIT_FAILED
        return handler(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from storage.db import DatabaseError

        if isinstance(exc, DatabaseError | SettingsError):
            print(f"noctis-pacs: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
