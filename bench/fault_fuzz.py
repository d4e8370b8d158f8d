"""Fuzz trial, long form: mutated Part 10 files over STOW-RS and C-STORE, malformed
multipart bodies and query strings, against a real server.

    .venv/bin/python bench/fault_fuzz.py [--files 2000] [--seed 1414] [--backend sqlite]

The same checks as tests/test_fault_fuzz.py with more cases: no 5xx, every C-STORE
answered (or the association aborted) within 10 s, the server alive, and every
instance it stored retrievable. Malformed-UID acknowledgements (issue 14 defect 11)
are counted apart. Results: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

import httpx  # noqa: E402

from tests.conftest import db_url_for, start_server  # noqa: E402
from tests.fuzz_support import bad_multipart, bad_query, seeds  # noqa: E402
from tests.test_fault_fuzz import (  # noqa: E402
    cstore_fuzz,
    everything_reads_back,
    stow_fuzz,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="mutated files in all")
    parser.add_argument("--seed", type=int, default=1414)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="noctis-fuzz-"))
    if base:
        server = start_server(base / "data", db_url_for(args.backend, base / "data"))
        try:
            problems = stow_fuzz(server, rng, args.files * 2 // 3)
            problems += cstore_fuzz(server, rng, args.files // 3, base / "cstore")
            part = seeds()[0]
            for _ in range(args.files // 4):
                what, body, content_type = bad_multipart(rng, part)
                response = httpx.post(
                    f"{server.dicomweb_url}/studies",
                    content=body,
                    headers={"Content-Type": content_type},
                    timeout=60,
                )
                if response.status_code >= 500:
                    problems.append(f"multipart {what}: {response.status_code}")
            for _ in range(args.files // 2):
                params = bad_query(rng)
                level = rng.choice(["studies", "series", "instances"])
                response = httpx.get(f"{server.dicomweb_url}/{level}", params=params)
                if response.status_code >= 500:
                    problems.append(f"query {params}: {response.status_code}")
            alive = server.alive()
            stored_problems, malformed = everything_reads_back(server)
        finally:
            server.stop()
    problems += stored_problems
    print(
        f"{args.files} mutated files ({args.backend}, seed {args.seed}) + "
        f"{args.files // 4} multipart bodies + {args.files // 2} queries in "
        f"{time.monotonic() - started:.0f} s: server alive {alive}, "
        f"{len(problems)} problem(s), {len(malformed)} stored instance(s) with malformed "
        "UIDs (issue 14 defect 11)"
    )
    for problem in problems[:30]:
        print("  ", problem)
    if problems:
        print(f"server log and archive kept under {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if problems or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
