#!/usr/bin/env python3
"""Build the exgs Blender extension zip(s) into dist/ with Blender's own extension builder.

Blender's builder (``blender_ext.py``) ships inside the ``bpy`` wheel; this script finds it in the current
Python environment (``pip install bpy==5.0.1`` on Python 3.11) or takes ``--blender-ext PATH``.
The Blender issue (#5) extends this with bundled wheels per Python version and platform.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def find_blender_ext() -> Path | None:
    try:
        import bpy  # noqa: F401  (only to locate the wheel's files)
    except ImportError:
        return None
    base = Path(sys.modules["bpy"].__file__).parent
    hits = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return hits[-1] if hits else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blender-ext", type=Path, help="path to blender_ext.py (default: found in the bpy wheel)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    args = ap.parse_args(argv)
    tool = args.blender_ext or find_blender_ext()
    if tool is None or not tool.is_file():
        print("build.py: error: Blender's extension builder was not found; install bpy (pip install bpy==5.0.1 "
              "on Python 3.11) or pass --blender-ext PATH/TO/blender_ext.py", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "exgs"
        shutil.copytree(ROOT / "exgs_blender", src, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "exgs_core", src / "exgs_core", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "blender_manifest.toml", src / "blender_manifest.toml")
        for cmd in (["build", "--source-dir", str(src), "--output-dir", str(args.out)],
                    ["validate", str(src)]):
            r = subprocess.run([sys.executable, str(tool), *cmd])
            if r.returncode:
                print(f"build.py: error: blender_ext.py {cmd[0]} failed (exit {r.returncode})", file=sys.stderr)
                return r.returncode
    print(f"built extension zip(s) in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
