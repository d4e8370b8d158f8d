"""The group-commit writer's job results and the index's receive time stamps."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

import pytest

from storage.index import now_iso
from storage.writer import Pending


def test_a_pending_result_set_by_another_thread_is_awaited() -> None:
    pending: Pending[int] = Pending()
    threading.Timer(0.05, pending.set_result, args=(7,)).start()
    assert pending.result() == 7
    assert pending.result() == 7  # asking again does not block


def test_a_pending_exception_is_raised_by_result() -> None:
    pending: Pending[int] = Pending()
    pending.set_exception(ValueError("bad job"))
    with pytest.raises(ValueError, match="bad job"):
        pending.result()


def test_now_iso_is_utc_with_microseconds_and_moves_on() -> None:
    first = now_iso()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first)
    parsed = datetime.strptime(first, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 1
    time.sleep(1.01)
    assert now_iso() > first
