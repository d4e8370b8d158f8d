"""``noctis-pacs worklist add | import | list | show | cancel | status``.

Works on the index directly (the server may be running: the index is
shared).  ``import`` reads DICOM worklist files (``.wl``, as served by
dcmtk's wlmscpfs and Orthanc's worklist plugin); a folder is read
recursively.  Exit status 0 on success, 1 when anything was refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.settings import Settings


def _stores(settings: Settings) -> tuple[Any, Any, Any]:
    from storage.archive import Archive

    archive = Archive(settings)
    return archive, archive.worklist, archive.tracker


def _item_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    step = {
        "step_id": args.step_id,
        "modality": args.modality,
        "station_ae_title": args.station_ae_title,
        "station_name": args.station_name,
        "start_date": args.start_date,
        "start_time": args.start_time,
        "performing_physician_name": args.performing_physician,
        "description": args.step_description,
    }
    item = {
        "patient_name": args.patient_name,
        "patient_id": args.patient_id,
        "patient_birth_date": args.birth_date,
        "patient_sex": args.sex,
        "accession_number": args.accession,
        "referring_physician_name": args.referring_physician,
        "requested_procedure_id": args.requested_procedure_id,
        "requested_procedure_description": args.description,
        "study_instance_uid": args.study_uid,
        "steps": [{k: v for k, v in step.items() if v is not None}],
    }
    return {k: v for k, v in item.items() if v is not None}


def _summary(item: dict[str, Any]) -> str:
    steps = ", ".join(
        f"{s['step_id']} {s['modality']} {s['start_date']} {s['start_time']} {s['status']}".strip()
        for s in item["steps"]
    )
    return (
        f"{item['id']}  {item['status']:<12} acc={item['accession_number'] or '-'} "
        f"study={item['study_instance_uid']}  steps: {steps}"
    )


def _print_problems(label: str, exc: Exception) -> None:
    problems = getattr(exc, "problems", None) or [str(exc)]
    print(f"{label}: refused:", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.core.workflow.items import WorklistValidationError

    if args.json_file:
        try:
            text = sys.stdin.read() if args.json_file == "-" else Path(args.json_file).read_text()
            data = json.loads(text)
        except (OSError, json.JSONDecodeError) as exc:
            print(f"worklist add: cannot read {args.json_file}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        data = _item_from_flags(args)
    archive, store, _ = _stores(settings)
    try:
        stored = store.create(data)
    except WorklistValidationError as exc:
        _print_problems("worklist add", exc)
        return EXIT_FAILED
    finally:
        archive.close()
    print(json.dumps(stored.as_json(), indent=2) if args.json else stored.item_uid)
    return EXIT_OK


def _worklist_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".wl")
            )
        else:
            out.append(path)
    return out


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from pydicom import dcmread

    from noctis_pacs.core.workflow.items import WorklistValidationError, item_from_dataset

    files = _worklist_files(args.paths)
    archive, store, _ = _stores(settings)
    imported, refused = 0, 0
    try:
        for path in files:
            try:
                ds = dcmread(path, force=True)
                data = item_from_dataset(ds)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is reported
                refused += 1
                print(f"{path}: refused: not a DICOM worklist file ({exc})", file=sys.stderr)
                continue
            try:
                stored = store.create(data)
            except WorklistValidationError as exc:
                refused += 1
                _print_problems(str(path), exc)
                continue
            imported += 1
            print(f"{path}: {stored.item_uid}")
    finally:
        archive.close()
    print(f"imported {imported}, refused {refused} of {len(files)} file(s)")
    return EXIT_FAILED if refused or not files else EXIT_OK


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.core.workflow.mwl import list_query

    params = {
        name: value
        for name in (
            "patient_name",
            "patient_id",
            "accession_number",
            "modality",
            "station_ae_title",
            "start_date",
            "status",
        )
        if (value := getattr(args, name)) is not None
    }
    params["limit"] = str(args.limit)
    try:
        query, statuses = list_query(params, max_results=settings.query.max_results)
    except ValueError as exc:
        print(f"worklist list: {exc}", file=sys.stderr)
        return EXIT_USAGE
    archive, store, _ = _stores(settings)
    try:
        items = [s.as_json() for s in store.list(query, item_statuses=statuses)]
    finally:
        archive.close()
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        for item in items:
            print(_summary(item))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from storage.worklist import ItemNotFound

    archive, store, tracker = _stores(settings)
    try:
        stored = store.get(args.item)
        out = stored.as_json()
        out["studies"] = tracker.for_item(stored.pk)
    except ItemNotFound as exc:
        print(f"worklist show: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        archive.close()
    print(json.dumps(out, indent=2))
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from storage.worklist import ItemNotFound, WorkflowConflict

    archive, store, _ = _stores(settings)
    try:
        stored = store.cancel(args.item)
    except (ItemNotFound, WorkflowConflict) as exc:
        print(f"worklist cancel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        archive.close()
    print(f"{stored.item_uid}: {stored.status}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    archive, _, tracker = _stores(settings)
    try:
        if args.study:
            found = tracker.status(args.study)
            if found is None:
                print("worklist status: study neither received nor scheduled", file=sys.stderr)
                return EXIT_FAILED
            rows = [found]
        else:
            rows = tracker.recent(args.limit)
    finally:
        archive.close()
    if args.json:
        print(json.dumps(rows if not args.study else rows[0], indent=2))
    else:
        for row in rows:
            print(
                f"{row['study_instance_uid']}  {row['phase']:<11} "
                f"instances={row['instances']} item={row['item_id'] or '-'}"
            )
    return EXIT_OK


def register(subparsers: Any) -> None:
    worklist = subparsers.add_parser("worklist", help="manage the modality worklist")
    verbs = worklist.add_subparsers(dest="worklist_command", required=True)

    add = verbs.add_parser("add", help="schedule a procedure (flags, or --json-file)")
    common_options(add)
    add.add_argument("--json-file", help="the item as JSON (docs/workflow.md); - for stdin")
    for flag in (
        "--patient-name",
        "--patient-id",
        "--birth-date",
        "--sex",
        "--accession",
        "--referring-physician",
        "--requested-procedure-id",
        "--description",
        "--study-uid",
        "--step-id",
        "--modality",
        "--station-name",
        "--start-date",
        "--start-time",
        "--performing-physician",
        "--step-description",
    ):
        add.add_argument(flag)
    add.add_argument("--station-ae-title", action="append", help="repeat for several")
    add.add_argument("--json", action="store_true", help="print the stored item as JSON")
    add.set_defaults(handler=cmd_add)

    imp = verbs.add_parser("import", help="import DICOM worklist files (.wl) or folders of them")
    common_options(imp)
    imp.add_argument("paths", nargs="+", type=Path)
    imp.set_defaults(handler=cmd_import)

    lst = verbs.add_parser("list", help="list items (filters as in GET /workflow/worklist)")
    common_options(lst)
    lst.add_argument("--patient-name")
    lst.add_argument("--patient-id")
    lst.add_argument("--accession-number")
    lst.add_argument("--modality")
    lst.add_argument("--station-ae-title")
    lst.add_argument("--start-date", help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    lst.add_argument("--status", help="item status(es), comma separated")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_list)

    show = verbs.add_parser("show", help="one item as JSON, with its studies")
    common_options(show)
    show.add_argument("item", help="item id")
    show.set_defaults(handler=cmd_show)

    cancel = verbs.add_parser("cancel", help="discontinue every step not yet final")
    common_options(cancel)
    cancel.add_argument("item", help="item id")
    cancel.set_defaults(handler=cmd_cancel)

    status = verbs.add_parser("status", help="study status: scheduled ... stable / completed")
    common_options(status)
    status.add_argument("--study", help="one Study Instance UID")
    status.add_argument("--limit", type=int, default=50)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
