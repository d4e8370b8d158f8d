"""Query/Retrieve C-FIND SCP (PS3.4 C.4.1), Patient Root and Study Root.

Requests compile to the archive's one query engine (``Archive.query``); results
stream back page by page so a large answer is never held whole, and a C-CANCEL
is honoured between responses (PS3.4 C.4.1.3.2, status FE00).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from dimse import audit
from dimse import status as st
from dimse.access import QUERY, AccessPolicy, calling_ae_of
from dimse.identifier import (
    MODELS,
    IdentifierError,
    parse_identifier,
    response_identifier,
)
from dimse.observe import Operation, bind_context, log_failure, paced
from dimse.store import status_dataset
from noctis_pacs.core.audit import AuditAction
from noctis_pacs.core.auth import Principal
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.model import InvalidMatchValue, Query
from noctis_pacs.core.settings import Settings
from storage.archive import Archive, QueryError

log = logging.getLogger("noctis.dimse.find")

#: PS3.4 C.4.1.1.4: pending, one or more optional keys not supported for matching.
PENDING_UNSUPPORTED_KEYS = 0xFF01

FindResponse = tuple[int | Dataset, Dataset | None]


def _pages(
    archive: Archive, query: Query, page: int, principal: Principal
) -> Iterator[dict[str, object]]:
    offset = 0
    while True:
        paged = Query(
            level=query.level,
            matches=query.matches,
            case_insensitive_pn=query.case_insensitive_pn,
            limit=page,
            offset=offset,
        )
        rows = archive.query(paged, principal=principal).rows
        yield from rows
        if len(rows) < page:
            return
        offset += page


def handle_find(
    event: Event, archive: Archive, policy: AccessPolicy, metrics: Metrics, settings: Settings
) -> Iterator[FindResponse]:
    """EVT_C_FIND: yields (pending, identifier) pairs then the final status."""
    bind_context(event)
    operation = Operation(metrics, "C-FIND")
    final: int = st.SUCCESS
    count = 0
    try:
        if not policy.allows(calling_ae_of(event.assoc), QUERY):
            final = st.REFUSED_NOT_AUTHORIZED
            log_failure("C-FIND", final, "query not permitted for this AE")
            yield status_dataset(final, "query not permitted for this AE"), None
            return
        identifier = event.identifier
        model = MODELS.get(str(event.request.AffectedSOPClassUID), "study")
        try:
            parsed = parse_identifier(
                identifier, model, case_insensitive_pn=settings.query.case_insensitive_pn
            )
        except IdentifierError as exc:
            final = st.QR_IDENTIFIER_MISMATCH
            log_failure("C-FIND", final, str(exc))
            yield status_dataset(final, str(exc)), None
            return
        except InvalidMatchValue as exc:  # PS3.4 C.4.1.1.4: unable to process, the reason
            final = st.QR_UNABLE_TO_PROCESS
            log_failure("C-FIND", final, str(exc))
            yield status_dataset(final, str(exc)), None
            return
        pending = PENDING_UNSUPPORTED_KEYS if parsed.unsupported else st.PENDING
        syntax = str(event.context.transfer_syntax)
        try:
            principal = policy.principal(calling_ae_of(event.assoc))
            for row in _pages(archive, parsed.query, settings.query.max_results, principal):
                paced(event)
                if event.is_cancelled:
                    final = st.CANCEL
                    yield final, None
                    return
                count += 1
                yield (
                    pending,
                    response_identifier(
                        identifier,
                        parsed.level,
                        row,
                        ae_title=settings.dimse.ae_title,
                        transfer_syntax=syntax,
                    ),
                )
        except QueryError as exc:
            final = st.QR_UNABLE_TO_PROCESS
            log_failure("C-FIND", final, str(exc))
            yield status_dataset(final, str(exc)), None
            return
        log.info("C-FIND %s level: %d match(es)", parsed.level.name, count)
        final = st.SUCCESS
        yield final, None
    except Exception:
        log.exception("C-FIND failed")
        final = st.QR_OUT_OF_RESOURCES
        yield status_dataset(final, "query failed"), None
    finally:
        operation.done(final)
        request_identifier = audit.identifier_of(event)
        audit.record(
            archive,
            event.assoc,
            AuditAction.C_FIND,
            final,
            study_uids=audit.identifier_studies(request_identifier),
            query=audit.query_keys(request_identifier),
            detail=f"{count} match(es)",
        )
