"""Paths shared by the tests (a uniquely named module: tests/blender has its own conftest.py, so test modules
must not import ``conftest`` by name)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("EXGS_SHARED", REPO.parent / "shared")) / "data"


def shared_file(rel: str) -> Path:
    """Path of a file under ../shared/data, or skip the test when it is not there."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"{p} not available (shared data is optional)")
    return p
