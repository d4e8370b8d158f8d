"""DICOM JSON (PS3.18 F.2) straight from the raw elements of a header read.

pydicom's ``Dataset.to_json_dict`` first converts every raw element into a
typed value and then back into JSON; at ingest that conversion is the largest
CPU cost per instance.  This writer decodes each raw element's bytes directly
into its JSON form for the common cases and hands anything unusual (implicit
VR without a dictionary entry, ambiguous VRs, big endian, character sets other
than the default, Latin-1 and UTF-8, values pydicom would reinterpret) to
pydicom, element by element, so the output is the same as pydicom's
(``tests/test_storage_dicomjson.py`` compares them on every bundled file).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

JsonDict = dict[str, Any]
BulkHandler = Callable[[int], str]

#: PS3.5 6.2: VRs whose value is one string (backslash is an ordinary character).
_SINGLE_TEXT = frozenset({"LT", "ST", "UT", "UR"})
#: Text VRs decoded with the Specific Character Set (PS3.5 6.1.2.3).
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "PN", "UC"})
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBERS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
#: Specific Character Set values whose text decodes with one Python codec.
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_SPECIFIC_CHARACTER_SET = 0x00080005


class Fallback(ValueError):
    """This element is left to pydicom."""


def _codec(ds: Dataset, inherited: str | None) -> str | None:
    if _SPECIFIC_CHARACTER_SET not in ds:
        return inherited
    raw = ds.get_item(_SPECIFIC_CHARACTER_SET)
    return encoding_codec(raw.value if raw is not None else None)


def encoding_codec(value: object) -> str | None:
    """The Python codec for a Specific Character Set (0008,0005) value, raw or read;
    ``None`` where pydicom must decode (code extensions, other character sets)."""
    if isinstance(value, bytes):
        text = value.decode("ascii", "replace").strip(" \x00")
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None  # multi-valued (code extensions): pydicom decodes those
    return _CODECS.get(text)


def _decode(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        raise Fallback from None


def _strings(vr: str, data: bytes, codec: str | None) -> list[str]:
    if vr in _CHARSET_VRS:
        if codec is None:
            raise Fallback
        text = _decode(data, codec)
    else:
        text = data.decode("latin-1")
    if vr in _SINGLE_TEXT:
        return [text.rstrip(" \x00")]
    if vr in ("SH", "LO", "UC"):
        return [item.rstrip(" \x00") for item in text.split("\\")]
    if vr == "AE":
        return [item.strip() for item in text.rstrip(" \x00").split("\\")]
    return text.rstrip(" \x00").split("\\")


def element_json(
    tag: int, vr: str, data: bytes, codec: str | None, bulk: BulkHandler, threshold: int
) -> JsonDict:
    """The JSON of one little endian element value; ``Fallback`` where pydicom decides.

    Text that does not decode in ``codec`` is left to pydicom too (it replaces what it
    cannot decode and warns).
    """
    out: JsonDict = {"vr": vr}
    if vr in _BINARY_VRS:
        if data:
            if len(data) > (threshold // 4) * 3:
                out["BulkDataURI"] = bulk(tag)
            else:
                out["InlineBinary"] = base64.b64encode(data).decode("ascii")
        return out
    if not data:
        return out
    code = _NUMBERS.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        if len(data) % size:
            raise Fallback
        out["Value"] = list(struct.unpack(f"<{len(data) // size}{code}", data))
        return out
    if vr == "AT":
        if len(data) % 4:
            raise Fallback
        words = struct.unpack(f"<{len(data) // 2}H", data)
        out["Value"] = [f"{words[i]:04X}{words[i + 1]:04X}" for i in range(0, len(words), 2)]
        return out
    if vr not in _ASCII_VRS and vr not in _CHARSET_VRS and vr not in ("DS", "IS"):
        raise Fallback
    if vr == "PN":
        text = data.rstrip(b"\x00 ")
        if codec is None:
            raise Fallback
        names = _decode(text, codec).split("\\")
        value: list[Any] = []
        for name in names:
            groups = name.split("=")
            entry = {"Alphabetic": groups[0]}
            if len(groups) > 1:
                entry["Ideographic"] = groups[1]
            if len(groups) > 2:
                entry["Phonetic"] = groups[2]
            value.append(entry)
        out["Value"] = value
        return out
    items = _strings(vr, data, codec)
    if items == [""]:
        return out
    if vr == "IS":
        try:
            out["Value"] = [int(item) for item in items]
        except ValueError:
            raise Fallback from None
        return out
    if vr == "DS":
        try:
            out["Value"] = [float(item) for item in items]
        except ValueError:
            raise Fallback from None
        return out
    out["Value"] = items
    return out


def dataset_json(
    ds: Dataset,
    bulk: BulkHandler,
    *,
    threshold: int = 1024,
    codec: str | None = "latin-1",
) -> JsonDict:
    """The DICOM JSON object of ``ds`` (no file meta); ``bulk(tag)`` names bulk data URIs."""
    codec = _codec(ds, codec)
    out: JsonDict = {}
    for tag in ds.keys():  # noqa: SIM118 - iterating ds would convert every element
        item = ds.get_item(tag)
        key = f"{int(tag):08X}"
        try:
            if not isinstance(item, RawDataElement):
                raise Fallback
            vr = item.VR
            if vr is None:
                try:
                    vr = str(dictionary_VR(tag))
                except KeyError:
                    raise Fallback from None
            if vr == "SQ":
                items = item.value
                if not isinstance(items, list):
                    raise Fallback
                out[key] = {
                    "vr": "SQ",
                    "Value": [
                        dataset_json(i, bulk, threshold=threshold, codec=codec) for i in items
                    ],
                }
                continue
            if " " in vr or vr == "UN":
                # Ambiguous ("US or SS", "OB or OW") or UN that pydicom replaces with the
                # dictionary's VR: pydicom resolves them.
                raise Fallback
            data = item.value
            if not isinstance(data, bytes) or not item.is_little_endian:
                raise Fallback
            out[key] = element_json(int(tag), vr, data, codec, bulk, threshold)
        except Fallback:
            out[key] = _by_pydicom(ds, tag, bulk, threshold)
    return out


def _by_pydicom(ds: Dataset, tag: Any, bulk: BulkHandler, threshold: int) -> JsonDict:
    """pydicom's JSON for one element; a value it cannot read keeps only its VR."""
    try:
        element: DataElement = ds[tag]
        result: JsonDict = element.to_json_dict(
            bulk_data_element_handler=lambda e: bulk(int(e.tag)),
            bulk_data_threshold=threshold,
        )
        return result
    except Exception:
        raw = ds.get_item(tag)
        return {"vr": str(getattr(raw, "VR", None) or "UN")}
