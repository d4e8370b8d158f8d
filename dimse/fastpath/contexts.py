"""The server's supported presentation contexts, shared by every association it accepts.

pynetdicom deep-copies the server's whole list of supported contexts for every
association it accepts; ours (every storage SOP class x every transfer syntax, 170
contexts) took 27 ms with the generic deep copy (``UID`` objects go through the
reduce/reconstruct path) and still ~0.4 ms with a copy per context, a tenth of a new
association's set-up (docs/performance.md, issue 15).

Negotiation only reads them (PS3.8 9.3.2.2; pynetdicom's ``negotiate_as_acceptor``
builds new contexts for its result), so each association gets a new list of the same
context objects, frozen: their transfer syntaxes are tuples, so that anything that
tried to change one in place would fail at once instead of changing it for every
association. The access policy narrows an association's list by replacing it
(``dimse.access``), never by changing a context.

Negotiation (pynetdicom's ``negotiate_as_acceptor``, PS3.8 9.3.3.2) decides each
proposed context alone, from its abstract syntax, its transfer syntaxes and the
supported context of that abstract syntax; a modality proposes the same ~120 contexts
on every association, and pynetdicom built and validated a new result context for each
(~0.45 ms of a new association). Through the shared list, each distinct proposal is
negotiated once by pynetdicom's own function and its result copied for the next
association, with that association's context ID (:class:`Results`). A list the access
policy narrowed, and any proposal with SCP/SCU role selection or repeated context IDs,
is negotiated by pynetdicom as before."""

from __future__ import annotations

from typing import Any, cast

import pynetdicom.acse
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.presentation import PresentationContext, negotiate_as_acceptor


class Results:
    """The negotiated result of each distinct proposed context against one list of
    supported contexts, as pynetdicom's ``negotiate_as_acceptor`` decides it."""

    #: Distinct proposals kept (their values come from peers: the bound keeps memory flat).
    LIMIT = 4096

    def __init__(self, supported: list[PresentationContext]) -> None:
        self.supported = supported
        self._models: dict[tuple[UID, tuple[UID, ...]], PresentationContext] = {}

    def __len__(self) -> int:
        """How many distinct proposals have been decided and kept."""
        return len(self._models)

    def negotiate(self, proposed: list[PresentationContext]) -> list[PresentationContext] | None:
        """The result contexts, sorted by context ID; None where pynetdicom must decide
        (a context without its syntaxes, or a context ID proposed twice)."""
        ids = {cx.context_id for cx in proposed}
        if len(ids) != len(proposed):
            return None
        results = []
        for asked in proposed:
            abstract, syntaxes = asked.abstract_syntax, tuple(asked._transfer_syntax)
            if abstract is None or not syntaxes:
                return None
            model = self._models.get((abstract, syntaxes))
            if model is None:
                model = self._decide(abstract, syntaxes)
            results.append(copy_context(model, asked.context_id))
        results.sort(key=lambda cx: cast(int, cx.context_id))
        return results

    def _decide(self, abstract: UID, syntaxes: tuple[UID, ...]) -> PresentationContext:
        probe = PresentationContext()
        probe.context_id = 1
        probe.abstract_syntax = abstract
        probe._transfer_syntax = list(syntaxes)
        (model,), _ = negotiate_as_acceptor([probe], self.supported)
        if len(self._models) < self.LIMIT:
            self._models[(abstract, syntaxes)] = model
        return model


def copy_context(model: PresentationContext, context_id: int | None) -> PresentationContext:
    """A new context equal to ``model`` but for its ID, which is checked as pynetdicom's
    setter checks it (an odd number from 1 to 255: ``ValueError`` otherwise); its own list
    of transfer syntaxes. Without ``__init__`` and the setter: ~1 us per context less, for
    the 120 of a modality's association, twice (decoded, negotiated)."""
    if context_id is not None and (not 1 <= context_id <= 255 or context_id % 2 == 0):
        raise ValueError("'context_id' must be an odd integer between 1 and 255, inclusive")
    context = PresentationContext.__new__(PresentationContext)
    state = model.__dict__.copy()
    state["_context_id"] = context_id
    state["_transfer_syntax"] = list(model._transfer_syntax)
    context.__dict__ = state
    return context


class SharedContexts(list[PresentationContext]):
    """Supported contexts whose per-association deep copy is a new list of the same
    frozen contexts, sharing their negotiated :class:`Results`."""

    def __init__(self, contexts: list[PresentationContext], results: Results | None = None) -> None:
        super().__init__(contexts)
        self.results = results if results is not None else Results(list(contexts))

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedContexts:
        return SharedContexts(self, self.results)


def negotiate(
    proposed: list[PresentationContext],
    supported: list[PresentationContext],
    roles: dict[UID, tuple[bool | None, bool | None]] | None = None,
) -> tuple[list[PresentationContext], list[Any]]:
    """pynetdicom's ``negotiate_as_acceptor`` (as ``pynetdicom.acse`` calls it), through
    the shared list's :class:`Results` where it can."""
    results = getattr(supported, "results", None)
    if isinstance(results, Results) and not roles and proposed:
        decided = results.negotiate(proposed)
        if decided is not None:
            return decided, []
    return negotiate_as_acceptor(proposed, supported, roles)


def install() -> None:
    """Negotiate through :func:`negotiate` (once per process; a list that is not a
    ``SharedContexts`` is negotiated as before)."""
    setattr(pynetdicom.acse, "negotiate_as_acceptor", negotiate)  # noqa: B010 - a module global


def supported_contexts(ae: AE) -> SharedContexts:
    """The AE's supported contexts, frozen, in a list each association shares."""
    frozen_contexts = []
    for cx in ae.supported_contexts:
        frozen = PresentationContext()
        frozen.__dict__.update(vars(cx))
        frozen._transfer_syntax = cast(list[UID], tuple(cx._transfer_syntax))
        frozen_contexts.append(frozen)
    return SharedContexts(frozen_contexts)
