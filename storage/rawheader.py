"""A Part 10 header read straight from its bytes, for the common case.

At ingest ``storage.parse.read_header`` needs three things from a header: the
DICOM JSON of the data set, a handful of index attributes (all found in that
JSON) and where Pixel Data starts.  Building a pydicom ``Dataset`` for that is
the largest share of the CPU an instance costs at ingest, so this module walks the
raw elements of the file once (PS3.5 7.1: tag, VR, length, value; PS3.5 7.5:
sequences and items of defined or undefined length) and writes each element's
JSON as it passes, with the element writer of ``storage.dicomjson``.

It takes only files it can read exactly as pydicom reads them: a Part 10
preamble and file meta, a data set in implicit or explicit VR little endian
(every encapsulated transfer syntax is explicit VR little endian), standard VRs,
nothing ambiguous or unknown.  For anything else it returns ``None`` and the
caller reads the file with pydicom; ``tests/test_storage_rawheader.py`` checks
that both readers give the same JSON and the same pixel data position for every
file pydicom bundles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from struct import Struct
from typing import NoReturn

from pydicom.datadict import dictionary_VR
from pydicom.uid import AllTransferSyntaxes, ImplicitVRLittleEndian

from noctis_pacs.core.wire import LONG_VRS
from storage.dicomjson import BulkHandler, Fallback, JsonDict, element_json, encoding_codec

#: Transfer syntaxes whose data set is explicit VR little endian (PS3.5 A.2, A.4).
EXPLICIT_LITTLE = frozenset(
    str(ts)
    for ts in AllTransferSyntaxes
    if not ts.is_implicit_VR and ts.is_little_endian and not ts.is_deflated
)
_LONG = frozenset(vr.encode("ascii") for vr in LONG_VRS)
_SHORT = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
_VR_NAMES = {vr: vr.decode("ascii") for vr in _LONG | _SHORT}
#: Top-level elements that end a header read (pydicom's ``stop_before_pixels``).
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_EXTENDED_OFFSET_TABLE = 0x7FE00001
_SPECIFIC_CHARACTER_SET = 0x00080005
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF

_TAG_VR_SHORT = Struct("<HH2sH")
_TAG_LENGTH = Struct("<HHI")
_LENGTH = Struct("<I")


class Unreadable(Exception):
    """This file is left to pydicom (it reads unusual files, or says why it cannot)."""


class NeedMore(Exception):
    """The header runs past the bytes given; call again with more of the file."""


@dataclass
class RawHeader:
    """What a header read gives: file meta values, the data set's JSON and positions."""

    transfer_syntax_uid: str
    media_sop_instance_uid: str
    dataset: JsonDict
    #: Offset of the element that ended the read (Pixel Data), or of the end of the file.
    header_end: int
    extended_offset_table: bytes | None
    #: JSON objects still waiting for their BulkDataURI, with the tag each one names.
    bulk: list[tuple[JsonDict, int]] = field(default_factory=list)

    def dataset_json(self, uri: BulkHandler) -> JsonDict:
        """The data set's JSON with each bulk data element named by ``uri(tag)``."""
        for element, tag in self.bulk:
            element["BulkDataURI"] = uri(tag)
        self.bulk = []
        return self.dataset


@lru_cache(maxsize=8192)  # bounded: the tags come from the file
def _implicit_vr(tag: int) -> bytes:
    """The dictionary VR of an implicit VR element, or ``Unreadable`` where pydicom would
    resolve it further (private, unknown, ambiguous or repeating-group elements)."""
    if tag & 0x00010000:
        raise Unreadable
    try:
        vr = str(dictionary_VR(tag)).encode("ascii")
    except KeyError:
        raise Unreadable from None
    if vr not in _VR_NAMES:
        raise Unreadable
    return vr


