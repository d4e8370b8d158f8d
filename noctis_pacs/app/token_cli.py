"""``noctis-pacs token create | list | revoke``: API tokens for HTTP clients.

Works on the index directly, also while the server runs: a new token is
usable at once, a revoked one is refused within ``auth.token_cache_seconds``.
``create`` prints the secret alone on the last line of stdout, once; it is
never stored (only its SHA-256 digest) and never printed again.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from noctis_pacs.app.cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, common_options
from noctis_pacs.core.audit import AuditAction, AuditOutcome
from noctis_pacs.core.auth import UnknownRoleError, parse_role
from noctis_pacs.core.settings import Settings
from noctis_pacs.core.tokens import ApiToken, TokenNameError, iso


def _archive(settings: Settings) -> Any:
    from storage.archive import Archive

    return Archive(settings)


def _audit(archive: Any, action: str, outcome: str, detail: str) -> None:
    """Token creation and revocation are security events (audit trail, PS3.15 A.5)."""
    import getpass

    from noctis_pacs.core.audit import AuditEvent

    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    archive.audit(
        AuditEvent(
            action=action, outcome=outcome, principal=user, principal_kind="cli", detail=detail
        )
    )


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    from storage.archive import TokenExistsError

    try:
        role = parse_role(args.role)
        if args.expires_days is not None and args.expires_days <= 0:
            raise ValueError("--expires-days: must be positive")
        token, secret = ApiToken.issue(
            args.name,
            role,
            facilities=tuple(args.facility or ()),
            expires_days=args.expires_days,
        )
    except (UnknownRoleError, TokenNameError, ValueError) as exc:
        print(f"token create: {exc}", file=sys.stderr)
        return EXIT_USAGE
    scope = ", ".join(token.facilities) or "all facilities"
    expiry = iso(token.expires_at) or "never"
    detail = f"token {token.name}: role {role.value}, {scope}, expires {expiry}"
    archive = _archive(settings)
    try:
        archive.tokens.create(token)
        _audit(archive, AuditAction.TOKEN_CREATE, AuditOutcome.SUCCESS, detail)
    except TokenExistsError as exc:
        _audit(archive, AuditAction.TOKEN_CREATE, AuditOutcome.FAILURE, str(exc))
        print(f"token create: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        archive.close()
    print(f"token {token.name}: role {role.value}, {scope}, expires {expiry}")
    print("the secret below is shown once; store it now:")
    print(secret)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        tokens = archive.tokens.list()
    finally:
        archive.close()
    for token in tokens:
        row = {
            "name": token.name,
            "role": token.role.value,
            "facilities": list(token.facilities),
            "state": token.state(),
            "created_at": iso(token.created_at),
            "expires_at": iso(token.expires_at),
            "revoked_at": iso(token.revoked_at),
        }
        if args.json:
            print(json.dumps(row))
        else:
            print(
                f"{token.name:<24} {token.role.value:<13} {token.state():<8} "
                f"facilities={','.join(token.facilities) or '*'} "
                f"expires={row['expires_at'] or 'never'}"
            )
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    archive = _archive(settings)
    try:
        revoked = archive.tokens.revoke(args.name)
        outcome = AuditOutcome.SUCCESS if revoked else AuditOutcome.FAILURE
        _audit(archive, AuditAction.TOKEN_REVOKE, outcome, f"token {args.name}")
    finally:
        archive.close()
    if not revoked:
        print(f"token revoke: no active token named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"token {args.name} revoked")
    return EXIT_OK


def register(subparsers: Any) -> None:
    token = subparsers.add_parser("token", help="manage API tokens (HTTP authentication)")
    verbs = token.add_subparsers(dest="token_command", required=True)

    create = verbs.add_parser("create", help="create a token; prints its secret once")
    common_options(create)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--role", required=True, help="viewer, uploader, technologist, radiologist or admin"
    )
    create.add_argument(
        "--facility", action="append", help="limit to this facility (repeat for several)"
    )
    create.add_argument("--expires-days", type=float, help="expire after N days (default never)")
    create.set_defaults(handler=cmd_create)

    listing = verbs.add_parser("list", help="list tokens (never their secrets)")
    common_options(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=cmd_list)

    revoke = verbs.add_parser("revoke", help="revoke a token")
    common_options(revoke)
    revoke.add_argument("name")
    revoke.set_defaults(handler=cmd_revoke)
