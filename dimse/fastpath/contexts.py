"""A cheap per-association copy of the server's supported presentation contexts.

pynetdicom deep-copies the server's whole list of supported contexts for every
association it accepts; ours (every storage SOP class x every transfer syntax, 170
contexts) is slow to copy because ``UID`` objects go through the generic
reduce/reconstruct path. A context holds only UIDs (immutable strings), flags and a
list of UIDs, so a copy with its own list is the same deep copy, made directly."""

from __future__ import annotations

from typing import Any

from pynetdicom import AE
from pynetdicom.presentation import PresentationContext


class SupportedContext(PresentationContext):
    """A supported presentation context whose deep copy shares its immutable UIDs."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SupportedContext:
        clone = SupportedContext()
        clone.__dict__.update(self.__dict__)
        clone._transfer_syntax = list(self._transfer_syntax)
        return clone


def supported_contexts(ae: AE) -> list[PresentationContext]:
    """The AE's supported contexts as ``SupportedContext`` (cheap per-association copy)."""
    contexts: list[PresentationContext] = []
    for cx in ae.supported_contexts:
        clone = SupportedContext()
        clone.__dict__.update(vars(cx))
        clone._transfer_syntax = list(cx._transfer_syntax)
        contexts.append(clone)
    return contexts
