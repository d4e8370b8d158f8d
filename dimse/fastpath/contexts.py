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
(``dimse.access``), never by changing a context."""

from __future__ import annotations

from typing import Any, cast

from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.presentation import PresentationContext


class SharedContexts(list[PresentationContext]):
    """Supported contexts whose per-association deep copy is a new list of the same
    frozen contexts."""

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        return list(self)


def supported_contexts(ae: AE) -> SharedContexts:
    """The AE's supported contexts, frozen, in a list each association shares."""
    contexts = SharedContexts()
    for cx in ae.supported_contexts:
        frozen = PresentationContext()
        frozen.__dict__.update(vars(cx))
        frozen._transfer_syntax = cast(list[UID], tuple(cx._transfer_syntax))
        contexts.append(frozen)
    return contexts
