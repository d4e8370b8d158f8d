"""Fault trial: ``kill -9`` during concurrent C-STORE and STOW-RS ingest (issue 14).

Each trial ingests over both protocols at once into the archive the earlier trials
left, kills the server at a random moment (fixed seed), restarts it and checks: every
acknowledged instance is listed by QIDO-RS and retrievable byte-identical, every QIDO-RS
result has its blob, ``verify`` finds no index row without a good blob. The restart
time (process start to ``/readyz`` answering) is reported. bench/fault_kill9.py runs
20 trials.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import db_url_for
from tests.fault_support import kill9_trial

TRIALS = 3


@pytest.mark.slow
def test_kill9_during_concurrent_ingest(tmp_path: Path, backend: str) -> None:
    rng = random.Random(14)
    url = db_url_for(backend, tmp_path / "data")
    restarts = []
    acknowledged = 0
    for trial in range(TRIALS):
        result = kill9_trial(tmp_path, url, trial=trial, rng=rng)
        assert result.problems == [], result.problems
        assert result.acknowledged >= 5, result
        acknowledged += result.acknowledged
        restarts.append(result.restart_seconds)
    print(f"\nkill -9 x{TRIALS} ({backend}): {acknowledged} acknowledged, all retrievable; "
          f"restart to serving {', '.join(f'{s:.2f}' for s in restarts)} s")  # fmt: skip
