"""The add-on's main flows as a user runs them, in a bare Blender with the extension installed from its zip; also the
"Blender" first-use / warm timings of BENCHMARKS.md. Not a test (minutes; writes pictures to look at).

For each scene: import -> compress (panel defaults) -> export .exgs and .ply -> re-import both (same world bounds,
not flipped) -> F12 (960x540, EXGS engine, CPU) of the compressed object -> a 3-frame animation with passes
(multilayer EXR: Combined, Alpha, Depth). The first scene runs right after installing into a fresh Blender user
folder, so its numbers are *first use* (numba compiling, the add-on's warm-up running in the background); the
bundled biker runs again at the end: *warm*.

    bash scripts/test_blender.sh --setup-only      # bare environments + build/addon-zip/exgs-*.zip
    .venv-bpy45/bin/python -P scripts/blender_flows.py --zip build/addon-zip/exgs-0.1.0-linux_x64.zip --out out/flows/bpy45
    .venv-bpy53/bin/python -P scripts/blender_flows.py --zip ... --out out/flows/bpy53 --scenes examples/playcanvas_biker.spz

Prints one JSON line per step and writes ``summary.json``, ``<scene>_f12.png``, ``<scene>_anim_000N.exr`` and
``<scene>_reimport_{ply,exgs}_f12.png`` (the re-imported exports rendered from the same camera) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "scenes"
DEFAULT_SCENES = [REPO / "examples" / "playcanvas_biker.spz"] + [
    SHARED / n
    for n in (
        "gshairlod_donut_fused_sh0.ply",
        "splatset_plant.splat",
        "pdal_fourth_st_sh3.spz",
        "playcanvas_guitar.compressed.ply",
        "playcanvas_flowers_lod2_sh2.sog",
    )
]
PKG = "bl_ext.user_default.exgs"


def log(rec: dict) -> None:
    print(json.dumps(rec), flush=True)


def world_bounds(ob):
    import numpy as np

    n = len(ob.data.points)
    p = np.empty(n * 3, np.float32)
    ob.data.attributes["position"].data.foreach_get("vector", p)
    m = np.array(ob.matrix_world, np.float64)
    w = p.reshape(n, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    lo, hi = np.percentile(w, [1, 99], axis=0)
    return lo, hi


def aim_camera(bpy, ob, co) -> None:
    """Frame the object's central 98 % from a 3/4 view above."""
    import numpy as np
    from mathutils import Vector

    lo, hi = world_bounds(ob)
    c = (lo + hi) / 2
    d = np.array([0.55, -0.7, 0.45])
    co.location = c + d / np.linalg.norm(d) * np.linalg.norm(hi - lo) * 1.3
    co.rotation_euler = (Vector(c) - co.location).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()


def render_still(bpy, path: Path) -> float:
    bpy.context.scene.render.filepath = str(path)
    t = time.perf_counter()
    r = bpy.ops.render.render(write_still=True)
    assert r == {"FINISHED"}, r
    return time.perf_counter() - t


