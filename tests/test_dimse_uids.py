"""Negotiation UIDs checked once per value (dimse/fastpath/uids.py): a presentation
context's transfer syntaxes (PS3.8 9.3.2.2.1, Transfer Syntax Sub-Item) behave as with
pynetdicom's own ``add_transfer_syntax``, the checks run once per distinct value."""

from __future__ import annotations

import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.presentation import PresentationContext

from dimse.fastpath import uids


@pytest.fixture(autouse=True)
def _installed() -> None:
    uids.install()
    assert uids.installed()


def test_a_syntax_seen_before_is_the_same_uid_and_added_once() -> None:
    first, second = PresentationContext(), PresentationContext()
    first.add_transfer_syntax(str(ExplicitVRLittleEndian))
    second.add_transfer_syntax(str(ExplicitVRLittleEndian))
    second.add_transfer_syntax(str(ExplicitVRLittleEndian).encode())  # as the PDU carries it
    second.add_transfer_syntax(ImplicitVRLittleEndian)
    assert first.transfer_syntax[0] is second.transfer_syntax[0]
    assert all(isinstance(ts, UID) for ts in second.transfer_syntax)
    assert second.transfer_syntax == [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def test_an_invalid_syntax_is_refused_every_time() -> None:
    """PS3.5 9.1: a UID is at most 64 characters; pynetdicom refuses a longer one (and an
    empty one) with ValueError, each time: a refusal is not cached."""
    for value in ("1." + "2" * 70, "1." + "2" * 70, "", ""):
        context = PresentationContext()
        with pytest.raises(ValueError, match="invalid UID"):
            context.add_transfer_syntax(value)
        assert context.transfer_syntax == []


def test_a_non_conformant_syntax_is_added_as_pynetdicom_adds_it() -> None:
    """PS3.5 9.1: a leading zero is not conformant; pynetdicom adds it with a warning
    (and so does the cache, which warns the first time only)."""
    for _ in range(2):
        context = PresentationContext()
        context.add_transfer_syntax("1.2.03")
        assert context.transfer_syntax == ["1.2.03"]


def test_values_that_are_not_uids_add_nothing() -> None:
    context = PresentationContext()
    context.add_transfer_syntax(None)
    context.add_transfer_syntax(5)  # type: ignore[arg-type]
    context.transfer_syntax = [ImplicitVRLittleEndian, ImplicitVRLittleEndian]
    assert context.transfer_syntax == [ImplicitVRLittleEndian]
