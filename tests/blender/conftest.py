"""Headless Blender tests against the add-on **as a user installs it**.

``scripts/test_blender.sh`` builds the extension zip and runs these tests once per Blender line (4.5 LTS, 5.0,
5.3), each in a bare environment that holds only bpy (with what that Blender bundles: numpy, zstandard, ...) and
pytest. The session installs the zip (``$EXGS_ADDON_ZIP``) into a fresh Blender user folder and enables it, so
``exgs_core``, numba, pillow, ... come only from the wheels the zip carries; the ``installed`` fixture checks that.

The tests skip, with the reason, when ``bpy`` cannot be imported, when no zip is given, and when collected together
with the rest of the suite in one process (set EXGS_BLENDER_TESTS=1 to force them).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / "tests" / "data"
PKG = "bl_ext.user_default.exgs"  # the module name Blender gives the installed extension


def _bpy_error() -> str | None:
    """Why bpy cannot be used here, or None. Imports bpy (only when Blender tests are really going to run)."""
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
    elif not os.environ.get("EXGS_ADDON_ZIP"):
        reason = "no extension zip to install ($EXGS_ADDON_ZIP): bash scripts/test_blender.sh builds one"
    else:
        err = _bpy_error()
        if err is not None:
            reason = f"bpy (Blender as a Python module) cannot be imported ({err}); scripts/test_blender.sh installs it"
    if reason:
        for it in mine:
            it.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def bpy_mod():
    import bpy

    print(f"\nBlender {bpy.app.version_string}, Python {sys.version.split()[0]}")
    return bpy


def user_site(bpy) -> Path:
    """The site-packages folder Blender installs extension wheels into (for this Python)."""
    tag = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(bpy.utils.user_resource("EXTENSIONS", path=".local")) / "lib" / tag / "site-packages"


@pytest.fixture(scope="session")
def installed(bpy_mod):
    """The extension installed from the zip and enabled, once per session: returns its module.

    Fails when exgs_core (or scipy, scikit-image, torch) can be imported before the install: this environment must
    be as bare as a stock Blender, or the tests would not show what users get."""
    bpy = bpy_mod
    leaked = {
        m: importlib.util.find_spec(m).origin
        for m in ("exgs_core", "exgs_blender", "scipy", "skimage", "torch")
        if importlib.util.find_spec(m)
    }
    assert not leaked, f"not a bare Blender environment, importable before installing the zip: {leaked}"
    zip_path = os.environ["EXGS_ADDON_ZIP"]
    r = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    assert r == {"FINISHED"} and PKG in bpy.context.preferences.addons, f"could not install {zip_path}"
    import exgs_core

    site = user_site(bpy)
    assert Path(exgs_core.__file__).resolve().is_relative_to(site.resolve()), exgs_core.__file__
    return importlib.import_module(PKG)


def reset_file(bpy) -> None:
    """An empty factory-startup file; preferences (and so the enabled extension) stay."""
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)


@pytest.fixture
def blank(bpy_mod):
    """An empty factory-fresh file (the extension may or may not be installed)."""
    reset_file(bpy_mod)
    return bpy_mod


def _enable(bpy) -> None:
    import addon_utils

    if PKG not in bpy.context.preferences.addons:
        addon_utils.enable(PKG, default_set=True)
    assert PKG in bpy.context.preferences.addons


@pytest.fixture
def addon(installed, bpy_mod):
    """The installed extension, enabled, on an empty file; its preferences back to defaults afterwards."""
    bpy = bpy_mod
    _enable(bpy)
    reset_file(bpy)
    prefs = bpy.context.preferences.addons[PKG].preferences
    defaults = {
        p.identifier: getattr(prefs, p.identifier)
        for p in prefs.bl_rna.properties
        if p.identifier not in ("rna_type", "bl_idname") and not p.is_readonly
    }
    try:
        yield bpy
    finally:
        _enable(bpy)
        prefs = bpy.context.preferences.addons[PKG].preferences
        for k, v in defaults.items():
            setattr(prefs, k, v)


@pytest.fixture
def ext(addon):
    """The installed add-on's package module (``bl_ext.user_default.exgs``)."""
    return importlib.import_module(PKG)


@pytest.fixture
def addon_prefs(addon):
    """The installed add-on's preferences (restored to their defaults after the test)."""
    return addon.context.preferences.addons[PKG].preferences
