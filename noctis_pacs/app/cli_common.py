"""What every CLI verb module shares: exit codes and the common options (DESIGN.md)."""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def common_options(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--data-dir`` and ``--db``, which every verb takes."""
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--data-dir", help="data directory (default ./data)")
    parser.add_argument("--db", help="index URL: sqlite:///PATH or postgresql://...")
