"""Header parsing at ingest: once, without touching pixel data.

From one ``stop_before_pixels`` read we take the index attributes, the DICOM
JSON metadata (PS3.18 F.2, bulk data replaced by BulkDataURI placeholders)
and the byte ranges of each frame of Pixel Data (PS3.5 A.4 for encapsulated
data), so that WADO-RS metadata and frame requests never re-parse a file.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

from noctis_pacs.core.uids import describe_uid_problem
from storage.dicomjson import dataset_json
from storage.rawheader import NeedMore, RawHeader, Unreadable, read_raw_header

#: Placeholder for the public base URL inside stored metadata; replaced per request.
BASE_URL_PLACEHOLDER = "@@NOCTIS_BASE@@"
BULK_DATA_THRESHOLD = 1024
PIXEL_DATA_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_REQUIRED_KEYS = dict(
    zip(REQUIRED_UIDS, ("00080016", "00080018", "0020000D", "0020000E"), strict=True)
)

#: A frame is a list of (offset, length) byte ranges in the file (fragments, in order).
FrameRanges = list[list[tuple[int, int]]]
#: The first read of a file for its header; most headers end well inside it.
FIRST_READ = 64 * 1024


class ParseError(ValueError):
    """The bytes are not a usable DICOM instance; ``reason`` says why for the caller."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass
class ParsedInstance:
    """A header read: by ``storage.rawheader`` (``raw``) or, for the files it leaves, by
    pydicom (``ds``)."""

    ds: Dataset | None
    raw: RawHeader | None
    transfer_syntax_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    study_uid: str
    series_uid: str
    frames: FrameRanges | None
    pixel_vr: str | None
    warnings: list[str]


def normalise_pn(value: str) -> str:
    """Case- and accent-folded PN, trailing empty components removed (for matching)."""
    if value.isascii():  # nothing to decompose, no combining mark
        stripped = value
    else:
        decomposed = unicodedata.normalize("NFKD", value)
        stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    groups = [g.rstrip("^ ") for g in stripped.casefold().split("=")]
    return "=".join(groups).rstrip("=")


def pn_words(value: str) -> str:
    """Space-delimited words of a normalised PN, padded for word-prefix (fuzzy) LIKE."""
    words = normalise_pn(value).replace("^", " ").replace("=", " ").split()
    return " " + " ".join(words) + " " if words else ""


def read_header(fp: BinaryIO, size: int, data: bytes | None = None) -> ParsedInstance:
    """Parse the Part 10 file open in ``fp`` (positioned at its start) up to Pixel Data;
    ``data`` is the whole file when the caller holds it already.

    Raises ``ParseError`` with kind ``not_dicom``, ``truncated``, ``missing`` or
    ``invalid_uid``.
    """
    raw = _read_raw(fp, size, data)
    if raw is not None:
        parsed = _from_raw(raw, fp, size)
        if parsed is not None:
            return parsed
    fp.seek(0)
    return _read_with_pydicom(fp, size)


#: Bytes of a Part 10 file enough to find its SOP Class and Instance UIDs (they come early).
IDENTITY_HEAD = 64 * 1024


def sop_identity(head: bytes) -> tuple[str, str]:
    """(SOP Class UID, SOP Instance UID) from the first bytes of a Part 10 file, each ``""``
    when not found: what a refusal that never parsed the instance (storage full) can
    still name (PS3.18 Table 10.5.3-3 wants them in a FailedSOPSequence item when known).
    The data set's values win; the File Meta's Media Storage UIDs stand in for them."""
    from pydicom.filereader import read_partial

    def after_sop_instance(tag: Any, vr: Any, length: Any) -> bool:
        return int(tag) > 0x00080018

    found = ["", ""]
    try:
        ds = read_partial(io.BytesIO(head), after_sop_instance)
        meta = getattr(ds, "file_meta", None)
        for index, (keyword, media) in enumerate(
            (
                ("SOPClassUID", "MediaStorageSOPClassUID"),
                ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
            )
        ):
            value = ds.get(keyword) or (meta.get(media) if meta is not None else None)
            found[index] = str(value or "").strip("\x00 ")
    except Exception:  # noqa: BLE001 - a head that does not parse names nothing
        pass
    return found[0], found[1]


