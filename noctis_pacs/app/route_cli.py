"""``noctis-pacs route``: routing rules and the dead letters of their queue, from the
server's machine, while the server runs.

``route list|add|remove`` manage the rules (``add`` refuses a rule with its reason
when it is saved, exactly as ``POST /api/routing/rules``: unknown attribute, unknown
destination, malformed value); ``route queue`` shows the queue's depth and age;
``route dead list|retry|drop`` handle the items that ran out of attempts. Every act is
recorded in the audit trail like the REST API's (principal ``cli``, the OS user as
the client).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from noctis_pacs.app.admin_cli import _archive, _record
from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.settings import Settings


def register(sub: Any) -> None:
    route = sub.add_parser("route", help="routing rules, the queue and its dead letters")
    route_sub = route.add_subparsers(dest="route_command", required=True)

    listing = route_sub.add_parser("list", help="list the routing rules")
    common_options(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_route_list)

    add = route_sub.add_parser("add", help="add a rule (refused with its reason when invalid)")
    common_options(add)
    add.add_argument("name")
    add.add_argument(
        "--destination",
        action="append",
        required=True,
        help="a remote's name (repeatable: one queue item per destination)",
    )
    add.add_argument("--on", default="received", help="received (default) or stable")
    add.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="attribute keyword (or tag) = DICOM matching value, e.g. Modality=CT, "
        "CallingAETitle=CT*, StudyDescription=*head* (repeatable)",
    )
    add.add_argument("--max-attempts", type=int, default=None)
    add.add_argument("--disabled", action="store_true", help="save the rule switched off")
    add.set_defaults(handler=cmd_route_add)

    remove = route_sub.add_parser("remove", help="remove a rule (queued items stay)")
    common_options(remove)
    remove.add_argument("name")
    remove.set_defaults(handler=cmd_route_remove)

    queue = route_sub.add_parser("queue", help="queue depth, oldest item's age, dead letters")
    common_options(queue)
    queue.add_argument("--json", action="store_true")
    queue.set_defaults(handler=cmd_route_queue)

    dead = route_sub.add_parser("dead", help="dead letters: list, retry or drop")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True)
    dead_list = dead_sub.add_parser("list", help="list dead letters with their last error")
    common_options(dead_list)
    dead_list.add_argument("--json", action="store_true")
    dead_list.add_argument("--limit", type=int, default=100)
    dead_list.add_argument("--offset", type=int, default=0)
    dead_list.set_defaults(handler=cmd_dead_list)
    for verb, text in (("retry", "queue them again"), ("drop", "delete them")):
        parser = dead_sub.add_parser(verb, help=f"{text}: the ids given, or --all")
        common_options(parser)
        parser.add_argument("ids", nargs="*", type=int)
        parser.add_argument("--all", action="store_true")
        parser.set_defaults(handler=cmd_dead_change, verb=verb)


def rule_request(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON body ``POST /api/routing/rules`` would take for these options; raises
    ``ValueError`` for a ``--match`` without ``=``."""
    matches: dict[str, str] = {}
    for item in args.match:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--match {item!r}: give KEY=VALUE")
        matches[key.strip()] = value
    raw: dict[str, Any] = {
        "name": args.name,
        "on": args.on,
        "matches": matches,
        "destinations": list(args.destination),
        "enabled": not args.disabled,
    }
    if args.max_attempts is not None:
        raw["max_attempts"] = args.max_attempts
    return raw


def cmd_route_list(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        rules = [rule.public() for rule in archive.routing.rules()]
    finally:
        archive.close()
    if args.json:
        print(json.dumps(rules))
        return EXIT_OK
    for rule in rules:
        matches = " ".join(f"{k}={v}" for k, v in rule["matches"].items()) or "(everything)"
        state = "" if rule["enabled"] else " [disabled]"
        print(
            f"{rule['name']:<20} on {rule['on']:<8} {matches} -> "
            f"{','.join(rule['destinations'])} (max {rule['max_attempts']} attempts){state}"
        )
    return EXIT_OK


def cmd_route_add(args: argparse.Namespace, settings: Settings) -> int:
    from noctis_pacs.core.routing import RuleError, parse_rule

    archive = _archive(settings)
    try:
        try:
            rule = parse_rule(rule_request(args))
            archive.check_route_rule(rule)
        except (RuleError, ValueError) as exc:
            _record(archive, "route.add", "refused", name=args.name, reason=str(exc))
            print(f"route add: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if not archive.routing.add_rule(rule):
            _record(archive, "route.add", "refused", name=rule.name, reason="exists")
            print(f"route add: a rule named {rule.name!r} exists already", file=sys.stderr)
            return EXIT_FAILED
        _record(archive, "route.add", "success", name=rule.name)
    finally:
        archive.close()
    print(f"added rule {rule.name}")
    return EXIT_OK


def cmd_route_remove(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        removed = archive.routing.remove_rule(args.name)
        _record(archive, "route.remove", "success" if removed else "not found", name=args.name)
    finally:
        archive.close()
    if not removed:
        print(f"route remove: no rule named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed rule {args.name}")
    return EXIT_OK


def cmd_route_queue(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        summary = archive.routing.summary()
    finally:
        archive.close()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return EXIT_OK


def cmd_dead_list(args: argparse.Namespace, settings: Settings) -> int:
    if not 0 < args.limit <= 1000 or args.offset < 0:
        print("route dead list: --limit 1-1000, --offset at least 0", file=sys.stderr)
        return EXIT_USAGE
    archive = _archive(settings)
    try:
        dead = archive.routing.dead_letters(args.limit, args.offset)
    finally:
        archive.close()
    if args.json:
        print(json.dumps(dead))
        return EXIT_OK
    for item in dead:
        print(
            f"{item['id']:>8} {item.get('rule', '')} -> {item.get('destination', '')} "
            f"attempts {item.get('attempts', '')}: {item.get('error', '')}"
        )
    return EXIT_OK


def cmd_dead_change(args: argparse.Namespace, settings: Settings) -> int:
    verb = args.verb
    if bool(args.ids) == bool(args.all):
        print(f"route dead {verb}: give dead letter ids or --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    archive = _archive(settings)
    try:
        change = archive.routing.retry_dead if verb == "retry" else archive.routing.drop_dead
        changed = change(None if args.all else list(args.ids))
        _record(archive, f"route.dead.{verb}", "success", items=changed)
    finally:
        archive.close()
    print(f"{'retried' if verb == 'retry' else 'dropped'} {changed} dead letter(s)")
    return EXIT_OK
