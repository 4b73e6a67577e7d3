"""The written rules of the code's structure, checked on every run (docs/CONVENTIONS.md, README "Layout").

1. ``exgs_core`` never imports Blender (``bpy``, ``mathutils``, ``bpy_extras``) nor the add-on.
2. The layers of ``exgs_core`` only import downwards: readers/writers (``io``) and the codec never import the
   pruning, the compressor, the renderer's callers, the worker, the painter or the CLI; pruning never imports the
   compressor, the worker, the painter or the CLI; the compressor never imports the worker, the painter or the CLI.
3. The core's numpy path works without the heavy or optional packages: with torch, diffusers, gsplat, safetensors,
   scipy and scikit-image made unimportable, ``exgs_core`` loads, renders on the CPU, compresses and decodes (the
   stock-Blender case: none of them is in Blender).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from exgs_testpaths import DATA, REPO

CORE = REPO / "exgs_core"
BLENDER = ("bpy", "mathutils", "bpy_extras", "exgs_blender", "bl_ext", "addon_utils")
HEAVY = ("torch", "diffusers", "gsplat", "safetensors", "scipy", "skimage")


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            # "from . import x" may name submodules
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names]
    return out


def _core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "__pycache__" not in p.parts)


def test_core_never_imports_blender():
    bad = [
        f"{p.relative_to(REPO)}:{line} imports {m}"
        for p in _core_files()
        for m, line in _imports(p)
        if m.split(".")[0] in BLENDER
    ]
    assert not bad, "\n".join(bad)


#: layer -> module prefixes it must not import (prefixes of absolute names; a layer is a package or module).
FORBIDDEN = {
    "exgs_core.io": (
        "exgs_core.compress",
        "exgs_core.prune",
        "exgs_core.ugc",
        "exgs_core.worker",
        "exgs_core.painter",
        "exgs_core.cli",
        "exgs_core.render",
        "exgs_core.views",
        "exgs_core.metrics",
        "exgs_core.warmup",
    ),
    "exgs_core.codec": (
        "exgs_core.compress",
        "exgs_core.prune",
        "exgs_core.ugc",
        "exgs_core.worker",
        "exgs_core.painter",
        "exgs_core.cli",
        "exgs_core.render",
        "exgs_core.io.ply",
        "exgs_core.io.spz",
        "exgs_core.io.sog",
        "exgs_core.io.splat",
        "exgs_core.io.compressed_ply",
        "exgs_core.warmup",
    ),
    "exgs_core.prune": (
        "exgs_core.compress",
        "exgs_core.worker",
        "exgs_core.painter",
        "exgs_core.cli",
        "exgs_core.warmup",
    ),
    "exgs_core.ugc": (
        "exgs_core.compress",
        "exgs_core.worker",
        "exgs_core.painter",
        "exgs_core.cli",
        "exgs_core.warmup",
    ),
    "exgs_core.compress": ("exgs_core.worker", "exgs_core.painter", "exgs_core.cli", "exgs_core.warmup"),
    "exgs_core.render": (
        "exgs_core.compress",
        "exgs_core.prune",
        "exgs_core.ugc",
        "exgs_core.worker",
        "exgs_core.painter",
        "exgs_core.cli",
        "exgs_core.warmup",
    ),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_only_import_downwards(layer):
    bad = []
    for p in _core_files():
        me = _module_name(p)
        if not (me == layer or me.startswith(layer + ".")):
            continue
        for m, line in _imports(p):
            for f in FORBIDDEN[layer]:
                if (m == f or m.startswith(f + ".")) and not (me == f or me.startswith(f + ".")):
                    bad.append(f"{p.relative_to(REPO)}:{line} imports {m} ({layer} must not import {f})")
    assert not bad, "\n".join(bad)


BLOCKER = """
import importlib.abc, sys
HEAVY = {heavy!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{{name}} is blocked (not in a stock Blender)")
        return None
sys.meta_path.insert(0, Block())
import numpy as np
import exgs_core
from exgs_core.compress import CompressOptions, compress, decompress
from exgs_core.render import render
from exgs_core.views import auto_views
scene = exgs_core.load(sys.argv[1])
cam = auto_views(scene, 1, 48, 48)[0]
assert render(scene, cam, backend="auto").alpha.mean() > 0.01
data, report = compress(scene, CompressOptions(ratio=0.25, views=2, view_size=32))
back = decompress(data)
assert 0 < back.n <= scene.n
print("OK", back.n, len(data), sorted(m for m in sys.modules if m.split(".")[0] in HEAVY))
"""


@pytest.mark.slow
def test_numpy_path_works_without_heavy_packages():
    code = BLOCKER.format(heavy=HEAVY)
    r = subprocess.run(
        [sys.executable, "-c", code, str(DATA / "donut_sh0_2000.ply")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(REPO),
    )
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.strip().endswith("[]"), r.stdout  # none of them was imported