def flow(bpy, scene_path: Path, out: Path, tag: str) -> dict:
    import numpy as np

    res = {"scene": scene_path.name, "run": tag}
    stem = scene_path.name.split(".")[0] + ("" if tag == "first" else f"_{tag}")
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    sc = bpy.context.scene
    t = time.perf_counter()
    assert bpy.ops.exgs.import_scene(filepath=str(scene_path)) == {"FINISHED"}
    res["import_s"] = round(time.perf_counter() - t, 3)
    src = bpy.context.active_object
    res["gaussians"] = len(src.data.points)

    # F12 of the imported scene (before any compress: its own first-use cost), then compress (panel defaults)
    sc.render.engine = "EXGS"
    co = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    sc.collection.objects.link(co)
    sc.camera = co
    r = sc.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = 960, 540, 100
    r.image_settings.file_format = "PNG"
    sc.view_settings.view_transform = "Standard"
    aim_camera(bpy, src, co)
    res["f12_s"] = round(render_still(bpy, out / f"{stem}_original_f12.png"), 3)
    res["f12_again_s"] = round(render_still(bpy, out / f"{stem}_original_f12.png"), 3)
    t = time.perf_counter()
    assert bpy.ops.exgs.compress() == {"FINISHED"}  # the panel's defaults
    res["compress_s"] = round(time.perf_counter() - t, 3)
    ob = bpy.context.active_object
    res["compressed_gaussians"] = len(ob.data.points)
    res["report"] = sc.exgs.job_message
    res["source_bytes"], res["exgs_bytes"] = ob.exgs.source_bytes, ob.exgs.compressed_bytes
    render_still(bpy, out / f"{stem}_f12.png")

    # export .exgs / .ply, re-import each: same world bounds, rendered from the same camera
    before = world_bounds(ob)
    span = float(np.max(before[1] - before[0]))
    for fmt in ("EXGS", "PLY"):
        f = out / f"{stem}_export.{fmt.lower()}"
        bpy.ops.object.select_all(action="DESELECT")
        ob.select_set(True)
        bpy.context.view_layer.objects.active = ob
        assert bpy.ops.exgs.export_scene(filepath=str(f), file_format=fmt) == {"FINISHED"}
        assert bpy.ops.exgs.import_scene(filepath=str(f)) == {"FINISHED"}
        again = bpy.context.active_object
        b = world_bounds(again)
        err = float(max(np.abs(b[0] - before[0]).max(), np.abs(b[1] - before[1]).max())) / span
        res[f"reimport_{fmt.lower()}_bounds_err"] = round(err, 5)
        assert err < 0.01, (fmt, before, b)
        ob.hide_render = True
        render_still(bpy, out / f"{stem}_reimport_{fmt.lower()}_f12.png")
        ob.hide_render = False
        again.hide_render = True

    # 3-frame animation with passes
    sc.frame_start, sc.frame_end = 1, 3
    co.keyframe_insert("location", frame=1)
    co.location.x += 0.05 * span
    co.keyframe_insert("location", frame=3)
    im = r.image_settings
    if hasattr(im, "media_type"):
        im.media_type = "MULTI_LAYER_IMAGE"
    im.file_format = "OPEN_EXR_MULTILAYER"
    sc.view_layers[0].use_pass_z = True
    r.filepath = str(out / f"{stem}_anim_")
    t = time.perf_counter()
    assert bpy.ops.render.render(animation=True) == {"FINISHED"}
    res["anim_3_frames_s"] = round(time.perf_counter() - t, 3)
    frames = sorted(out.glob(f"{stem}_anim_*.exr"))
    assert len(frames) == 3, frames
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", type=Path, required=True, help="the extension zip (build.py / test_blender.sh)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenes", type=Path, nargs="+", default=None, help="default: biker + one shared scene per format")
    ap.add_argument(
        "--wait-warmup",
        action="store_true",
        help="let the kernel warm-up started at enable finish before the first flow (default: start "
        "at once, as a user who imports right after installing)",
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="exgs-flows-"))
    import bpy

    scenes = [p for p in (args.scenes or DEFAULT_SCENES) if p.exists()]
    summary = {"blender": bpy.app.version_string, "python": sys.version.split()[0], "runs": []}
    t = time.perf_counter()
    assert bpy.ops.extensions.package_install_files(
        filepath=str(args.zip), repo="user_default", enable_on_install=True
    ) == {"FINISHED"}
    summary["install_s"] = round(time.perf_counter() - t, 3)
    import importlib

    ext = importlib.import_module(PKG)
    if args.wait_warmup:
        from bl_ext.user_default.exgs import jobs

        t = time.perf_counter()
        jobs.WARMUP.wait(900)
        summary["warmup_wait_s"] = round(time.perf_counter() - t, 3)
    for i, p in enumerate(scenes + scenes[:1]):
        tag = "first" if i == 0 else ("warm" if i == len(scenes) else "next")
        rec = flow(bpy, p, args.out, tag)
        log(rec)
        summary["runs"].append(rec)
    warm = ext.warmup_state()
    summary["warmup"] = warm
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
