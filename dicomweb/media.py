"""Wire constants of DICOMweb, named once, with the part of PS3.18 they come from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# -- Media types (PS3.18 8.7.3 and 8.7.4) ---------------------------------------------

DICOM: Final = "application/dicom"  # PS3.18 8.7.3.2
DICOM_JSON: Final = "application/dicom+json"  # PS3.18 8.7.3.1, Annex F
DICOM_XML: Final = "application/dicom+xml"
OCTET_STREAM: Final = "application/octet-stream"  # PS3.18 8.7.3.3 (bulk data, frames)
MULTIPART_RELATED: Final = "multipart/related"  # PS3.18 8.6.1.2.1 (RFC 2387)
JSON: Final = "application/json"

# -- Transfer syntaxes ----------------------------------------------------------------

EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
#: ``transfer-syntax=*``: as stored, no transcoding (PS3.18 8.7.3.5.2).
ANY_TRANSFER_SYNTAX: Final = "*"
NATIVE_SYNTAXES: Final = frozenset(
    {EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN}
)

#: Media type of one compressed frame per transfer syntax (PS3.18 Table 8.7.3-5).
FRAME_MEDIA_TYPES: Final[Mapping[str, str]] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}

# -- Store Instances response (PS3.18 10.5.3, PS3.4 Annex GG / B.2.3) -----------------

#: Failure Reason (0008,1197) values, PS3.18 Table 10.5.3-3.
FAILURE_OUT_OF_RESOURCES: Final = 0xA700
FAILURE_DATASET_MISMATCH: Final = 0xA900
FAILURE_CANNOT_UNDERSTAND: Final = 0xC000
FAILURE_PROCESSING: Final = 0x0110
#: Warning Reason (0008,1196) values, PS3.18 Table 10.5.3-4.
WARNING_COERCION: Final = 0xB000
WARNING_ELEMENTS_DISCARDED: Final = 0xB006
WARNING_DATASET_MISMATCH: Final = 0xB007

# -- Tags used in response datasets (PS3.18 Table 10.5.3-2, 10.6.3-3..5) --------------

TAG_SPECIFIC_CHARACTER_SET: Final = "00080005"
TAG_RETRIEVE_URL: Final = "00081190"
TAG_REQUEST_ATTRIBUTES_SEQUENCE: Final = "00400275"  # PS3.18 Table 10.6.3-4
TAG_FAILED_SOP_SEQUENCE: Final = "00081198"
TAG_REFERENCED_SOP_SEQUENCE: Final = "00081199"
TAG_REFERENCED_SOP_CLASS_UID: Final = "00081150"
TAG_REFERENCED_SOP_INSTANCE_UID: Final = "00081155"
TAG_FAILURE_REASON: Final = "00081197"
TAG_WARNING_REASON: Final = "00081196"
TAG_INSTANCE_AVAILABILITY: Final = "00080056"

# -- HTTP headers ---------------------------------------------------------------------

#: RFC 7234 5.5 warn-code used by PS3.18 8.4.3 for "Miscellaneous Persistent Warning".
WARNING_CODE: Final = 299
#: Beyond the standard: total number of QIDO-RS matches before limit/offset.
TOTAL_COUNT_HEADER: Final = "X-Total-Count"
DICOMWEB_ROOT: Final = "/dicom-web"
