"""What every CLI verb module shares: exit codes and the common options (DESIGN.md)."""

from __future__ import annotations

import argparse

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def common_options(parser: argparse.ArgumentParser, *, creates_archive: bool = False) -> None:
    """``--config``, ``--data-dir`` and ``--db``, which every verb takes.

    A verb runs against an existing archive and refuses to start without one (so that
    a command run from another folder never fills a new, empty ``./data``), unless it
    ``creates_archive`` (``serve``, ``db migrate``) or the user passes ``--create``.
    """
    parser.add_argument("--config", help="TOML configuration file (or NOCTIS_CONFIG)")
    parser.add_argument("--data-dir", help="data directory (default ./data)")
    parser.add_argument("--db", help="index URL: sqlite:///PATH or postgresql://...")
    if not creates_archive:
        parser.add_argument(
            "--create",
            action="store_true",
            help="create a new, empty archive when none exists (default: refuse)",
        )
    parser.set_defaults(creates_archive=creates_archive)
