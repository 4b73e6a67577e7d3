"""Blender add-on benchmarks (not collected by pytest): 1M-Gaussian PLY import, and F12 of the biker scene, with the
extension installed from its zip into a bare Blender environment (a fresh user folder; the warm-up finishes first).

    bash scripts/test_blender.sh --setup-only
    .venv-bpy50/bin/python -P tests/blender/bench_blender.py --zip build/addon-zip/exgs-0.1.0-linux_x64.zip
    .venv-bpy53/bin/python -P tests/blender/bench_blender.py --zip ... [--out out/bench_blender] [--n 1000000]

Prints JSON; writes the biker F12 frame to --out/biker_f12_1920x1080.png to look at.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PKG = "bl_ext.user_default.exgs"


def make_ply(path: Path, n: int) -> None:
    from exgs_core.io.ply import write_ply
    from exgs_core.scene import GaussianScene

    rng = np.random.default_rng(0)
    s = GaussianScene.empty(n, sh_degree=3)
    s.means = rng.normal(size=(n, 3)).astype(np.float32)
    s.quats = rng.normal(size=(n, 4)).astype(np.float32)
    s.log_scales = rng.uniform(-5, -3, size=(n, 3)).astype(np.float32)
    s.opacity_logits = rng.normal(size=n).astype(np.float32)
    s.sh = (rng.normal(size=(n, 16, 3)) * 0.3).astype(np.float32)
    write_ply(s, path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_blender")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--zip", type=Path, required=True, help="the extension zip to install")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import os

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="exgs-bench-"))
    import bpy

    assert bpy.ops.extensions.package_install_files(
        filepath=str(args.zip), repo="user_default", enable_on_install=True
    ) == {"FINISHED"}
    import importlib

    importlib.import_module(PKG + ".jobs").WARMUP.wait(900)
    import exgs_core
    from exgs_core.io.spz import to_ply_axes
    from exgs_core.views import auto_views

    res = {"blender": bpy.app.version_string, "python": sys.version.split()[0]}

    # ---- 1M PLY import (exgs_core.load + point cloud creation), best of --repeat
    with tempfile.TemporaryDirectory() as tmp:
        ply = Path(tmp) / "bench_1m_sh3.ply"
        make_ply(ply, args.n)
        res["ply_mb"] = round(ply.stat().st_size / 1e6, 1)
        times, load_times = [], []
        for _ in range(args.repeat):
            bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
            t = time.perf_counter()
            exgs_core.load(ply)
            load_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            assert bpy.ops.exgs.import_scene(filepath=str(ply)) == {"FINISHED"}
            times.append(time.perf_counter() - t)
            assert len(bpy.context.active_object.data.points) == args.n
        res["import_1m_ply_s"] = round(min(times), 3)
        res["import_1m_ply_all_s"] = [round(x, 3) for x in times]
        res["of_which_exgs_core_load_s"] = round(min(load_times), 3)

    # ---- biker F12 at 1920x1080, CPU
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    src = REPO / "examples" / "playcanvas_biker.spz"
    assert bpy.ops.exgs.import_scene(filepath=str(src)) == {"FINISHED"}
    ob = bpy.context.active_object
    sc = bpy.context.scene
    sc.render.engine = "EXGS"
    sc.view_settings.view_transform = "Standard"
    r = sc.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 1920, 1080, 100
    r.filepath = str(args.out / "biker_f12_1920x1080.png")
    view = auto_views(to_ply_axes(exgs_core.load(src)), 1, 1920, 1080, split="eval")[0].to_blender()
    cd = bpy.data.cameras.new("cam")
    cd.lens, cd.sensor_width, cd.sensor_fit = view["lens_mm"], view["sensor_width_mm"], view["sensor_fit"]
    cd.shift_x, cd.shift_y, cd.clip_start, cd.clip_end = view["shift_x"], view["shift_y"], 0.01, 1000
    co = bpy.data.objects.new("cam", cd)
    sc.collection.objects.link(co)
    from mathutils import Matrix

    co.matrix_world = Matrix((np.array(ob.matrix_world) @ view["matrix_world"]).tolist())
    sc.camera = co
    times = []
    for i in range(args.repeat + 1):
        t = time.perf_counter()
        assert bpy.ops.render.render(write_still=(i == 0)) == {"FINISHED"}
        times.append(time.perf_counter() - t)
    res["biker_gaussians"] = len(ob.data.points)
    res["f12_biker_1920x1080_first_s"] = round(times[0], 3)
    res["f12_biker_1920x1080_s"] = round(min(times[1:]), 3)
    res["f12_biker_all_s"] = [round(x, 3) for x in times]
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
