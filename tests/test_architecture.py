"""The dependency arrows of DESIGN.md, checked by walking imports with ast.

Four rules, no file lists:

1. ``noctis_pacs.core`` and ``noctis_pacs.rendering`` are pure: they import no
   package of the project but ``noctis_pacs.core``.
2. ``storage`` imports only ``noctis_pacs.core`` of the application, and no protocol.
3. ``dimse`` and ``dicomweb`` never import each other, and of the application
   only ``noctis_pacs.core``, ``noctis_pacs.rendering`` and ``storage.archive`` (the
   façade, which re-exports what the protocols handle).
4. Only ``noctis_pacs.app`` (the composition root) imports the protocols and storage
   together; nothing imports ``noctis_pacs.app``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"noctis_pacs", "storage", "dimse", "dicomweb"}


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports, as dotted names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PROJECT}


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _within(name: str, *prefixes: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_rule_1_core_and_rendering_are_pure() -> None:
    for package in ("noctis_pacs/core", "noctis_pacs/rendering"):
        for path in _files(package):
            for name in _imports(path):
                assert _within(name, "noctis_pacs.core", "noctis_pacs.rendering"), (path, name)
    for path in _files("noctis_pacs/core"):
        for name in _imports(path):
            assert _within(name, "noctis_pacs.core"), (path, name)


def test_rule_2_storage_imports_only_the_core() -> None:
    for path in _files("storage"):
        for name in _imports(path):
            assert _within(name, "storage", "noctis_pacs.core"), (path, name)


def test_rule_3_protocols_import_the_facade_core_and_rendering_only() -> None:
    allowed = {
        "dimse": ("dimse", "storage.archive", "noctis_pacs.core", "noctis_pacs.rendering"),
        "dicomweb": ("dicomweb", "storage.archive", "noctis_pacs.core", "noctis_pacs.rendering"),
    }
    for package, prefixes in allowed.items():
        for path in _files(package):
            for name in _imports(path):
                assert _within(name, *prefixes), (path, name)


def test_rule_4_only_the_app_sees_everything() -> None:
    for package in ("storage", "dimse", "dicomweb", "noctis_pacs/core", "noctis_pacs/rendering"):
        for path in _files(package):
            for name in _imports(path):
                assert not _within(name, "noctis_pacs.app"), (path, name)
    top = [p for p in (ROOT / "noctis_pacs").glob("*.py") if p.name != "__init__.py"]
    assert not top, f"noctis_pacs/ holds only core/, rendering/ and app/: {top}"


def test_no_sql_in_protocol_packages() -> None:
    """DIMSE and DICOMweb translate to archive calls; SQL lives in storage/ only."""
    statement = re.compile(
        r"\bSELECT\s+[\w*., ]+\s+FROM\s+\w+|\bINSERT\s+INTO\s+\w+|\bDELETE\s+FROM\s+\w+"
        r"|\bUPDATE\s+\w+\s+SET\b"
    )
    for package in ("dimse", "dicomweb"):
        for path in _files(package):
            assert not statement.search(path.read_text()), path
