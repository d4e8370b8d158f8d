"""Who may do what: permissions, the fixed roles, and the principal of a request.

Pure rules shared by both protocols and the query engine (DESIGN.md: auth
decisions are pure rules in ``core/``; enforcement sits at each protocol's edge
and in the query engine).  ``ROLE_PERMISSIONS`` is the one table that says which
role may do what; ``docs/security.md`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Permission(StrEnum):
    """What a request or a DIMSE service needs."""

    STORE = "store"
    QUERY = "query"
    RETRIEVE = "retrieve"
    #: The worklist / study-tracking REST API, MPPS and the event stream.
    WORKFLOW = "workflow"
    DELETE = "delete"
    #: Tokens, audit trail, remote AEs, jobs, routing, retention: the admin API.
    ADMIN = "admin"


class Role(StrEnum):
    VIEWER = "viewer"
    UPLOADER = "uploader"
    TECHNOLOGIST = "technologist"
    RADIOLOGIST = "radiologist"
    ADMIN = "admin"


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)

#: The one table: which role may do what.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.QUERY, Permission.RETRIEVE}),
    Role.UPLOADER: frozenset({Permission.STORE}),
    Role.TECHNOLOGIST: frozenset(
        {Permission.STORE, Permission.QUERY, Permission.RETRIEVE, Permission.WORKFLOW}
    ),
    Role.RADIOLOGIST: frozenset({Permission.QUERY, Permission.RETRIEVE, Permission.WORKFLOW}),
    Role.ADMIN: ALL_PERMISSIONS,
}

#: The facility of a study whose facility attribute is empty.
DEFAULT_FACILITY = "default"


class UnknownRoleError(ValueError):
    """A role name that is not one of ``Role``."""


def parse_role(name: str) -> Role:
    try:
        return Role(name.strip().lower())
    except ValueError:
        known = ", ".join(role.value for role in Role)
        raise UnknownRoleError(f"unknown role {name!r}: one of {known}") from None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API token, an OIDC subject, a DIMSE peer or anonymous.

    ``facilities`` empty means every facility (admins, unscoped principals).
    """

    name: str
    permissions: frozenset[Permission]
    facilities: frozenset[str] = frozenset()
    #: ``token``, ``oidc``, ``ae`` or ``anonymous``: how the caller was recognised.
    kind: str = "anonymous"
    role: Role | None = None

    @classmethod
    def with_role(
        cls,
        name: str,
        role: Role,
        *,
        facilities: Iterable[str] = (),
        kind: str,
    ) -> Principal:
        scoped = frozenset() if role is Role.ADMIN else frozenset(facilities)
        return cls(name, ROLE_PERMISSIONS[role], scoped, kind, role)

    def may(self, permission: Permission | str) -> bool:
        return permission in self.permissions

    @property
    def scoped(self) -> bool:
        """True when this principal sees only the studies of ``facilities``."""
        return bool(self.facilities)

    def sees(self, facility: str | None) -> bool:
        """Whether a study of ``facility`` is visible to this principal."""
        if not self.facilities:
            return True
        return (facility or DEFAULT_FACILITY) in self.facilities


#: Full access, no facility scope: ``auth.mode = "none"`` and internal callers.
ANONYMOUS = Principal("anonymous", ALL_PERMISSIONS)


def role_table_markdown() -> str:
    """``ROLE_PERMISSIONS`` as the Markdown table ``docs/security.md`` prints (a test keeps
    the two equal)."""
    header = "| role | " + " | ".join(p.value for p in Permission) + " |"
    rule = "| --- | " + " | ".join(":-:" for _ in Permission) + " |"
    rows = [
        f"| {role.value} | "
        + " | ".join("yes" if p in ROLE_PERMISSIONS[role] else "-" for p in Permission)
        + " |"
        for role in Role
    ]
    return "\n".join([header, rule, *rows])
