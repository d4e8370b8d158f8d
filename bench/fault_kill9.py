"""Fault trial, long form: ``kill -9`` during concurrent C-STORE and STOW-RS ingest.

    .venv/bin/python bench/fault_kill9.py [--trials 20] [--backend sqlite|postgresql]

The same trial as tests/test_fault_kill9.py (tests/fault_support.kill9_trial), repeated
on one archive: each trial starts the server, ingests over both protocols, kills it
at a random moment (seeded), restarts it and checks every acknowledged instance
(listed, retrievable, byte-identical), every QIDO-RS result's blob and ``verify``.
Prints one line per trial and the restart-to-serving median (process start to
``/readyz`` answering). Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

from tests.conftest import db_url_for  # noqa: E402
from tests.fault_support import kill9_trial  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures = 0
    restarts = []
    total = 0
    with tempfile.TemporaryDirectory(prefix="noctis-kill9-") as tmp:
        base = Path(tmp)
        url = db_url_for(args.backend, base / "data")
        for trial in range(args.trials):
            result = kill9_trial(base, url, trial=trial, rng=rng)
            total += result.acknowledged
            restarts.append(result.restart_seconds)
            failures += bool(result.problems)
            print(
                f"trial {trial + 1:2d}: {result.acknowledged} acknowledged, "
                f"refused {result.refused or 0}, restart {result.restart_seconds:.2f} s, "
                f"verify {result.verify}, problems {result.problems[:3] or 'none'}",
                flush=True,
            )
    print(
        f"{args.trials} trials ({args.backend}): {total} acknowledged instances, "
        f"{failures} trial(s) with problems; restart to serving median "
        f"{statistics.median(restarts):.2f} s (min {min(restarts):.2f}, max {max(restarts):.2f})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
