#!/usr/bin/env python3
"""Build the exgs Blender extension zip(s) into dist/ with Blender's own extension builder, and validate them.

What goes into a zip: the add-on (``exgs_blender/`` as the package root), ``blender_manifest.toml`` with the
``wheels`` and ``platforms`` filled in, and ``wheels/``: exgs_core as a pure-Python wheel built from this checkout
plus the unmodified PyPI wheels exgs_core needs at import/render/compress time (numba, llvmlite, plyfile,
zstandard, pillow; versions from requirements.txt) for **cp311 (Blender 4.5-5.0) and cp313 (Blender 5.1+)** and
each platform. numpy comes with Blender; scikit-image (metrics only) and torch are not bundled.

Blender's builder (``blender_ext.py``) ships inside the ``bpy`` wheel; this script finds it in the running Python
environment or takes ``--blender-ext PATH``. Wheels are fetched once with ``pip download --only-binary=:all:`` into
``build/wheels/`` and reused. By default one zip per platform (``--split-platforms``).

    python build.py                                   # linux-x64, windows-x64, macos-arm64: dist/exgs-<version>-<platform>.zip
    python build.py --platforms linux-x64             # just one
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent

#: Blender platform -> pip --platform tags (any of them may match).
PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_13_0_arm64", "macosx_14_0_arm64"],
    "macos-x64": [
        "macosx_10_9_x86_64",
        "macosx_10_15_x86_64",
        "macosx_11_0_x86_64",
        "macosx_12_0_x86_64",
        "macosx_13_0_x86_64",
    ],
}
#: numba/llvmlite publish no macOS x86-64 wheels for these versions, so Intel Macs are not in the default set.
DEFAULT_PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64")
PYTHONS = ("3.11", "3.13")
#: What exgs_core imports on the add-on's paths (load, render, compress, export).
DEPENDENCIES = ("numba", "llvmlite", "plyfile", "zstandard", "pillow")


def find_blender_ext() -> Path | None:
    """blender_ext.py inside an installed bpy wheel (bpy/<ver>/scripts/addons_core/bl_pkg/cli/): this Python's bpy,
    else one of the bare Blender environments scripts/test_blender.sh creates (.venv-bpy*); None if none."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.origin:
        for base in Path(spec.origin).resolve().parents:
            hits = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
            if hits:
                return hits[-1]
            if base.name == "site-packages":
                break
    hits = sorted(
        ROOT.glob(".venv-bpy*/lib/python3.*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py")
    )
    return hits[-1] if hits else None


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def project_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "blender_manifest.toml").read_text(), re.M)
    return m.group(1) if m else "0.0.0"


def build_core_wheel(dest: Path) -> Path:
    """exgs_core as ``exgs-<version>-py3-none-any.whl`` (pure Python; written directly, no build backend)."""
    m = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if m is None:
        raise SystemExit('build.py: no version = "..." line in pyproject.toml')
    version = m.group(1)
    name = f"exgs-{version}-py3-none-any.whl"
    dist_info = f"exgs-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    data_suffixes = {".py", ".json", ".safetensors", ".md"}  # code + the shipped GaussPainter weights and card
    for p in sorted((ROOT / "exgs_core").rglob("*")):
        if "__pycache__" in p.parts or not p.is_file() or p.suffix not in data_suffixes:
            continue
        files.append((p.relative_to(ROOT).as_posix(), p.read_bytes()))
    files.append(
        (
            f"{dist_info}/METADATA",
            (
                f"Metadata-Version: 2.1\nName: exgs\nVersion: {version}\n"
                "Summary: exgs_core, bundled for the exgs Blender extension\n"
                "License: GPL-3.0-or-later\n"
            ).encode(),
        )
    )
    files.append(
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: exgs build.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    record = []
    out = dest / name
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            info = zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        info = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        z.writestr(info, "\n".join(record) + "\n")
    return out


def download_wheels(platform: str, python: str, cache: Path, pins: dict[str, str]) -> list[Path]:
    """PyPI wheels of :data:`DEPENDENCIES` for one platform and Python (cached under ``cache``)."""
    folder = cache / f"{platform}-cp{python.replace('.', '')}"
    stamp = folder / ".complete"
    reqs = [f"{d}=={pins[d]}" if d in pins else d for d in DEPENDENCIES]
    key = " ".join(reqs)
    if not (stamp.is_file() and stamp.read_text() == key):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        abi = "cp" + python.replace(".", "")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(folder),
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            abi,
            "--abi",
            "abi3",
            "--abi",
            "none",
        ]
        for tag in PLATFORMS[platform]:
            cmd += ["--platform", tag]
        r = subprocess.run(cmd + reqs, capture_output=True, text=True)
        if r.returncode:
            shutil.rmtree(folder, ignore_errors=True)
            msg = (r.stderr.strip().splitlines() or ["pip download failed"])[-1]
            raise RuntimeError(f"no wheels for {platform} / Python {python}: {msg}")
        stamp.write_text(key)
    return sorted(folder.glob("*.whl"))


