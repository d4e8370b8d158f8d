"""The raw header reader reads what pydicom reads (PS3.10 7.1 file meta, PS3.5 7.1 and
7.5 element and sequence encoding), or leaves the file to pydicom.

Every file pydicom bundles goes through both readers of ``storage.parse``: where the raw
reader takes a file, its DICOM JSON (PS3.18 F.2), UIDs, frame ranges and warnings must be
those of the pydicom path.
"""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from storage import parse
from storage.parse import ParsedInstance, ParseError, header_metadata, read_header
from storage.rawheader import NeedMore, Unreadable, read_raw_header
from tests.factory import bundled_files, ct_series, make_dataset, to_bytes


def _both(data: bytes) -> tuple[ParsedInstance | None, ParsedInstance | None]:
    """(raw reader's result or None where it declines, pydicom path's result)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = parse._read_with_pydicom(BytesIO(data), len(data))
        raw = parse._read_raw(BytesIO(data), len(data), None)
        ours = parse._from_raw(raw, BytesIO(data), len(data)) if raw is not None else None
    return ours, theirs


def _same(ours: ParsedInstance, theirs: ParsedInstance) -> None:
    for name in (
        "transfer_syntax_uid", "sop_class_uid", "sop_instance_uid", "study_uid",
        "series_uid", "frames", "pixel_vr", "warnings",
    ):  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name
    assert header_metadata(ours) == header_metadata(theirs)


def _pydicom_reads(path: Path) -> bool:
    try:
        _both(path.read_bytes())
    except (ParseError, Exception):
        return False
    return True


_BUNDLED = [p for p in bundled_files() if _pydicom_reads(p)]


@pytest.mark.parametrize("path", _BUNDLED, ids=lambda p: p.name)
def test_every_bundled_file_reads_the_same_or_is_left_to_pydicom(path: Path) -> None:
    ours, theirs = _both(path.read_bytes())
    if ours is not None:
        assert theirs is not None
        _same(ours, theirs)


def test_the_raw_reader_takes_most_bundled_files() -> None:
    """Declining is always safe; declining everything would make the reader useless."""
    taken = sum(1 for p in _BUNDLED if _both(p.read_bytes())[0] is not None)
    assert taken >= len(_BUNDLED) // 2, (taken, len(_BUNDLED))


def _sequence_dataset(syntax: str) -> bytes:
    ds = make_dataset(
        patient_name="Müller^Jürgen=ミュラー^ユルゲン", SpecificCharacterSet="ISO_IR 192"
    )
    item = Dataset()
    item.CodeValue = "123"
    item.CodeMeaning = "Ärger"
    nested = Dataset()
    nested.CodeValue = "N"
    item.ConceptNameCodeSequence = Sequence([nested])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    ds.ReferencedStudySequence = Sequence([])
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.ImageComments = "Ärger \\ no split"  # LT: one value (PS3.5 6.2)
    ds.PixelSpacing = [0.5, "1.25"]
    ds.WindowCenter = ["40", "-600"]
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    ds.save_as(
        buffer,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=True,
        enforce_file_format=True,
    )
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_sequences_character_sets_and_both_vr_encodings(syntax: str) -> None:
    data = _sequence_dataset(syntax)
    ours, theirs = _both(data)
    assert ours is not None and theirs is not None
    _same(ours, theirs)
    meta = header_metadata(ours)
    assert meta["00100010"]["Value"][0]["Ideographic"] == "ミュラー^ユルゲン"
    assert meta["00081032"]["Value"][0]["00080104"]["Value"] == ["Ärger"]
    assert meta["00204000"]["Value"] == ["Ärger \\ no split"]
    assert meta["00081032"]["Value"][1] == {}
    assert meta["00081110"] == {"vr": "SQ", "Value": []}


def test_undefined_length_sequences_and_items() -> None:
    """PS3.5 7.5.2: items and sequences closed by delimitation items."""
    ds = make_dataset()
    item = Dataset()
    item.CodeValue = "A"
    ds.ProcedureCodeSequence = Sequence([item, item])
    ds["ProcedureCodeSequence"].is_undefined_length = True
    for entry in ds.ProcedureCodeSequence:
        entry.is_undefined_length_sequence_item = True
    ours, theirs = _both(to_bytes(ds))
    assert ours is not None and theirs is not None
    _same(ours, theirs)


def test_generated_ct_and_small_instances_are_read_raw() -> None:
    """The corpora the benchmarks send must take the fast path."""
    for ds in [make_dataset(), *ct_series(2, 64)]:
        data = to_bytes(ds)
        ours, theirs = _both(data)
        assert ours is not None and theirs is not None
        _same(ours, theirs)
        assert ours.frames is not None


def test_a_header_longer_than_the_first_read_reads_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "FIRST_READ", 200)
    data = to_bytes(make_dataset(StudyDescription="x" * 4000))
    parsed = read_header(BytesIO(data), len(data))
    assert parsed.raw is not None
    with pytest.raises(NeedMore):
        read_raw_header(data[:300], len(data), 1024)


def _implicit_bytes(ds: Dataset) -> bytes:
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return buffer.getvalue()


def _private_implicit() -> bytes:
    ds = make_dataset()
    ds.add_new(0x00091010, "LO", "private")
    return _implicit_bytes(ds)


def _ambiguous_implicit() -> bytes:
    ds = make_dataset()
    ds.SmallestImagePixelValue = 0  # "US or SS" in the dictionary
    return _implicit_bytes(ds)


def _un_explicit() -> bytes:
    ds = make_dataset()
    ds.add_new(0x00091010, "UN", b"abcd")
    return to_bytes(ds)


def _big_endian() -> bytes:
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    buffer = BytesIO()
    ds.save_as(buffer, implicit_vr=False, little_endian=False, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make", [_private_implicit, _ambiguous_implicit, _un_explicit, _big_endian, lambda: b"\0" * 200]
)
def test_what_the_raw_reader_leaves_to_pydicom(make: Any) -> None:
    """Private elements in implicit VR, ambiguous VRs, UN, big endian and non-Part 10 bytes
    go to pydicom, which reads them (or says why not) as before."""
    data = make()
    with pytest.raises(Unreadable):
        read_raw_header(data, len(data), 1024)
    if len(data) > 200:
        parsed = read_header(BytesIO(data), len(data))
        assert parsed.raw is None and parsed.ds is not None
        assert header_metadata(parsed)["00100020"]["Value"] == ["PID001"]


def test_invalid_utf8_text_is_left_to_pydicom() -> None:
    """Text that does not decode in its character set is pydicom's to replace; the
    instance is still read (before, the fast JSON writer raised on it)."""
    data = to_bytes(make_dataset(SpecificCharacterSet="ISO_IR 192"))
    data = data.replace(b"Doe^John", b"Doe^J\xffhn", 1)
    with pytest.raises(Unreadable):
        read_raw_header(data, len(data), 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = header_metadata(read_header(BytesIO(data), len(data)))
    assert meta["00100010"]["Value"][0]["Alphabetic"].startswith("Doe^J")


@pytest.mark.parametrize("cut", [140, 400, -100])
def test_truncated_files_get_the_same_verdict(cut: int) -> None:
    data = to_bytes(make_dataset())
    cut_data = data[:cut]
    with pytest.raises(ParseError) as raised:
        read_header(BytesIO(cut_data), len(cut_data))
    with pytest.raises(ParseError) as by_pydicom:
        parse._read_with_pydicom(BytesIO(cut_data), len(cut_data))
    assert raised.value.kind == by_pydicom.value.kind


def test_an_explicit_data_set_under_an_implicit_syntax_is_left_to_pydicom() -> None:
    """PS3.10 7.1 names the syntax; a data set that is explicit VR anyway is never walked
    as implicit by the raw reader (its lengths would be VR letters): the verdict is the
    pydicom path's."""
    data = to_bytes(make_dataset())  # explicit VR little endian
    offset = data.index(b"1.2.840.10008.1.2.1\x00")
    lying = data[:offset] + b"1.2.840.10008.1.2\x00\x00" + data[offset + 20 :]
    with pytest.raises(Unreadable):
        read_raw_header(lying, len(lying), 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ParseError) as ours:
            read_header(BytesIO(lying), len(lying))
        with pytest.raises(ParseError) as theirs:
            parse._read_with_pydicom(BytesIO(lying), len(lying))
    assert (ours.value.kind, ours.value.reason) == (theirs.value.kind, theirs.value.reason)


def test_a_missing_uid_is_judged_by_pydicom() -> None:
    """PS3.4 B.2.3 (A900): the reason a file lacking a required UID is refused comes from
    the pydicom read, whichever reader saw it first."""
    ds = make_dataset()
    del ds.SeriesInstanceUID
    data = to_bytes(ds)
    raw = parse._read_raw(BytesIO(data), len(data), None)
    assert raw is not None and parse._from_raw(raw, BytesIO(data), len(data)) is None
    with pytest.raises(ParseError) as raised:
        read_header(BytesIO(data), len(data))
    assert raised.value.kind == "missing" and "SeriesInstanceUID" in raised.value.reason
