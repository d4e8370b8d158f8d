"""UIDs of association negotiation converted and validated once per value.

pynetdicom decodes an A-ASSOCIATE-RQ into primitives whose every UID goes through
``pynetdicom.utils.set_uid``: bytes decoded, a pydicom ``UID`` made, checked by the
``UI`` validator (a regular expression) and by ``UID.is_valid`` (another). A modality
that proposes the storage SOP classes (about 120 presentation contexts, three transfer
syntaxes each) has its ~500 UIDs checked that way on every association, the largest
share of the ~15 ms of server CPU a new association cost (docs/performance.md, issue
15), although they are the same few hundred values each time.

Here the modules that decode and negotiate associations (``pdu_items``,
``pdu_primitives``, ``presentation``) call ``set_uid`` through a bounded cache keyed by
its arguments: a value seen before returns the same immutable ``UID``; a value that
fails validation raises each time, as before (exceptions are not cached). DIMSE
messages (``dimse_primitives``: SOP Instance UIDs, new for every instance) keep the
original.

A presentation context's transfer syntaxes do not go through ``set_uid``:
``PresentationContext.add_transfer_syntax`` makes a ``UID`` and runs four regular
expressions on it (``UID()``, ``validate_uid``, ``is_valid`` twice) for each of the ~360
transfer syntax items of such a request and again for each context the negotiation
accepts; after the cache of ``set_uid`` that was a third of the association's CPU. It is
wrapped the same way: the checks run once per distinct value (on a scratch context,
with their warnings, or the ``ValueError`` raised each time) and a value seen before is
appended as the same ``UID``.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

import pynetdicom.pdu_items
import pynetdicom.pdu_primitives
import pynetdicom.presentation
from pydicom.uid import UID
from pynetdicom.presentation import PresentationContext

#: The modules whose ``set_uid`` is replaced (association negotiation only).
MODULES = (pynetdicom.pdu_items, pynetdicom.pdu_primitives, pynetdicom.presentation)

#: PS3.5 9.1: a UID is dot-separated numbers without leading zeros, at most 64 characters.
_CONFORMANT_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_MAX_UID = 64


def conformant(value: str) -> bool:
    """Whether ``value`` is a UID as PS3.5 9.1 allows it (it then passes every check
    pydicom's and pynetdicom's validators make)."""
    return len(value) <= _MAX_UID and _CONFORMANT_UID.fullmatch(value) is not None


#: Distinct UID values kept (SOP classes and transfer syntaxes: a few hundred).
CACHE_SIZE = 4096

_install_lock = threading.Lock()


def _cached(original: Any) -> Any:
    @functools.lru_cache(maxsize=CACHE_SIZE)
    def set_uid_cached(*args: Any) -> Any:
        return original(*args)

    def set_uid(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            args = _positional(*args, **kwargs)
        try:
            return set_uid_cached(*args)
        except TypeError:  # an unhashable value: as pynetdicom would
            return original(*args)

    set_uid.noctis_original = original  # type: ignore[attr-defined]
    return set_uid


def _positional(
    value: Any,
    name: str,
    allow_empty: bool = True,
    allow_none: bool = True,
    validate: bool = True,
) -> tuple[Any, ...]:
    return (value, name, allow_empty, allow_none, validate)


def _cached_add(original: Any) -> Any:
    @functools.lru_cache(maxsize=CACHE_SIZE)
    def checked(syntax: str | bytes) -> UID | None:
        scratch = PresentationContext()
        original(scratch, syntax)  # every check and warning of pynetdicom's, once
        added = scratch._transfer_syntax
        return added[0] if added else None

    def add_transfer_syntax(self: PresentationContext, syntax: Any) -> None:
        uid = checked(syntax) if type(syntax) in (str, bytes, UID) else None
        if uid is None:  # not a value to cache, or nothing added: as pynetdicom would
            original(self, syntax)
        elif uid not in self._transfer_syntax:
            self._transfer_syntax.append(uid)

    add_transfer_syntax.noctis_original = original  # type: ignore[attr-defined]
    return add_transfer_syntax


def install() -> None:
    """Replace ``set_uid`` in the negotiation modules and wrap
    ``PresentationContext.add_transfer_syntax`` (once)."""
    with _install_lock:
        for module in MODULES:
            current = module.set_uid
            if not hasattr(current, "noctis_original"):
                module.set_uid = _cached(current)  # type: ignore[attr-defined]
        add = PresentationContext.add_transfer_syntax
        if not hasattr(add, "noctis_original"):
            PresentationContext.add_transfer_syntax = _cached_add(add)  # type: ignore[method-assign]


def installed() -> bool:
    return all(hasattr(m.set_uid, "noctis_original") for m in MODULES) and hasattr(
        PresentationContext.add_transfer_syntax, "noctis_original"
    )
