"""Retention policies: which studies go, as pure rules over a list of candidates.

A policy applies to the studies of one facility and/or one modality (empty: all)
and deletes, oldest first:

- by age: studies older than ``max_age_days``, by their Study Date (a study
  without one counts by when it was received) or by when they were received;
- by quota: while the policy's studies hold more than ``quota_bytes``, the oldest
  (same basis) until they fit.

Protected studies are never selected (they still count toward a quota).  The
same function makes the dry run's list and the real run's, so the dry run is
exactly what a run would delete at that moment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

STUDY_DATE, RECEIVED = "study_date", "received"
BASES = (STUDY_DATE, RECEIVED)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FIELDS = frozenset(
    {"name", "max_age_days", "basis", "quota_bytes", "facility", "modality", "enabled"}
)


class PolicyError(ValueError):
    """A policy that cannot be saved; the message says why."""


@dataclass(frozen=True)
class Policy:
    name: str
    max_age_days: int = 0
    basis: str = STUDY_DATE
    quota_bytes: int = 0
    facility: str = ""
    modality: str = ""
    enabled: bool = True

    def public(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class Candidate:
    """A study as retention sees it."""

    study_uid: str
    study_date: str
    received_at: str
    size: int
    facility: str
    modalities: frozenset[str]
    protected: bool

    def age_key(self, basis: str) -> str:
        """Sortable ``YYYYMMDD...`` of the study by ``basis`` (oldest sorts first)."""
        received = self.received_at.replace("-", "")[:8]
        if basis == STUDY_DATE and len(self.study_date) == 8 and self.study_date.isdigit():
            return self.study_date
        return received


@dataclass(frozen=True)
class Selected:
    study_uid: str
    policy: str
    reason: str
    size: int


def _int(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{key} must be a whole number, 0 or more")
    return value


def parse_policy(raw: Mapping[str, Any]) -> Policy:
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise PolicyError(f"unknown field(s): {', '.join(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise PolicyError("name must be 1-64 letters, digits, '_', '.' or '-'")
    max_age_days, quota_bytes = _int(raw, "max_age_days"), _int(raw, "quota_bytes")
    if not max_age_days and not quota_bytes:
        raise PolicyError("give max_age_days, quota_bytes or both")
    basis = raw.get("basis", STUDY_DATE)
    if basis not in BASES:
        raise PolicyError(f"basis must be one of {', '.join(BASES)}")
    facility, modality = raw.get("facility", ""), raw.get("modality", "")
    if not isinstance(facility, str) or not isinstance(modality, str):
        raise PolicyError("facility and modality must be strings")
    if modality and not re.fullmatch(r"[A-Z0-9_ ]{1,16}", modality):
        raise PolicyError("modality must be a DICOM modality code (CS, e.g. CT)")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError("enabled must be true or false")
    return Policy(name, max_age_days, basis, quota_bytes, facility, modality, enabled)


def applies(policy: Policy, candidate: Candidate) -> bool:
    if policy.facility and candidate.facility != policy.facility:
        return False
    return not policy.modality or policy.modality in candidate.modalities


def select(
    policies: Iterable[Policy], candidates: Iterable[Candidate], now: datetime | None = None
) -> list[Selected]:
    """The studies the enabled ``policies`` delete, oldest first per policy; a study
    selected by one policy is not selected again (and leaves the next quotas)."""
    now = now or datetime.now(UTC)
    pool = list(candidates)
    chosen: dict[str, Selected] = {}
    for policy in policies:
        if not policy.enabled:
            continue
        scoped = sorted(
            (c for c in pool if applies(policy, c) and c.study_uid not in chosen),
            key=lambda c: (c.age_key(policy.basis), c.study_uid),
        )
        if policy.max_age_days:
            cutoff = (now - timedelta(days=policy.max_age_days)).strftime("%Y%m%d")
            for c in scoped:
                if not c.protected and c.age_key(policy.basis) < cutoff:
                    reason = f"older than {policy.max_age_days} days ({policy.basis})"
                    chosen[c.study_uid] = Selected(c.study_uid, policy.name, reason, c.size)
        if policy.quota_bytes:
            used = sum(c.size for c in scoped if c.study_uid not in chosen)
            for c in scoped:
                if used <= policy.quota_bytes:
                    break
                if c.protected or c.study_uid in chosen:
                    continue
                reason = f"over the quota of {policy.quota_bytes} bytes (oldest first)"
                chosen[c.study_uid] = Selected(c.study_uid, policy.name, reason, c.size)
                used -= c.size
    return list(chosen.values())