def _read_raw(fp: BinaryIO, size: int, data: bytes | None) -> RawHeader | None:
    """The raw reader's header, reading more of the file while the header runs on."""
    buffer = data if data is not None else fp.read(min(size, FIRST_READ))
    while True:
        try:
            return read_raw_header(buffer, size, BULK_DATA_THRESHOLD)
        except Unreadable:
            return None
        except NeedMore:
            more = fp.read(len(buffer)) if data is None else b""
            if not more:
                return None
            buffer += more


def _from_raw(raw: RawHeader, fp: BinaryIO, size: int) -> ParsedInstance | None:
    data = raw.dataset
    values: dict[str, str] = {}
    for keyword, key in _REQUIRED_KEYS.items():
        element = data.get(key)
        found = element.get("Value", []) if element else []
        if len(found) != 1 or not isinstance(found[0], str) or not found[0].strip("\x00 "):
            # Missing, empty or multi-valued: pydicom reads the file again and says
            # what is wrong (a header the raw walk misread never gets refused here).
            return None
        values[keyword] = found[0].strip("\x00 ")
    image = _image(
        lambda keyword, default: _json_int(data, _IMAGE_TAGS[keyword], default),
        _json_text(data, "00280004"),
        raw.extended_offset_table,
    )
    return _parsed(
        None, raw, raw.transfer_syntax_uid, raw.media_sop_instance_uid, values, fp, size,
        raw.header_end, image,
    )  # fmt: skip


def _read_with_pydicom(fp: BinaryIO, size: int) -> ParsedInstance:
    try:
        ds = dcmread(fp, stop_before_pixels=True, force=False)
    except InvalidDicomError as exc:
        raise ParseError("not_dicom", f"not a DICOM Part 10 file: {exc}") from None
    except (EOFError, struct.error) as exc:
        raise ParseError("truncated", f"truncated DICOM header: {exc}") from None
    except Exception as exc:  # pydicom raises many types on garbage
        raise ParseError("not_dicom", f"unreadable DICOM header: {exc}") from None
    header_end = fp.tell()
    meta = ds.file_meta
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    values: dict[str, str] = {}
    for keyword in REQUIRED_UIDS:
        try:
            value = str(ds.get(keyword, "") or "").strip("\x00 ")
        except Exception:
            value = ""
        values[keyword] = value
    eot = ds.get("ExtendedOffsetTable")
    image = _image(
        lambda keyword, default: _int(ds, keyword, default),
        str(ds.get("PhotometricInterpretation", "")),
        bytes(eot) if eot is not None else None,
    )
    media_sop = str(getattr(meta, "MediaStorageSOPInstanceUID", "") or "")
    return _parsed(ds, None, ts, media_sop, values, fp, size, header_end, image)


def _parsed(
    ds: Dataset | None,
    raw: RawHeader | None,
    ts: str,
    media_sop: str,
    values: dict[str, str],
    fp: BinaryIO,
    size: int,
    header_end: int,
    image: _Image,
) -> ParsedInstance:
    """The checks and the frame index common to both readers."""
    if not ts:
        raise ParseError(
            "not_dicom", "file meta information has no Transfer Syntax UID (0002,0010)"
        )
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise ParseError("missing", f"missing required attribute(s): {', '.join(missing)}")
    for keyword in REQUIRED_UIDS:
        # The read side's rule (PS3.5 9.1, leniently): never acknowledge an instance
        # whose UIDs no DICOMweb URL or query could name again (issue 14).
        problem = describe_uid_problem(keyword, values[keyword])
        if problem is not None:
            raise ParseError("invalid_uid", problem)
    warnings = []
    if media_sop and media_sop != values["SOPInstanceUID"]:
        # Stored as received (PS3.10 7.1 makes them equal, but real files differ): warn.
        warnings.append(
            "Media Storage SOP Instance UID (0002,0003) differs from SOP Instance UID (0008,0018)"
        )
    frames, pixel_vr = (None, None)
    if ts != DeflatedExplicitVRLittleEndian:
        frames, pixel_vr = _frame_ranges(fp, header_end, size, image, _syntax(ts))
    return ParsedInstance(
        ds=ds,
        raw=raw,
        transfer_syntax_uid=ts,
        sop_class_uid=values["SOPClassUID"],
        sop_instance_uid=values["SOPInstanceUID"],
        study_uid=values["StudyInstanceUID"],
        series_uid=values["SeriesInstanceUID"],
        frames=frames,
        pixel_vr=pixel_vr,
        warnings=warnings,
    )


