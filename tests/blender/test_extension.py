"""The built extension zip validates with Blender's builder, installs into this Blender and enables."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = "bl_ext.user_default.exgs"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    sys.path.insert(0, str(REPO))
    try:
        import build as builder
    finally:
        sys.path.remove(str(REPO))
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, str(REPO / "build.py"), "--platforms", "linux-x64", "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    zips = sorted(out.glob("exgs-*.zip"))
    assert len(zips) == 1, zips
    return zips[0], builder


def test_zip_contents_and_validate(built_zip):
    z, builder = built_zip
    tool = builder.find_blender_ext()
    r = subprocess.run([sys.executable, str(tool), "validate", str(z)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    names = zipfile.ZipFile(z).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names and "engine/final.py" in names
    wheels = [n for n in names if n.startswith("wheels/")]
    for dep in ("numba", "llvmlite", "plyfile", "zstandard", "pillow", "exgs-"):
        for py in ("cp311", "cp313"):
            if dep in ("plyfile", "exgs-"):
                assert any(dep in w for w in wheels), dep
            else:
                assert any(dep in w and py in w for w in wheels), (dep, py)
    assert not any("scikit" in w or "torch" in w or "numpy" in w for w in wheels)
    assert not any(n.startswith(("tests/", "dist/")) or "__pycache__" in n for n in names)
    manifest = zipfile.ZipFile(z).read("blender_manifest.toml").decode()
    assert 'platforms = ["linux-x64"]' in manifest and "[permissions]" in manifest


def test_install_and_enable(built_zip, blank):
    import addon_utils

    bpy = blank
    z, _ = built_zip
    try:
        r = bpy.ops.extensions.package_install_files(filepath=str(z), repo="user_default", enable_on_install=True)
        assert r == {"FINISHED"}
        assert PKG in bpy.context.preferences.addons
        prefs = bpy.context.preferences.addons[PKG].preferences
        assert prefs.device == "AUTO" and 0 < prefs.viewport_scale <= 1
        assert hasattr(bpy.ops.exgs, "import_scene") and hasattr(bpy.types.Scene, "exgs")
        bpy.context.scene.render.engine = "EXGS"
        # the bundled wheels were installed for this Python
        site = Path(bpy.utils.user_resource("EXTENSIONS", path=".local"))
        tag = f"python{sys.version_info.major}.{sys.version_info.minor}"
        pkgs = {p.name.removesuffix(".py") for p in site.glob(f"lib/{tag}/site-packages/*")}
        assert {"exgs_core", "numba", "plyfile", "zstandard", "PIL"} <= pkgs, sorted(pkgs)
        # and the installed add-on works: import through its operator
        data = REPO / "tests" / "data" / "donut_sh0_2000.ply"
        assert bpy.ops.exgs.import_scene(filepath=str(data)) == {"FINISHED"}
        assert len(bpy.context.active_object.data.points) == 2000
    finally:
        bpy.context.scene.render.engine = "BLENDER_EEVEE" if hasattr(bpy.types, "EEVEE_RENDER_PT_sampling") \
            else bpy.context.scene.render.engine
        addon_utils.disable(PKG, default_set=True)
        bpy.ops.extensions.package_uninstall(repo_index=_repo_index(bpy, "user_default"), pkg_id="exgs")
    assert PKG not in bpy.context.preferences.addons
    assert not hasattr(bpy.types.Scene, "exgs")


def _repo_index(bpy, module: str) -> int:
    for i, repo in enumerate(bpy.context.preferences.extensions.repos):
        if repo.module == module:
            return i
    raise LookupError(module)
