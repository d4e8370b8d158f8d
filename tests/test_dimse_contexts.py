"""The AE's supported presentation contexts as the listener hands them to pynetdicom
(dimse/server.py): the per-association deep copy equals pynetdicom's own and shares
no mutable state with the server's list (PS3.8 9.3.2.2 negotiation reads it)."""

from __future__ import annotations

import copy

from pydicom.uid import AllTransferSyntaxes
from pynetdicom import AE
from pynetdicom.presentation import AllStoragePresentationContexts

from dimse.fastpath.contexts import supported_contexts


def test_copy_equals_a_generic_deep_copy_and_shares_no_list() -> None:
    ae = AE()
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(
            cx.abstract_syntax, list(AllTransferSyntaxes), scu_role=True, scp_role=True
        )
    ours = supported_contexts(ae)
    copied = copy.deepcopy(ours)
    reference = copy.deepcopy(ae.supported_contexts)
    assert [vars(c) for c in copied] == [vars(c) for c in reference]
    assert all(
        a._transfer_syntax is not b._transfer_syntax for a, b in zip(copied, ours, strict=True)
    )
    copied[0]._transfer_syntax.clear()
    assert ours[0]._transfer_syntax  # the server's list is untouched
