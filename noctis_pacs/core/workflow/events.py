"""Workflow event kinds: what SSE streams and webhooks announce.

Payloads carry identifiers and states only (item id, Study Instance UID,
accession number, statuses, counts) -- never patient attributes.
"""

from __future__ import annotations

STUDY_RECEIVED = "study.received"
STUDY_STABLE = "study.stable"
WORKLIST_CREATED = "worklist.created"
WORKLIST_CHANGED = "worklist.changed"
MPPS_CHANGED = "mpps.changed"
KINDS = (STUDY_RECEIVED, STUDY_STABLE, WORKLIST_CREATED, WORKLIST_CHANGED, MPPS_CHANGED)

#: Header carrying the delivery id on every webhook POST (one id per event and URL).
DELIVERY_HEADER = "Noctis-Delivery-Id"
EVENT_HEADER = "Noctis-Event"
