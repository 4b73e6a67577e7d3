"""The extension zip as users get it: what it carries, that it validates, and that the installed add-on runs in a
bare Blender with nothing but its own wheels (exgs_core from the zip, no scipy / scikit-image / torch)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = "bl_ext.user_default.exgs"


@pytest.fixture(scope="module")
def built_zip():
    return Path(os.environ["EXGS_ADDON_ZIP"])


def _blender_ext() -> Path:
    import bpy

    tool = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    assert tool.is_file(), tool
    return tool


def test_zip_contents_and_validate(built_zip):
    r = subprocess.run(
        [sys.executable, str(_blender_ext()), "validate", str(built_zip)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    zf = zipfile.ZipFile(built_zip)
    names = zf.namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "engine/final.py" in names
    wheels = [n for n in names if n.startswith("wheels/")]
    for dep in ("numba", "llvmlite", "plyfile", "pillow", "exgs-"):
        for py in ("cp311", "cp313"):
            if dep in ("plyfile", "exgs-"):
                assert any(dep in w for w in wheels), dep
            else:
                assert any(dep in w and py in w for w in wheels), (dep, py)
    assert not any(x in w for w in wheels for x in ("scikit", "scipy", "torch", "numpy")), wheels
    assert not any(n.startswith(("tests/", "dist/")) or "__pycache__" in n for n in names)
    manifest = zf.read("blender_manifest.toml").decode()
    assert "[permissions]" in manifest and "platforms = [" in manifest
    # the minimum Blender version is the oldest line the harness runs (4.5 LTS)
    assert 'blender_version_min = "4.5.0"' in manifest
    # the core wheel carries no module that imports scipy / scikit-image at compress/render time
    core = [w for w in wheels if "/exgs-" in w][0]
    import io

    inner = zipfile.ZipFile(io.BytesIO(zf.read(core)))
    for n in inner.namelist():
        if n.endswith(".py") and n != "exgs_core/metrics.py":  # metrics: SSIM for `exgs eval`, never in Blender
            src = inner.read(n).decode()
            assert not re.search(r"^\s*(from|import)\s+(scipy|skimage)\b", src, re.M), n


def test_installed_add_on_runs_from_its_own_wheels(installed, addon):
    """The session fixture installed the zip: the add-on and exgs_core come from Blender's extension folders;
    scipy / scikit-image / torch are not importable (a stock Blender has none of them)."""
    import importlib.util

    import exgs_core

    bpy = addon
    assert PKG in bpy.context.preferences.addons
    prefs = bpy.context.preferences.addons[PKG].preferences
    assert prefs.device == "AUTO" and 0 < prefs.viewport_scale <= 1
    assert hasattr(bpy.ops.exgs, "import_scene") and hasattr(bpy.types.Scene, "exgs")
    ext_dir = Path(bpy.utils.user_resource("EXTENSIONS")).resolve()
    assert Path(installed.__file__).resolve().is_relative_to(ext_dir), installed.__file__
    assert Path(exgs_core.__file__).resolve().is_relative_to(ext_dir), exgs_core.__file__
    for mod in ("numba", "plyfile", "zstandard", "PIL"):
        spec = importlib.util.find_spec(mod)
        assert spec is not None, mod
    for mod in ("scipy", "skimage", "torch"):
        assert importlib.util.find_spec(mod) is None, f"{mod} importable: not a bare Blender"
    bpy.context.scene.render.engine = "EXGS"
    data = REPO / "tests" / "data" / "donut_sh0_2000.ply"
    assert bpy.ops.exgs.import_scene(filepath=str(data)) == {"FINISHED"}
    assert len(bpy.context.active_object.data.points) == 2000


def test_kernels_compile_in_the_background_at_enable_and_first_use_says_so(
    installed, addon, tmp_path, monkeypatch, capfd
):
    """Enabling the freshly installed add-on starts compiling exgs_core's kernels in a background thread (the
    test session's Blender user folder is new, so they were not compiled); afterwards they are cached. While
    they are not, F12 and compress say that the first use compiles (instead of a silent 10-25 s wait)."""
    from bl_ext.user_default.exgs import jobs

    import exgs_core.warmup

    bpy = addon
    w = jobs.WARMUP
    assert w.stage != "not started" or jobs.kernels_ready()
    assert w.wait(600) and w.error is None, (w.stage, w.error)
    assert exgs_core.warmup.is_warm()
    monkeypatch.setattr(jobs, "_READY", False)
    monkeypatch.setattr(exgs_core.warmup, "is_warm", lambda: False)
    assert bpy.ops.exgs.import_scene(filepath=str(REPO / "tests" / "data" / "donut_sh0_2000.ply")) == {"FINISHED"}
    sc = bpy.context.scene
    sc.render.engine = "EXGS"
    co = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    sc.collection.objects.link(co)
    sc.camera = co
    co.location = (0.0, -1.0, 0.3)
    sc.render.resolution_x, sc.render.resolution_y = 64, 48
    sc.render.filepath = str(tmp_path / "f.png")
    capfd.readouterr()
    assert bpy.ops.render.render(write_still=True) == {"FINISHED"}
    assert "first use after installing: compiling kernels" in capfd.readouterr().out
    sc.exgs.ratio, sc.exgs.auto_views = 0.5, 2
    assert bpy.ops.exgs.compress() == {"FINISHED"}
    assert "first use after installing: compiling kernels" in capfd.readouterr().out
