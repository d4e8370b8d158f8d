"""Named queries kept in ``storage/sql/*.sql`` files (``-- name: NAME`` blocks, ``:param``
placeholders), loaded once per file."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources


@cache
def named_queries(filename: str) -> dict[str, str]:
    text = (resources.files("storage") / "sql" / filename).read_text("utf-8")
    out: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        out[name.strip()] = body.strip().rstrip(";")
    return out
