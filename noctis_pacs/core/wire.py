"""Facts of the DICOM encoding shared by the header reader (storage) and the DIMSE
encoder (dimse), so neither package reaches into the other for them."""

from __future__ import annotations

#: PS3.5 Table 7.1-1: explicit VRs with a reserved field and a 32-bit length.
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
