"""DIMSE status codes used by the services, named once with their source.

PS3.7 Annex C gives the general statuses; PS3.4 gives each service's own
(B.2.3 storage, C.4.1.1.4 find, C.4.2.1.5 move, C.4.3.1.4 get).
"""

from __future__ import annotations

import functools
from typing import Final

#: PS3.7 C.1.1 Success.
SUCCESS: Final = 0x0000
#: PS3.7 C.1.2 Pending (C-FIND matches, C-MOVE/C-GET sub-operations).
PENDING: Final = 0xFF00
#: PS3.7 C.3.1 / PS3.4 C.4.1.1.4: matching or sub-operations terminated by C-CANCEL.
CANCEL: Final = 0xFE00
#: PS3.7 C.5.x (general, 0124H): the calling AE has no permission for this service.
REFUSED_NOT_AUTHORIZED: Final = 0x0124

# --- Storage, PS3.4 B.2.3 ---------------------------------------------------------
#: Refused: Out of Resources (A7xx) — the disk is below the free-space guard.
STORE_OUT_OF_RESOURCES: Final = 0xA700
#: Refused: Out of Resources (A7xx) — the archive could not commit (index or I/O error);
#: retrying later may succeed.
STORE_OUT_OF_RESOURCES_INTERNAL: Final = 0xA701
#: Error: Data Set does not match SOP Class (A9xx) — required attribute missing or the
#: data set's SOP Class UID differs from the request's Affected SOP Class UID.
STORE_DATASET_MISMATCH: Final = 0xA900
#: Error: Cannot understand (Cxxx) — not a decodable data set.
STORE_CANNOT_UNDERSTAND: Final = 0xC000
#: Error: Cannot understand (Cxxx) — the data set ended before its header did.
STORE_TRUNCATED: Final = 0xC001
#: Error: Cannot understand (Cxxx) — the data set's SOP Instance UID differs from the
#: request's Affected SOP Instance UID (PS3.7 9.1.1.1 makes them the same instance).
STORE_INSTANCE_UID_MISMATCH: Final = 0xC002
#: Warning: Coercion of Data Elements (B000).
STORE_WARNING_COERCION: Final = 0xB000
#: Error: Cannot understand (Cxxx) — pynetdicom's status for a C-STORE whose handler
#: raised; Noctis's own C-STORE paths answer a store that raised with it too.
STORE_HANDLER_FAILED: Final = 0xC211
#: PS3.7 C.5.x (0122H): Refused: SOP Class not supported (a C-ECHO-RQ or C-STORE-RQ
#: naming a class its association does not serve).
SOP_CLASS_NOT_SUPPORTED: Final = 0x0122

# --- Query/Retrieve, PS3.4 C.4.1.1.4 / C.4.2.1.5 / C.4.3.1.4 --------------------------
#: Refused: Out of Resources (A700) — the query could not run.
QR_OUT_OF_RESOURCES: Final = 0xA700
#: Refused: Out of Resources — unable to calculate number of matches (C-MOVE/C-GET A701).
QR_UNABLE_TO_CALCULATE: Final = 0xA701
#: Refused: Out of Resources — unable to perform sub-operations (A702).
QR_UNABLE_TO_PERFORM_SUBOPS: Final = 0xA702
#: Refused: Move Destination unknown (A801).
MOVE_DESTINATION_UNKNOWN: Final = 0xA801
#: Error: Data Set does not match SOP Class (A900) — e.g. a bad Query/Retrieve Level.
QR_IDENTIFIER_MISMATCH: Final = 0xA900
#: Failed: Unable to process (Cxxx) — a key could not be matched as given.
QR_UNABLE_TO_PROCESS: Final = 0xC000
#: Warning: sub-operations complete, one or more failures (B000).
QR_WARNING_SUBOPS_FAILED: Final = 0xB000

#: PS3.7 C.11.2 Error Comment is LO: at most 64 characters.
ERROR_COMMENT_MAX = 64


@functools.lru_cache(maxsize=1024)  # statuses are 16-bit; a few dozen occur
def operation_status_label(status: int) -> str:
    """The metrics label of a status: four upper-case hex digits."""
    return f"0x{status:04X}"