@functools.lru_cache(maxsize=64)  # bounded: the syntax comes from the sender
def _syntax(ts: str) -> UID:
    """The file's Transfer Syntax UID, refused when pydicom does not know it as one (its
    encoding, and so where Pixel Data lies, would be a guess)."""
    uid = UID(ts)
    if not uid.is_transfer_syntax:
        raise ParseError(
            "not_dicom",
            f"the Transfer Syntax UID (0002,0010) {scrub_text(ts)!r} is not a known transfer syntax",
        )
    return uid


def scrub_text(text: str) -> str:
    """``text`` with control characters shown as ``?`` (it goes into messages)."""
    return "".join(c if c.isprintable() else "?" for c in text)[:80]


@dataclass(frozen=True)
class _Image:
    """The attributes that say how Pixel Data divides into frames."""

    frames: int
    rows: int
    columns: int
    samples: int
    bits: int
    photometric: str
    extended_offset_table: bytes | None


#: The integer attributes that divide Pixel Data into frames, by keyword, with their tags.
_IMAGE_TAGS = {
    "NumberOfFrames": "00280008",
    "Rows": "00280010",
    "Columns": "00280011",
    "SamplesPerPixel": "00280002",
    "BitsAllocated": "00280100",
}


def _image(
    number: Callable[[str, int], int], photometric: str, extended_offset_table: bytes | None
) -> _Image:
    """The frame layout from ``number(keyword, default)``, whichever reader read it."""
    return _Image(
        frames=max(1, number("NumberOfFrames", 1)),
        rows=number("Rows", 0),
        columns=number("Columns", 0),
        samples=number("SamplesPerPixel", 1),
        bits=number("BitsAllocated", 16),
        photometric=photometric,
        extended_offset_table=extended_offset_table,
    )


def _json_int(data: dict[str, Any], key: str, default: int) -> int:
    element = data.get(key)
    found = element.get("Value") if element else None
    if not found or len(found) != 1 or not isinstance(found[0], int | float):
        return default
    return int(found[0])


def _json_text(data: dict[str, Any], key: str) -> str:
    element = data.get(key)
    found = element.get("Value") if element else None
    return str(found[0]) if found and len(found) == 1 else ""


def _int(ds: Dataset, keyword: str, default: int) -> int:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _frame_ranges(
    fp: BinaryIO, start: int, size: int, image: _Image, ts: UID
) -> tuple[FrameRanges | None, str | None]:
    """Locate Pixel Data at ``start`` and return each frame's byte ranges."""
    fp.seek(start)
    little = ts != ExplicitVRBigEndian
    endian = "<" if little else ">"
    head = fp.read(8)
    if len(head) < 8:
        return None, None
    group, element = struct.unpack(endian + "HH", head[:4])
    tag = (group << 16) | element
    if tag != 0x7FE00010:
        return None, None
    vr_bytes = head[4:6]
    implicit = ts.is_implicit_VR or not (vr_bytes.isalpha() and vr_bytes.isupper())
    if implicit:  # also files whose dataset is implicit despite their meta (pydicom reads them)
        (length,) = struct.unpack(endian + "I", head[4:8])
        value_start = start + 8
        vr = "OW"
    else:
        vr = vr_bytes.decode("ascii")
        if vr in ("OB", "OW", "OF", "OD", "OL", "UN", "OV"):
            more = fp.read(4)
            if len(more) < 4:
                raise ParseError("truncated", "truncated Pixel Data element header")
            (length,) = struct.unpack(endian + "I", more)
            value_start = start + 12
        else:
            (length,) = struct.unpack(endian + "H", head[6:8])
            value_start = start + 8
    frames_n = image.frames
    if length != 0xFFFFFFFF:
        if value_start + length > size:
            raise ParseError("truncated", "Pixel Data runs past the end of the file")
        per_frame_bits = image.rows * image.columns * image.samples * image.bits
        if image.photometric == "YBR_FULL_422":
            per_frame_bits = per_frame_bits * 2 // 3  # PS3.3 C.7.6.3.1.2: 2 samples per pixel pair
        if per_frame_bits == 0 or per_frame_bits % 8:
            return [[(value_start, length)]] if frames_n == 1 else None, vr
        per_frame = per_frame_bits // 8
        if per_frame * frames_n > length:
            raise ParseError("truncated", "Pixel Data is shorter than Rows x Columns x frames")
        return [[(value_start + i * per_frame, per_frame)] for i in range(frames_n)], vr
    return _encapsulated_ranges(fp, value_start, size, frames_n, image, endian), "OB"


