"""Small builders for DICOM JSON (PS3.18 Annex F) response datasets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JsonDataset = dict[str, Any]


def element(vr: str, values: Sequence[Any] | None) -> dict[str, Any]:
    """One attribute; empty or missing values give an attribute without ``Value`` (F.2.5)."""
    out: dict[str, Any] = {"vr": vr}
    if not values:
        return out
    if vr == "PN":
        out["Value"] = [_person_name(str(v)) if v not in (None, "") else None for v in values]
    elif vr in ("IS", "US", "UL", "SS", "SL", "DS", "FL", "FD"):
        out["Value"] = [_number(v, vr) for v in values]
    elif vr == "SQ":
        out["Value"] = list(values)
    else:
        out["Value"] = [str(v) if v not in (None, "") else None for v in values]
    return out


def _person_name(value: str) -> dict[str, str]:
    """PN as PS3.18 F.2.2: the Alphabetic, Ideographic and Phonetic groups (``=``-separated)."""
    groups = value.split("=")
    out = {"Alphabetic": groups[0]}
    if len(groups) > 1 and groups[1]:
        out["Ideographic"] = groups[1]
    if len(groups) > 2 and groups[2]:
        out["Phonetic"] = groups[2]
    return out


def _number(value: Any, vr: str) -> int | float | None:
    if value in (None, ""):
        return None
    if vr in ("DS", "FL", "FD"):
        return float(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return float(value)


def single(vr: str, value: Any) -> dict[str, Any]:
    if isinstance(value, list | tuple):
        return element(vr, value)
    return element(vr, [] if value in (None, "") else [value])
