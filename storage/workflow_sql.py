"""Loader of ``storage/sql/worklist.sql``: the workflow tables' named queries."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources


@cache
def workflow_queries() -> dict[str, str]:
    text = (resources.files("storage") / "sql" / "worklist.sql").read_text("utf-8")
    out: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        out[name.strip()] = body.strip().rstrip(";")
    return out


def W(name: str) -> str:  # noqa: N802 - reads like a SQL lookup
    return workflow_queries()[name]