def read_raw_header(data: bytes, file_size: int, threshold: int) -> RawHeader:
    """Read the Part 10 header at the start of ``data`` (the first bytes of a file of
    ``file_size`` bytes).  Raises ``NeedMore`` when ``data`` ends inside the header and
    ``Unreadable`` when the file is not one this reader takes."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Unreadable
    reader = _Reader(data, file_size, threshold)
    meta, pos = reader.file_meta()
    ts = meta.get(0x00020010, "")
    if ts == ImplicitVRLittleEndian:
        reader.implicit = True
        if data[pos + 4 : pos + 6] in _VR_NAMES:
            raise Unreadable  # explicit VR despite the syntax: pydicom's reading decides
    elif ts not in EXPLICIT_LITTLE:
        raise Unreadable
    dataset, end = reader.dataset(pos, file_size, top=True, codec="latin-1")
    return RawHeader(
        transfer_syntax_uid=ts,
        media_sop_instance_uid=meta.get(0x00020003, ""),
        dataset=dataset,
        header_end=end,
        extended_offset_table=reader.extended_offset_table,
        bulk=reader.bulk,
    )


def _no_uri(tag: int) -> str:
    return ""


class _Reader:
    """Walks the elements of one file; ``bulk`` collects the bulk data elements met."""

    def __init__(self, data: bytes, file_size: int, threshold: int) -> None:
        self.data = data
        self.file_size = file_size
        self.whole = len(data) >= file_size
        self.implicit = False
        self.threshold = threshold
        self.inline_limit = (threshold // 4) * 3
        self.bulk: list[tuple[JsonDict, int]] = []
        self.extended_offset_table: bytes | None = None

    def short(self) -> NoReturn:
        """The bytes end too soon: read more of the file, or let pydicom say it is cut."""
        raise Unreadable if self.whole else NeedMore

    def file_meta(self) -> tuple[dict[int, str], int]:
        """The UI values of the file meta group (PS3.10 7.1, always explicit VR little
        endian) and where the data set starts."""
        data = self.data
        values: dict[int, str] = {}
        pos = 132
        while True:
            if pos + 8 > len(data):
                self.short()
            group, element, vr, length = _TAG_VR_SHORT.unpack_from(data, pos)
            if group != 0x0002:
                return values, pos
            if vr in _LONG:
                if pos + 12 > len(data):
                    self.short()
                (length,) = _LENGTH.unpack_from(data, pos + 8)
                start = pos + 12
            elif vr in _SHORT:
                start = pos + 8
            else:
                raise Unreadable
            if length == _UNDEFINED:
                raise Unreadable
            pos = start + length
            if pos > len(data):
                self.short()
            if vr == b"UI":
                text = data[start:pos].decode("ascii", "replace")
                values[0x00020000 | element] = text.strip("\x00 ")

    def dataset(self, pos: int, end: int, *, top: bool, codec: str | None) -> tuple[JsonDict, int]:
        """The elements from ``pos`` to ``end`` (to an Item Delimitation Item when ``end``
        is -1) as JSON, and the offset where reading stopped."""
        data = self.data
        size = len(data)
        implicit = self.implicit
        until = self.file_size if end < 0 else end
        out: JsonDict = {}
        while pos < until:
            if pos + 8 > until:
                if top:  # pydicom ignores fewer than 8 trailing bytes
                    return out, self.file_size
                raise Unreadable
            if pos + 8 > size:
                self.short()
            if implicit:
                group, element, length = _TAG_LENGTH.unpack_from(data, pos)
                vr = b""
                start = pos + 8
            else:
                group, element, vr, length = _TAG_VR_SHORT.unpack_from(data, pos)
                start = pos + 8
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag == _ITEM_END and end < 0 and not top:
                    return out, pos + 8
                raise Unreadable
            if top and tag in _PIXEL_TAGS:
                return out, pos
            if implicit:
                vr = _implicit_vr(tag)
            elif vr in _LONG:
                if pos + 12 > size:
                    self.short()
                (length,) = _LENGTH.unpack_from(data, pos + 8)
                start = pos + 12
            elif vr not in _SHORT:
                raise Unreadable
            key = f"{tag:08X}"
            if vr == b"SQ":
                items, pos = self.sequence(start, length, codec)
                out[key] = {"vr": "SQ", "Value": items}
                continue
            if length == _UNDEFINED or vr == b"UN":
                raise Unreadable  # pydicom reinterprets UN and undefined-length values
            pos = start + length
            if pos > until:
                raise Unreadable  # a value past its container: pydicom says what is wrong
            name = _VR_NAMES[vr]
            if name in _BINARY and length > self.inline_limit:
                entry: JsonDict = {"vr": name}
                self.bulk.append((entry, tag))
                out[key] = entry
                if top and tag == _EXTENDED_OFFSET_TABLE:
                    if pos > size:
                        self.short()
                    self.extended_offset_table = data[start:pos]
                continue
            if pos > size:
                self.short()
            value = data[start:pos]
            if tag == _SPECIFIC_CHARACTER_SET:
                codec = encoding_codec(value)
            elif top and tag == _EXTENDED_OFFSET_TABLE:
                self.extended_offset_table = value
            try:
                out[key] = element_json(tag, name, value, codec, _no_uri, self.threshold)
            except Fallback:
                raise Unreadable from None
        if end >= 0 and pos != end:
            raise Unreadable
        return out, pos

    def sequence(self, pos: int, length: int, codec: str | None) -> tuple[list[JsonDict], int]:
        """The items of a sequence whose value starts at ``pos`` (PS3.5 7.5)."""
        data = self.data
        end = -1 if length == _UNDEFINED else pos + length
        if end > self.file_size:
            raise Unreadable
        items: list[JsonDict] = []
        while end < 0 or pos < end:
            if pos + 8 > self.file_size:
                raise Unreadable
            if pos + 8 > len(data):
                self.short()
            group, element, item_length = _TAG_LENGTH.unpack_from(data, pos)
            tag = group << 16 | element
            if tag == _SEQUENCE_END and end < 0:
                return items, pos + 8
            if tag != _ITEM:
                raise Unreadable
            item_end = -1 if item_length == _UNDEFINED else pos + 8 + item_length
            if item_end > self.file_size or (end >= 0 and item_end > end):
                raise Unreadable
            item, pos = self.dataset(pos + 8, item_end, top=False, codec=codec)
            items.append(item)
        if pos != end:
            raise Unreadable
        return items, pos


_BINARY = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
