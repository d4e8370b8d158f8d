"""The C-STORE sub-operations of one C-MOVE or C-GET, counted with each failure's reason.

pynetdicom runs the sub-operations and counts them for its responses; it keeps no
reason and tells the handler nothing. ``SubOperations.wrap`` wraps the association's
``send_c_store`` so that every result is seen here too: each failed sub-operation is
logged with its reason (the destination's status and Error Comment, the conversion
that failed, the association that was lost) and counted in
``noctis_dimse_suboperations``, and the operation ends with the status its final
response carries (PS3.4 C.4.2.1.5, C.4.3.1.4: ``A702`` when every sub-operation
failed, ``B000`` when some failed or warned), which is what ``/metrics`` counts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.association import Association

from dimse import status as st
from noctis_pacs.core.metrics import Metrics

log = logging.getLogger("noctis.dimse.retrieve")

#: Failure reasons kept for the final log line (the count is always exact).
MAX_REASONS = 5
#: Attribute of a data set that could not be prepared: the reason its send fails.
FAILURE_REASON = "noctis_failure_reason"


def mark_unsendable(ds: Dataset, reason: str) -> Dataset:
    """Tag ``ds`` (a stub whose send must fail) with the reason it cannot be sent."""
    object.__setattr__(ds, FAILURE_REASON, reason)
    return ds


def _category(code: int) -> str:
    """PS3.4 B.2.3 / PS3.7 C: success, warning (B000, B006, B007, 0001) or failure."""
    if code == st.SUCCESS:
        return "completed"
    if code == 0x0001 or code & 0xF000 == 0xB000:
        return "warning"
    return "failed"


@dataclass
class SubOperations:
    """Results of one operation's sub-operations (``operation``: C-MOVE or C-GET)."""

    operation: str
    metrics: Metrics
    completed: int = 0
    warning: int = 0
    failed: int = 0
    reasons: list[str] = field(default_factory=list)

    def wrap(self, send: Callable[..., Dataset]) -> Callable[..., Dataset]:
        """``send`` (an association's ``send_c_store``) with every result recorded; the
        wrapper keeps ``send``'s attributes (``dimse.fastpath.sender`` marks its own)."""

        @functools.wraps(send)
        def send_c_store(dataset: Any, *args: Any, **kwargs: Any) -> Dataset:
            prepared = getattr(dataset, FAILURE_REASON, None)
            try:
                rsp = send(dataset, *args, **kwargs)
            except Exception as exc:
                self.record_failure(dataset, prepared or f"{type(exc).__name__}: {exc}")
                raise
            code = rsp.get("Status") if isinstance(rsp, Dataset) else None
            if code is None:
                self.record_failure(
                    dataset, prepared or "no C-STORE response (association lost or aborted)"
                )
                return rsp
            outcome = _category(int(code))
            if outcome == "failed":
                comment = str(rsp.get("ErrorComment", "") or "").strip()
                reason = f"the destination answered 0x{int(code):04X}"
                self.record_failure(dataset, reason + (f" ({comment})" if comment else ""))
            else:
                self._count(outcome)
            return rsp

        return send_c_store

    def attach(self, assoc: Association) -> Callable[[], None]:
        """Record every sub-operation sent on ``assoc`` (its ``send_c_store`` wrapped, the
        one per-association swap the services make, public API); returns the function
        that puts the association's own method back."""
        own = vars(assoc).get("send_c_store")  # an instance attribute someone set, if any
        assoc.send_c_store = self.wrap(assoc.send_c_store)  # type: ignore[method-assign]

        def detach() -> None:
            if own is not None:
                assoc.send_c_store = own  # type: ignore[method-assign]
            else:
                vars(assoc).pop("send_c_store", None)

        return detach

    def record_failure(self, dataset: Any, reason: str) -> None:
        self._count("failed")
        reason = reason.splitlines()[0][:200] if reason else "unknown"
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)
        log.warning("%s sub-operation failed: %s", self.operation, reason)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s sub-operation failed for %s", self.operation, _sop_uid(dataset))

    def _count(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.metrics.dimse_suboperations.labels(operation=self.operation, outcome=outcome).inc()

    def final_status(self) -> int:
        """The status of the final response pynetdicom sends for these results."""
        if self.failed and not (self.completed or self.warning):
            return st.QR_UNABLE_TO_PERFORM_SUBOPS
        if self.failed or self.warning:
            return st.QR_WARNING_SUBOPS_FAILED
        return st.SUCCESS

    def summary(self) -> str:
        text = f"{self.completed} completed, {self.failed} failed, {self.warning} warning"
        if self.reasons:
            text += "; failures: " + "; ".join(self.reasons)
        return text


def _sop_uid(dataset: Any) -> str:
    try:
        return str(dataset.get("SOPInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - a stub or a raw element that does not decode
        return ""
