"""The dependency arrows of DESIGN.md, checked by walking imports with ast."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The wiring: the only modules allowed to import everything.
WIRING = {"noctis_pacs/server.py", "noctis_pacs/cli.py"}
#: Wiring too: CLI plug-ins, and the workflow worker that ``serve`` starts beside the protocols.
WIRING_PREFIXES = ("noctis_pacs/worklist_cli", "noctis_pacs/render_cli", "noctis_pacs/events")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_protocols_never_import_each_other() -> None:
    for path in _files("dimse"):
        assert "dicomweb" not in _imports(path), path
    for path in _files("dicomweb"):
        assert "dimse" not in _imports(path), path


#: The pure modules of noctis_pacs (no I/O of their own) that storage and the protocols use.
PURE = (
    "noctis_pacs.model",
    "noctis_pacs.settings",
    "noctis_pacs.metrics",
    "noctis_pacs.logs",
    "noctis_pacs.runtime",
    "noctis_pacs.workflow",
    "noctis_pacs.rendering",
)


def _full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module)
    return names


def test_storage_imports_no_protocol() -> None:
    for path in _files("storage"):
        imports = _imports(path)
        assert not imports & {"dimse", "dicomweb"}, path


def test_storage_and_protocols_use_only_pure_application_modules() -> None:
    """storage, dimse and dicomweb may import noctis_pacs' pure modules, never the wiring."""
    for package in ("storage", "dimse", "dicomweb"):
        for path in _files(package):
            for name in _full_imports(path):
                if name.split(".")[0] == "noctis_pacs":
                    assert name.startswith(PURE), (path, name)


def test_only_the_wiring_imports_protocols_and_storage() -> None:
    for path in _files("noctis_pacs"):
        rel = str(path.relative_to(ROOT))
        if rel in WIRING or rel.startswith(WIRING_PREFIXES):
            continue
        imports = _imports(path)
        assert not imports & {"dimse", "dicomweb", "storage"}, rel


def test_no_sql_in_protocol_packages() -> None:
    """DIMSE and DICOMweb translate to archive calls; SQL lives in storage/ only."""
    statement = re.compile(
        r"\bSELECT\s+[\w*., ]+\s+FROM\s+\w+|\bINSERT\s+INTO\s+\w+|\bDELETE\s+FROM\s+\w+"
        r"|\bUPDATE\s+\w+\s+SET\b"
    )
    for package in ("dimse", "dicomweb"):
        for path in _files(package):
            assert not statement.search(path.read_text()), path
