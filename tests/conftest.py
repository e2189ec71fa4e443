"""Shared test paths and helpers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
#: The shared corpus of real public captures, when it sits next to the repo.
SHARED_CAPTURES = Path(
    os.environ.get("WIRELEARN_SHARED_CAPTURES", str(ROOT.parent / "shared" / "captures"))
)


def shared_captures_available() -> bool:
    return (SHARED_CAPTURES / "MANIFEST.tsv").is_file()


def need_tool(name: str) -> str:
    """Path of an external tool the test needs; the test setup installs it, so missing is a failure."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; `make test` installs it (scripts/install-system-deps)"
        )
    return path


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
