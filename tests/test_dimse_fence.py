"""The fence around pynetdicom's internals (issue 12), checked by walking the code with ast.

1. Outside ``dimse/fastpath/``, no module of ``dimse/`` imports pynetdicom's internal
   modules (association, dul, dimse, dimse_messages, service_class, transport) or an
   underscore name of pynetdicom, nor reads an underscore attribute of anything but
   ``self`` (the DICOM services use pynetdicom's public API only).
2. Inside ``dimse/fastpath/``, every underscore name taken from pynetdicom (an attribute
   of an object that is not ``self``, an imported name, a ``getattr`` string) is listed,
   with why, in ``dimse/fastpath/privates.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from dimse.fastpath.privates import PRIVATES, VALIDATED_VERSION, names

ROOT = Path(__file__).resolve().parent.parent
FASTPATH = ROOT / "dimse" / "fastpath"
INTERNAL_MODULES = {"association", "dul", "dimse", "dimse_messages", "service_class", "transport"}
#: pydicom's (not pynetdicom's) private names the services use, with why.
PYDICOM_PRIVATES = {
    "_character_set": "a response identifier marked as encoded in its character set",
}


#: pynetdicom classes of its public API that live in an internal module (its API
#: reference documents them there; pynetdicom/__init__ imports them without
#: re-exporting), taken for type annotations only.
PUBLIC_CLASSES = {("pynetdicom.association", "Association")}


#: Python's own public names that begin with an underscore (NamedTuple's API).
PUBLIC_UNDERSCORE = {"_fields", "_asdict", "_replace", "_make"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_UNDERSCORE


def _services() -> list[Path]:
    return [p for p in sorted((ROOT / "dimse").rglob("*.py")) if FASTPATH not in p.parents]


def _pynetdicom_imports(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) of every import from pynetdicom."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (alias.name, "") for alias in node.names if alias.name.startswith("pynetdicom")
            ]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pynetdicom"):
            found += [(node.module or "", alias.name) for alias in node.names]
    return found


def _underscore_reads(tree: ast.AST) -> list[str]:
    """Underscore attributes read or set on anything but ``self`` / ``cls``, and
    underscore names given to ``getattr`` / ``setattr`` / ``hasattr``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            found.append(node.args[1].value)
    return found


def test_services_use_only_pynetdicoms_public_api() -> None:
    for path in _services():
        tree = ast.parse(path.read_text(), filename=str(path))
        for module, name in _pynetdicom_imports(tree):
            parts = module.split(".")
            if (module, name) in PUBLIC_CLASSES:
                continue
            assert not set(parts[1:]) & INTERNAL_MODULES, (path, module)
            assert not any(_private(part) for part in parts), (path, module)
            assert not _private(name), (path, module, name)
        for attribute in _underscore_reads(tree):
            assert attribute in PYDICOM_PRIVATES, (path, attribute)


def test_every_pynetdicom_private_the_fast_path_touches_is_listed() -> None:
    listed = names()
    for path in sorted(FASTPATH.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for module, name in _pynetdicom_imports(tree):
            for part in [*module.split("."), name]:
                if _private(part):
                    assert part in listed, (path, module, name)
        for attribute in _underscore_reads(tree):
            assert attribute in listed, (path, attribute)


def test_the_list_names_a_module_and_a_reason_for_each_and_the_pin_matches() -> None:
    for private in PRIVATES:
        assert private.kind in ("global", "swap", "read"), private
        assert private.why and private.module, private
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"pynetdicom=={VALIDATED_VERSION}"' in pyproject
