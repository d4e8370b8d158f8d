"""docs/security.md prints the one role table; this keeps the two equal."""

from __future__ import annotations

from pathlib import Path

from noctis_pacs.core.auth import role_table_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def test_security_doc_prints_the_role_table() -> None:
    text = DOC.read_text()
    start = text.index("<!-- role-table -->") + len("<!-- role-table -->")
    end = text.index("<!-- /role-table -->")
    assert text[start:end].strip() == role_table_markdown()
