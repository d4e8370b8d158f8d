"""Routing rules: pure rules of what a rule is and how it matches.

A rule fires on an event (``received``: each instance as it is stored;
``stable``: a study once it is stable, ``workflow.stable_after_seconds``) for the
instances its matches select, and sends them to one or more destinations (remote
names).  Matches are DICOM matching values (PS3.4 C.2.2.2: single value,
wildcard, range, UID list) on any key the query engine matches at instance
level, plus ``CallingAETitle`` (the AE that stored the instance, wildcards
allowed; received rules only).  Whether each key is one the engine matches and
whether each destination exists is checked when the rule is saved, by the
archive (``Archive.save_route_rule``), so a rule never fails when it fires.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from noctis_pacs.core.model import Match, MatchKind, build_match, resolve_keyword

RECEIVED, STABLE = "received", "stable"
EVENTS = (RECEIVED, STABLE)
#: Not a DICOM attribute: the calling AE title of the association that stored it.
CALLING_AE = "CallingAETitle"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELDS = frozenset({"name", "on", "matches", "destinations", "max_attempts", "enabled"})
DEFAULT_MAX_ATTEMPTS = 10


class RuleError(ValueError):
    """A rule that cannot be saved; the message says why."""


@dataclass(frozen=True)
class Rule:
    name: str
    on: str
    matches: tuple[tuple[str, str], ...]
    destinations: tuple[str, ...]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    enabled: bool = True

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "on": self.on,
            "matches": dict(self.matches),
            "destinations": list(self.destinations),
            "max_attempts": self.max_attempts,
            "enabled": self.enabled,
        }

    def query_matches(self) -> tuple[Match, ...]:
        """The matches the query engine applies (every key but ``CallingAETitle``)."""
        return tuple(
            build_match(keyword, value)
            for keyword, value in self.matches
            if keyword != CALLING_AE and value != ""
        )

    def admits_caller(self, calling_ae: str) -> bool:
        """Whether an instance stored by ``calling_ae`` passes the rule's
        ``CallingAETitle`` match (``*`` and ``?`` wildcards, case-sensitive as AE titles
        are); a rule without one admits every caller."""
        pattern = dict(self.matches).get(CALLING_AE)
        if not pattern:
            return True
        return any(fnmatch.fnmatchcase(calling_ae.strip(), p.strip()) for p in pattern.split("\\"))


def parse_rule(raw: Mapping[str, Any]) -> Rule:
    """A rule from JSON; raises ``RuleError`` with the reason (shape only: the archive
    checks keys against the query engine and destinations against the remotes)."""
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise RuleError(f"unknown field(s): {', '.join(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError("name must be 1-64 letters, digits, '_', '.' or '-'")
    on = raw.get("on", RECEIVED)
    if on not in EVENTS:
        raise RuleError(f"on must be one of {', '.join(EVENTS)}")
    matches = raw.get("matches", {})
    if not isinstance(matches, Mapping):
        raise RuleError("matches must be an object of attribute keyword -> matching value")
    parsed: list[tuple[str, str]] = []
    for key, value in matches.items():
        if not isinstance(value, str):
            raise RuleError(f"matches.{key}: the matching value must be a string")
        if key == CALLING_AE:
            if on == STABLE:
                raise RuleError(f"{CALLING_AE} applies to received rules only")
            parsed.append((CALLING_AE, value))
            continue
        try:
            keyword = resolve_keyword(str(key))
        except ValueError as exc:
            raise RuleError(f"matches: {exc}") from None
        try:
            match = build_match(keyword, value)
        except ValueError as exc:
            raise RuleError(f"matches.{keyword}: {exc}") from None
        if match.kind is MatchKind.SEQUENCE:
            raise RuleError(f"matches.{keyword}: sequence matching is not offered in rules")
        parsed.append((keyword, value))
    destinations = raw.get("destinations")
    if (
        not isinstance(destinations, list)
        or not destinations
        or not all(isinstance(d, str) and d for d in destinations)
    ):
        raise RuleError("destinations must be a non-empty list of remote names")
    max_attempts = raw.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise RuleError("max_attempts must be an integer from 1 to 1000")
    if not 1 <= max_attempts <= 1000:
        raise RuleError("max_attempts must be an integer from 1 to 1000")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("enabled must be true or false")
    return Rule(
        name=name,
        on=on,
        matches=tuple(sorted(parsed)),
        destinations=tuple(dict.fromkeys(destinations)),
        max_attempts=max_attempts,
        enabled=enabled,
    )


def retry_delay(initial: float, maximum: float, attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (exponential)."""
    return float(min(initial * 2 ** max(attempts - 1, 0), maximum))