def manifest_text(wheels: list[str], platforms: list[str]) -> str:
    text = (ROOT / "blender_manifest.toml").read_text()
    lines = (
        [f"platforms = [{', '.join(repr(p).replace(chr(39), chr(34)) for p in platforms)}]", "wheels = ["]
        + [f'  "./wheels/{w}",' for w in wheels]
        + ["]", ""]
    )
    return text.replace("\n[permissions]", "\n" + "\n".join(lines) + "\n[permissions]", 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blender-ext", type=Path, help="path to blender_ext.py (default: found in the bpy wheel)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    ap.add_argument(
        "--platforms",
        nargs="+",
        choices=sorted(PLATFORMS),
        default=list(DEFAULT_PLATFORMS),
        help="Blender platforms to build for (default: %(default)s)",
    )
    ap.add_argument(
        "--pythons",
        nargs="+",
        choices=PYTHONS,
        default=list(PYTHONS),
        help="Python versions to bundle wheels for (default: 3.11 and 3.13)",
    )
    ap.add_argument("--wheel-cache", type=Path, default=ROOT / "build" / "wheels", help="downloaded wheels")
    ap.add_argument("--single-zip", action="store_true", help="one zip for all platforms (no --split-platforms)")
    args = ap.parse_args(argv)
    tool = args.blender_ext or find_blender_ext()
    if tool is None or not tool.is_file():
        print(
            "build.py: error: Blender's extension builder was not found; run `bash scripts/test_blender.sh "
            "--setup-only` (creates .venv-bpy*), install bpy, or pass --blender-ext PATH/TO/blender_ext.py",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    pins = pinned_versions()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "exgs"
        shutil.copytree(ROOT / "exgs_blender", src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        wheel_dir = src / "wheels"
        wheel_dir.mkdir()
        names = [build_core_wheel(wheel_dir).name]
        platforms = []
        for plat in args.platforms:
            try:
                got = [w for py in args.pythons for w in download_wheels(plat, py, args.wheel_cache, pins)]
            except RuntimeError as e:
                print(f"build.py: error: {e}", file=sys.stderr)
                return 1
            for w in got:
                if not (wheel_dir / w.name).exists():
                    shutil.copy2(w, wheel_dir / w.name)
                    names.append(w.name)
            platforms.append(plat)
        (src / "blender_manifest.toml").write_text(manifest_text(sorted(set(names)), platforms))
        t_start = time.time() - 1
        build = ["build", "--source-dir", str(src), "--output-dir", str(args.out)]
        if not args.single_zip:
            build.append("--split-platforms")
        for cmd in (["validate", str(src)], build):
            r = subprocess.run([sys.executable, str(tool), *cmd])
            if r.returncode:
                print(f"build.py: error: blender_ext.py {cmd[0]} failed (exit {r.returncode})", file=sys.stderr)
                return r.returncode
        zips = sorted(z for z in args.out.glob(f"*{project_version()}*.zip") if z.stat().st_mtime >= t_start)
        if not zips:
            print(f"build.py: error: the builder wrote no zip into {args.out}", file=sys.stderr)
            return 1
        for z in zips:
            r = subprocess.run([sys.executable, str(tool), "validate", str(z)])
            if r.returncode:
                print(f"build.py: error: {z.name} does not validate", file=sys.stderr)
                return r.returncode
    for z in zips:
        print(f"built and validated {z} ({z.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
