"""Modality Worklist C-FIND SCP (PS3.4 Annex K) and the workflow services' registration.

The identifier compiles to a ``WorklistQuery`` (the PS3.4 C.2.2.2 matching
types of Q/R) and runs on ``storage.worklist``; each matching Scheduled
Procedure Step is one pending response (K.6.1.2: one per step), with the
requested keys only and type 1/2 keys present even when empty.  C-CANCEL is
honoured between responses (PS3.4 K.4.1.3.2, status FE00).

``register_workflow`` adds MWL and MPPS to the AE's services: the MWL route
for the shared C-FIND dispatcher, the MPPS N-CREATE / N-SET bindings and
their presentation contexts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from dimse import audit
from dimse import status as st
from dimse.access import QUERY, STORE, AccessPolicy, calling_ae_of
from dimse.observe import Operation, bind_context, log_failure, paced
from dimse.store import status_dataset
from noctis_pacs.core.audit import AuditAction
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.model import InvalidMatchValue
from noctis_pacs.core.settings import Settings
from noctis_pacs.core.workflow.items import mwl_dataset
from noctis_pacs.core.workflow.mwl import query_from_identifier, response
from storage.archive import Archive, QueryError, WorklistStore

if TYPE_CHECKING:
    from dimse.services import Services

log = logging.getLogger("noctis.dimse.worklist")

#: Modality Worklist Information Model - FIND (PS3.4 K.6.1.1.2).
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
#: Modality Performed Procedure Step SOP Class (PS3.4 F.7.1).
MODALITY_PERFORMED_PROCEDURE_STEP = "1.2.840.10008.3.1.2.3.3"

# Basic Worklist Management C-FIND statuses, PS3.4 K.4.1.1.4.
MWL_PENDING = 0xFF00
MWL_PENDING_UNSUPPORTED_KEYS = 0xFF01
MWL_CANCEL = 0xFE00
MWL_OUT_OF_RESOURCES = 0xA700
MWL_IDENTIFIER_MISMATCH = 0xA900
MWL_UNABLE_TO_PROCESS = 0xC000

FindResponse = tuple[int | Dataset, Dataset | None]


def handle_worklist_find(
    event: Event,
    store: WorklistStore,
    policy: AccessPolicy,
    metrics: Metrics,
    settings: Settings,
    archive: Archive,
) -> Iterator[FindResponse]:
    """EVT_C_FIND on the Modality Worklist model: one pending response per matching step."""
    bind_context(event)
    operation = Operation(metrics, "MWL C-FIND")
    final = st.SUCCESS
    count = 0
    try:
        if not policy.allows(calling_ae_of(event.assoc), QUERY):
            final = st.REFUSED_NOT_AUTHORIZED
            log_failure("MWL C-FIND", final, "worklist query not permitted for this AE")
            yield status_dataset(final, "worklist query not permitted for this AE"), None
            return
        try:
            identifier = event.identifier
            query = query_from_identifier(
                identifier,
                include_in_progress=settings.workflow.worklist_include_in_progress,
                case_insensitive_pn=settings.query.case_insensitive_pn,
            )
        except InvalidMatchValue as exc:  # PS3.5 6.2 / PS3.4 C.2.2.2.5: the reason
            final = MWL_UNABLE_TO_PROCESS
            log_failure("MWL C-FIND", final, str(exc))
            yield status_dataset(final, str(exc)), None
            return
        except Exception as exc:  # noqa: BLE001 - an undecodable identifier
            final = MWL_IDENTIFIER_MISMATCH
            reason = f"identifier not understood: {type(exc).__name__}"
            log_failure("MWL C-FIND", final, reason)
            yield status_dataset(final, reason), None
            return
        try:
            scope = policy.principal(calling_ae_of(event.assoc)).facilities
            for stored, step in store.find_steps(replace(query, facilities=scope)):
                paced(event)
                if event.is_cancelled:
                    final = MWL_CANCEL
                    yield final, None
                    return
                count += 1
                yield MWL_PENDING, response(identifier, mwl_dataset(stored.item, step))
        except QueryError as exc:
            final = MWL_UNABLE_TO_PROCESS
            log_failure("MWL C-FIND", final, str(exc))
            yield status_dataset(final, str(exc)), None
            return
        log.info("MWL C-FIND: %d matching step(s)", count)
        yield final, None
    except Exception:
        log.exception("MWL C-FIND failed")
        final = MWL_OUT_OF_RESOURCES
        yield status_dataset(final, "worklist query failed"), None
    finally:
        operation.done(final)
        request_identifier = audit.identifier_of(event)
        audit.record(
            archive,
            event.assoc,
            AuditAction.MWL,
            final,
            study_uids=audit.identifier_studies(request_identifier),
            query=audit.query_keys(request_identifier),
            detail=f"{count} step(s)",
        )


def register_workflow(
    services: Services,
    *,
    settings: Settings,
    archive: Archive,
    metrics: Metrics,
    policy: AccessPolicy,
) -> None:
    """Add MWL (C-FIND route) and MPPS (N-CREATE / N-SET) to the AE's services."""
    from dimse.mpps_scp import handle_n_create, handle_n_set
    from dimse.services import QR_SYNTAXES, Context

    store, mpps = archive.worklist, archive.mpps
    services.contexts.append(Context(MODALITY_WORKLIST_FIND, QR_SYNTAXES, QUERY))
    services.contexts.append(Context(MODALITY_PERFORMED_PROCEDURE_STEP, QR_SYNTAXES, STORE))
    services.find_routes[MODALITY_WORKLIST_FIND] = (
        handle_worklist_find,
        [store, policy, metrics, settings, archive],
    )
    from pynetdicom import evt

    services.bindings += [
        (evt.EVT_N_CREATE, handle_n_create, [mpps, policy, metrics, archive]),
        (evt.EVT_N_SET, handle_n_set, [mpps, policy, metrics, archive]),
    ]
