"""Headless Blender tests (bpy as a Python module): one Blender per process, reset before every test.

These run through ``scripts/test_blender.sh``, once under bpy 5.0.1 (.venv, Python 3.11) and once under bpy 5.3.0
(.venv-blender53, Python 3.13). They skip, with the reason, when ``bpy`` cannot be imported, and when collected
together with the rest of the suite in one process (Blender must not share a process with torch and friends;
set EXGS_BLENDER_TESTS=1 to force them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / "tests" / "data"



def _bpy_error() -> str | None:
    """Why bpy cannot be used here, or None. Imports bpy (only when Blender tests are really going to run)."""
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        return "No module named 'bpy'"
    # Installing extensions writes Blender's user folders: keep them out of $HOME (set before bpy starts).
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="exgs-blender-user-"))
    try:
        import bpy  # noqa: F401
    except Exception as e:  # ImportError, or a bpy build that cannot start here
        return f"{type(e).__name__}: {e}"
    return None


def pytest_collection_modifyitems(config, items):
    mine = [it for it in items if HERE in Path(str(it.fspath)).resolve().parents]
    if not mine:
        return
    reason = None
    if not os.environ.get("EXGS_BLENDER_TESTS") and len(mine) != len(items):
        reason = "Blender tests run in their own process per Blender version: bash scripts/test_blender.sh"
    else:
        err = _bpy_error()
        if err is not None:
            reason = (f"bpy (Blender as a Python module) cannot be imported ({err}); "
                      "scripts/test_blender.sh installs bpy 5.0.1 / 5.3.0")
    if reason:
        for it in mine:
            it.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def bpy_mod():
    import bpy

    print(f"\nBlender {bpy.app.version_string}")
    return bpy


@pytest.fixture
def blank(bpy_mod):
    """An empty factory-fresh file."""
    bpy_mod.ops.wm.read_factory_settings(use_empty=True)
    return bpy_mod


@pytest.fixture
def addon(blank):
    """exgs_blender registered on an empty file; unregistered afterwards whatever happens."""
    import exgs_blender

    exgs_blender.register()
    try:
        yield blank
    finally:
        exgs_blender.unregister()


