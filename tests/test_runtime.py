"""Process tuning applied once a server has started (noctis_pacs/app/runtime.py)."""

from __future__ import annotations

import gc
import platform

from noctis_pacs.app import runtime


def test_settle_freezes_start_up_objects() -> None:
    gc.unfreeze()
    kept = [object() for _ in range(10)]  # noqa: F841 - alive across the freeze
    runtime.settle()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_allocator_thresholds_are_set_on_glibc() -> None:
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert runtime.tune_allocator() is expected
