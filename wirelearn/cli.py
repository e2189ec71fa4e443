"""The ``wirelearn`` command line (being built; see the issues)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wirelearn`` console script."""
    print("wirelearn: no commands yet", file=sys.stderr)
    return 2
