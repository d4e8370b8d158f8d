"""A study's facility, decided once at ingest (issue 13 point 4).

``[access] facility_from = "attribute"`` takes it from ``facility_attribute``
(default InstitutionName) of the first instance of the study; ``"principal"``
from the storing principal when it has exactly one facility (the attribute
otherwise).  An empty value gives ``DEFAULT_FACILITY``.  A study keeps the
facility its first instance gave it: a later instance never moves it.
"""

from __future__ import annotations

from collections.abc import Collection

from noctis_pacs.core.auth import DEFAULT_FACILITY

FROM_ATTRIBUTE = "attribute"
FROM_PRINCIPAL = "principal"


def facility_of_value(value: str) -> str:
    """The facility an attribute value names: its first value, trimmed, or ``default``."""
    first = value.split("\\", 1)[0].strip()
    return first or DEFAULT_FACILITY


def storing_facility(
    attribute_value: str, *, principal_facilities: Collection[str], facility_from: str
) -> str:
    """The facility of a study created by this store."""
    if facility_from == FROM_PRINCIPAL and len(principal_facilities) == 1:
        return facility_of_value(next(iter(principal_facilities)))
    return facility_of_value(attribute_value)
