"""The one rule for what the archive accepts as a UID, at ingest and on the read side.

PS3.5 9.1: a UID is dot-separated numeric components, at most 64 characters, no
leading zero in a component. Real files break the last two rules and are still
read by everyone, so the archive tolerates them (up to 128 characters); anything
else (a letter, a control character, an empty component) cannot be put in a
DICOMweb URL or matched, so ingest refuses it with this reason instead of
acknowledging an instance nobody could read back (issue 14), and the DICOMweb
resources answer 400 with the same words.
"""

from __future__ import annotations

import re

#: Digits and dots, no empty component (PS3.5 9.1; leading zeros tolerated).
_LENIENT_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
#: Twice PS3.5's 64 characters: what real files carry, not what the standard allows.
MAX_UID_LENGTH = 128


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a UID the archive can store and serve, or ``None``."""
    if not value:
        return "is empty"
    if len(value) > MAX_UID_LENGTH:
        return f"is longer than {MAX_UID_LENGTH} characters"
    if not _LENIENT_UID.fullmatch(value):
        return "is not a valid UID (PS3.5 9.1: digits and dots)"
    return None


def describe_uid_problem(what: str, value: str) -> str | None:
    """``uid_problem`` as a sentence naming ``what`` and the value (shortened, escaped)."""
    problem = uid_problem(value)
    return None if problem is None else f"{what} {value[:80]!r} {problem}"
