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

from dimse.fastpath import contexts
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


def _fields(results: list[PresentationContext]) -> list[tuple[object, ...]]:
    return [
        (c.context_id, c.abstract_syntax, c.transfer_syntax, c.result, c.as_scu, c.as_scp)
        for c in results
    ]


def test_the_negotiated_results_kept_per_proposal_equal_pynetdicom_s() -> None:
    """PS3.8 9.3.3.2: through the shared list's kept results (dimse/fastpath/contexts.py),
    every proposed context gets pynetdicom's result (accepted, abstract syntax not
    supported 3, transfer syntaxes not supported 4), sorted by context ID, on the first
    association and again on the next, each association with its own result objects."""
    ae = _ae()
    ae.add_supported_context("1.2.840.10008.1.1", [ImplicitVRLittleEndian])
    shared = supported_contexts(ae)
    proposals = []
    for n, cx in enumerate([*AllStoragePresentationContexts[:119], None]):
        context = PresentationContext()
        context.context_id = 239 - 2 * n  # proposed in descending order: sorted on return
        context.abstract_syntax = cx.abstract_syntax if cx else "1.2.3.4.5.6"
        context.transfer_syntax = (
            ["1.2.3.4.99"] if n == 7 else [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        proposals.append(context)
    first, roles = contexts.negotiate(proposals, copy.deepcopy(shared), {})
    assert len(shared.results) == len(proposals)  # each distinct proposal decided once
    second, _ = contexts.negotiate(proposals, copy.deepcopy(shared), {})
    assert len(shared.results) == len(proposals)  # and reused: nothing decided again
    theirs, _ = negotiate_as_acceptor(proposals, copy.deepcopy(ae.supported_contexts))
    assert roles == []
    assert _fields(first) == _fields(second) == _fields(theirs)
    assert {c.result for c in first} == {0x00, 0x03, 0x04}
    assert all(a is not b for a, b in zip(first, second, strict=True))


def test_role_selection_and_narrowed_lists_are_negotiated_by_pynetdicom() -> None:
    """PS3.7 D.3.3.4: with SCP/SCU role selection proposed the roles come back (from
    pynetdicom's own negotiation); a plain list (the access policy's narrowing) is
    negotiated by pynetdicom too."""
    ae = _ae()
    shared = supported_contexts(ae)
    context = PresentationContext()
    context.context_id = 1
    context.abstract_syntax = AllStoragePresentationContexts[0].abstract_syntax
    context.transfer_syntax = [ExplicitVRLittleEndian]
    roles = {context.abstract_syntax: (False, True)}
    results, replies = contexts.negotiate([context], copy.deepcopy(shared), roles)
    assert results[0].result == 0x00 and results[0].as_scp is False and results[0].as_scu is True
    assert len(replies) == 1
    narrowed = [cx for cx in copy.deepcopy(shared)][:1]
    assert not hasattr(narrowed, "results")
    plain, _ = contexts.negotiate([context], narrowed, {})
    assert _fields(plain) == _fields(negotiate_as_acceptor([context], narrowed)[0])
