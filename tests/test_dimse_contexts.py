"""The AE's supported presentation contexts as the listener hands them to pynetdicom
(dimse/server.py): every association shares the same frozen contexts (no copy per
association), which negotiate exactly as pynetdicom's own deep copy does (PS3.8
9.3.2.2) and cannot be changed in place."""

from __future__ import annotations

import copy

import pytest
from pydicom.uid import AllTransferSyntaxes, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    negotiate_as_acceptor,
)

from dimse.fastpath.contexts import supported_contexts


def _ae() -> AE:
    ae = AE()
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(
            cx.abstract_syntax, list(AllTransferSyntaxes), scu_role=True, scp_role=True
        )
    return ae


def test_the_copy_per_association_shares_the_frozen_contexts() -> None:
    ae = _ae()
    ours = supported_contexts(ae)
    copied = copy.deepcopy(ours)
    assert copied is not ours
    assert all(a is b for a, b in zip(copied, ours, strict=True))
    reference = ae.supported_contexts
    assert [(c.abstract_syntax, list(c.transfer_syntax), c.scu_role, c.scp_role) for c in ours] == [
        (c.abstract_syntax, list(c.transfer_syntax), c.scu_role, c.scp_role) for c in reference
    ]
    with pytest.raises(AttributeError):
        ours[0].transfer_syntax.append(ImplicitVRLittleEndian)  # type: ignore[attr-defined]
    assert list(ae.supported_contexts[0].transfer_syntax) == list(AllTransferSyntaxes)


def test_negotiation_against_the_shared_contexts_equals_pynetdicom_s() -> None:
    """PS3.8 9.3.2.2: each proposed context accepted with one transfer syntax it offers
    (pynetdicom: the acceptor's first that the proposal lists), or rejected (abstract
    syntax not supported: result 3)."""
    ae = _ae()
    proposed = []
    for n, cx in enumerate([*AllStoragePresentationContexts[:40], None]):
        context = PresentationContext()
        context.context_id = 2 * n + 1
        context.abstract_syntax = cx.abstract_syntax if cx else "1.2.3.4.5.6"
        context.transfer_syntax = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        proposed.append(context)
    ours, _ = negotiate_as_acceptor(proposed, copy.deepcopy(supported_contexts(ae)))
    theirs, _ = negotiate_as_acceptor(proposed, copy.deepcopy(ae.supported_contexts))
    assert [(c.context_id, c.result, c.transfer_syntax) for c in ours] == [
        (c.context_id, c.result, c.transfer_syntax) for c in theirs
    ]
    assert ours[-1].result == 0x03
    assert ours[0].transfer_syntax == [ImplicitVRLittleEndian]  # AllTransferSyntaxes' first