def _encapsulated_ranges(
    fp: BinaryIO, pos: int, size: int, frames_n: int, image: _Image, endian: str
) -> FrameRanges:
    fp.seek(pos)
    items: list[tuple[int, int]] = []  # (value offset, length), first is the Basic Offset Table
    bot = b""
    while True:
        head = fp.read(8)
        if len(head) < 8:
            raise ParseError("truncated", "encapsulated Pixel Data ends without a delimiter")
        group, element, length = struct.unpack(endian + "HHI", head)
        value_at = pos + 8
        if (group, element) == (0xFFFE, 0xE0DD):
            break
        if (group, element) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            raise ParseError("not_dicom", "malformed item in encapsulated Pixel Data")
        if value_at + length > size:
            raise ParseError("truncated", "encapsulated Pixel Data fragment past end of file")
        items.append((value_at, length))
        pos = value_at + length
        fp.seek(pos)
    if not items:
        raise ParseError("not_dicom", "encapsulated Pixel Data without a Basic Offset Table item")
    bot_at, bot_len = items[0]
    fragments = items[1:]
    if bot_len:
        fp.seek(bot_at)
        bot = fp.read(bot_len)
    if frames_n == 1:
        return [fragments]
    if bot and len(bot) // 4 == frames_n:
        offsets = list(struct.unpack(f"{endian}{frames_n}I", bot))
        return _group_by_offsets(fragments, offsets)
    eot = image.extended_offset_table
    if eot is not None and len(eot) // 8 == frames_n:
        offsets = list(struct.unpack(f"<{frames_n}Q", eot[: frames_n * 8]))
        return _group_by_offsets(fragments, offsets)
    if len(fragments) == frames_n:
        return [[f] for f in fragments]
    # No table: a frame starts at a fragment opening with a JPEG SOI or J2K SOC marker.
    frames: FrameRanges = []
    for offset, length in fragments:
        fp.seek(offset)
        marker = fp.read(2)
        if not frames or marker in (b"\xff\xd8", b"\xff\x4f"):
            frames.append([(offset, length)])
        else:
            frames[-1].append((offset, length))
    if len(frames) != frames_n:
        return frames[:frames_n] if len(frames) > frames_n else frames
    return frames


def _group_by_offsets(fragments: list[tuple[int, int]], offsets: list[int]) -> FrameRanges:
    """Group fragments by Basic / Extended Offset Table offsets (from the first fragment item)."""
    frames: FrameRanges = [[] for _ in offsets]
    if not fragments:
        return frames
    first_item = fragments[0][0] - 8
    index = 0
    for offset, length in fragments:
        relative = offset - 8 - first_item
        while index + 1 < len(offsets) and relative >= offsets[index + 1]:
            index += 1
        frames[index].append((offset, length))
    return frames


def header_metadata(parsed: ParsedInstance) -> dict[str, Any]:
    """DICOM JSON (PS3.18 F.2) of the header, bulk data as BulkDataURI placeholders,
    plus Pixel Data's BulkDataURI and Available Transfer Syntax UID (0008,3002)."""
    base = (
        f"{BASE_URL_PLACEHOLDER}/studies/{parsed.study_uid}/series/{parsed.series_uid}"
        f"/instances/{parsed.sop_instance_uid}"
    )

    def bulk(tag: int) -> str:
        return f"{base}/bulk/{tag:08X}"

    if parsed.raw is not None:
        data = parsed.raw.dataset_json(bulk)
    else:
        assert parsed.ds is not None
        data = dataset_json(parsed.ds, bulk, threshold=BULK_DATA_THRESHOLD)
    if parsed.pixel_vr is not None:
        data["7FE00010"] = {"vr": parsed.pixel_vr, "BulkDataURI": bulk(0x7FE00010)}
    data["00083002"] = {"vr": "UI", "Value": [parsed.transfer_syntax_uid]}
    return data


def to_json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
