"""Benchmarks of issue 6 (worker + restored rendering); prints a table and optionally writes JSON.

    .venv/bin/python scripts/bench_worker.py [--scene examples/playcanvas_biker.spz] [--weights DIR]
        [--frames 16] [--size 384x216] [--ratio 0.1] [--json out/bench_worker.json] [--png out/bench_worker]

1. Worker round trip: a 1080p RGBA float32 frame (33 MB) sent to the worker and back through shared memory
   (`echo`: the worker copies the input into the output), median of 30, plus a message-only round trip.
2. First (unrestored) viewport frame of the scene at 640x360 on the CPU: cold (numba cache load / JIT) and warm
   render, and through the viewport's own progressive renderer (time to its first and to its full-size frame).
3. Restored 640x360 frame: GaussPainter in-process and through the worker.
4. Flicker on a camera path: the scene compressed by UGC at --ratio, rendered along a slow orbit; per variant
   (unrestored, classical fill, GaussPainter, GaussPainter + temporal stabilisation) the mean frame-to-frame
   difference, the excess over the uncompressed scene's own frame-to-frame change, and PSNR against it.

Weights: --weights, else the shipped checkpoint, else the newest out/painter_runs/*/best (copied first), else a
randomly initialised tiny model (said so in the output: its numbers say nothing about GaussPainter).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _med(ts):
    return float(np.median(ts)) * 1e3


def _times(fn, n: int):
    """(wall seconds of each of ``n`` calls of ``fn()``, the last call's result)."""
    ts, r = [], None
    for _ in range(n):
        t = time.perf_counter()
        r = fn()
        ts.append(time.perf_counter() - t)
    return ts, r


def runs_found():
    return sorted(
        glob.glob(os.path.join(ROOT, "out", "painter_runs", "*", "best", "config.json")), key=os.path.getmtime
    )


def pick_weights(arg):
    from exgs_core.painter.restore import DEFAULT_WEIGHTS

    if arg and arg != "random":
        return arg, "given"
    if os.path.isfile(os.path.join(DEFAULT_WEIGHTS, "config.json")) and arg != "random":
        return DEFAULT_WEIGHTS, "shipped"
    runs = [] if arg == "random" else runs_found()
    if runs:
        src = os.path.dirname(runs[-1])
        dst = tempfile.mkdtemp(prefix="exgs-bench-weights-")
        shutil.copytree(src, dst, dirs_exist_ok=True)
        cfg = json.load(open(os.path.join(dst, "config.json")))
        return dst, f"in-training checkpoint {os.path.relpath(src, ROOT)} (step {cfg.get('trained_steps')})"
    import torch

    from exgs_core.painter.model import make_painter, save_painter

    torch.manual_seed(0)
    d = tempfile.mkdtemp(prefix="exgs-bench-tiny-")
    save_painter(
        make_painter(
            {
                "vae_channels": 8,
                "latent_channels": 4,
                "unet_channels": [8, 16],
                "norm_num_groups": 4,
                "out_init_scale": 1.0,
            }
        ),
        d,
    )
    return d, "RANDOM tiny model (untrained)"


def bench_roundtrip(out):
    from exgs_core.worker import WorkerClient

    w = WorkerClient()
    t = time.perf_counter()
    info = w.start()
    out["worker_start_s"] = round(time.perf_counter() - t, 2)
    out["worker_python"] = f"{info['python']} ({info['python_version']}, torch {info['torch']})"
    f = np.random.default_rng(0).random((1080, 1920, 4), dtype=np.float32)
    w.echo(f)
    ts, g = _times(lambda: w.echo(f), 30)
    assert np.array_equal(g, f)
    out["echo_1080p_rgba_f32_ms"] = round(_med(ts), 2)
    out["echo_1080p_min_ms"] = round(min(ts) * 1e3, 2)
    ts, g = _times(lambda: w.noop_roundtrip(f), 30)
    assert np.array_equal(g, f)
    out["noop_1080p_rgba_f32_ms"] = round(_med(ts), 2)
    ts, _ = _times(lambda: w._call("echo", {}), 30)
    out["message_only_ms"] = round(_med(ts), 3)
    # copying the same frame twice in this process: the floor any shared-memory round trip pays
    buf = np.empty_like(f)
    ts, _ = _times(lambda: np.copyto(buf, f), 10)
    out["one_frame_copy_ms"] = round(_med(ts), 2)
    w.stop()


def bench_viewport(scene, out):
    from exgs_core import views
    from exgs_core.render import render

    cam = views.auto_views(scene, 1, 640, 360)[0]
    t = time.perf_counter()
    render(scene, cam, backend="cpu")
    out["viewport_640x360_cold_ms"] = round((time.perf_counter() - t) * 1e3, 1)
    ts, res = _times(lambda: render(scene, cam, backend="cpu"), 5)
    out["viewport_640x360_warm_ms"] = round(_med(ts), 1)
    return cam, res


PROGRESSIVE = r"""
import json, sys, time
import numpy as np
import bpy  # noqa: F401  (exgs_blender.engine imports bpy; nothing of Blender is used)
import exgs_core as ex
from exgs_core import views
from exgs_core.camera import FLIP_YZ
from exgs_blender.engine import viewport
scene = ex.load(sys.argv[1])
cam = views.auto_views(scene, 1, 640, 360)[0]
W, H = cam.width, cam.height
V = FLIP_YZ @ cam.world_to_camera
near, far = 0.01, 1000.0
P = np.zeros((4, 4))
P[0, 0], P[1, 1] = 2 * cam.fx / W, 2 * cam.fy / H
P[0, 2], P[1, 2] = 1 - 2 * cam.cx / W, 2 * cam.cy / H - 1
P[2, 2], P[2, 3], P[3, 2] = -(far + near) / (far - near), -2 * far * near / (far - near), -1
firsts, fulls = [], []
for k in range(4):
    vp = viewport.ViewportRenderer()
    vp.set_scene(scene)
    t = time.perf_counter()
    vp.request(V, P + k * 1e-5, W, H, True, 1.0)
    first = None
    while time.perf_counter() - t < 120:
        got = vp.latest()
        if got is not None and first is None:
            first = time.perf_counter() - t
        if got is not None and got[1]:
            break
        time.sleep(0.0005)
    fulls.append(time.perf_counter() - t)
    firsts.append(first)
    vp.stop()
print("JSON", json.dumps({"first_ms_cold": firsts[0] * 1e3, "first_ms": float(np.median(firsts[1:])) * 1e3,
                          "full_ms_cold": fulls[0] * 1e3, "full_ms": float(np.median(fulls[1:])) * 1e3}))
"""


def bench_viewport_progressive(scene_path, out):
    """The add-on's progressive viewport renderer (a fresh process: it imports bpy, which must not share a
    process with torch): time to its first drawable frame and to the full 640x360 frame."""
    import subprocess

    p = subprocess.run(
        [sys.executable, "-c", PROGRESSIVE, scene_path], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("JSON ")]
    if not line:
        out["viewport_progressive"] = f"failed: {p.stderr[-500:]}"
        return
    d = json.loads(line[0][5:])
    out["viewport_progressive_first_frame_ms"] = round(d["first_ms"], 1)
    out["viewport_progressive_first_frame_cold_ms"] = round(d["first_ms_cold"], 1)
    out["viewport_progressive_full_640x360_ms"] = round(d["full_ms"], 1)


def bench_restore(scene, cam, res, weights, out):
    from exgs_core.painter.restore import Restorer
    from exgs_core.worker import WorkerClient

    r = Restorer.from_pretrained(weights, device="cpu")
    r.restore(res.rgb, res.alpha)
    ts, _ = _times(lambda: r.restore(res.rgb, res.alpha), 3)
    out["restore_640x360_inprocess_ms"] = round(_med(ts), 1)
    w = WorkerClient(weights=weights, device="cpu")
    w.restore(res.rgb, res.alpha)
    ts, _ = _times(lambda: w.restore(res.rgb, res.alpha), 3)
    out["restore_640x360_worker_ms"] = round(_med(ts), 1)
    w.stop()
    return r


def orbit_path(scene, n, w, h, deg_per_frame=0.6, zoom=0.45):
    """A slow orbit around the scene's centre about the automatic view's up axis, looking at the centre from
    ``zoom`` x the automatic view's distance."""
    from exgs_core import views
    from exgs_core.camera import Camera

    base = views.auto_views(scene, 3, w, h)[1]
    centre = np.median(scene.means, 0).astype(np.float64)  # where the splats are (bounds may be lopsided)
    c2w = base.camera_to_world
    up = -c2w[:3, 1] / np.linalg.norm(c2w[:3, 1])  # OpenCV: +y is down
    lo, hi = scene.robust_bounds()
    eye0 = centre + (c2w[:3, 3] - (lo + hi) / 2) * zoom
    cams = []
    for i in range(n):
        a = np.deg2rad(deg_per_frame * i)
        k = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
        R = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k  # Rodrigues
        eye = centre + R @ (eye0 - centre)
        cams.append(Camera.look_at(eye, centre, up, np.rad2deg(base.fov_y), w, h))
    return cams


def bench_flicker(scene, restorer, ratio, frames, size, out, png=None, zoom=0.45):
    from exgs_core import temporal
    from exgs_core.compress import CompressOptions, prune
    from exgs_core.metrics import psnr
    from exgs_core.painter.classical import classical_restore
    from exgs_core.render import render

    t = time.perf_counter()
    small, _, _ = prune(scene, CompressOptions(ratio=ratio))
    out["flicker_prune_s"] = round(time.perf_counter() - t, 1)
    w, h = size
    cams = orbit_path(scene, frames, w, h, zoom=zoom)
    seqs = {
        "reference (uncompressed)": [],
        "unrestored": [],
        "classical fill": [],
        "GaussPainter": [],
        "GaussPainter + temporal": [],
    }
    st = temporal.TemporalStabilizer()
    tt, fg = [], []
    for cam in cams:
        full = render(scene, cam, backend="cpu")
        gt = np.clip(full.rgb, 0, 1)
        fg.append(full.alpha > 0.05)
        raw = render(small, cam, backend="cpu")
        rgb = np.clip(raw.rgb, 0, 1)
        gp = restorer.restore(rgb, raw.alpha)
        t = time.perf_counter()
        stab = st(rgb, raw.alpha, raw.depth, gp, cam)
        tt.append(time.perf_counter() - t)
        for k, v in zip(seqs, (gt, rgb, classical_restore(rgb, raw.alpha), gp, stab), strict=False):
            seqs[k].append(v)
    ref = seqs["reference (uncompressed)"]
    rows = {}
    for k, s in seqs.items():
        rows[k] = {
            "flicker": round(temporal.flicker(s) * 255, 3),
            "excess_flicker": round(temporal.excess_flicker(s, ref) * 255, 3),
            "flicker_fg": round(temporal.flicker(s, fg) * 255, 3),
            "change_vs_unrestored_fg": round(temporal.excess_flicker(s, seqs["unrestored"], fg) * 255, 3),
            "excess_flicker_fg": round(temporal.excess_flicker(s, ref, fg) * 255, 3),
            "psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(s, ref, strict=False)])), 2)
            if k != list(seqs)[0]
            else None,
        }
    out["flicker"] = rows
    out["flicker_units"] = (
        "mean |difference| x 255; _fg: over the uncompressed scene's coverage only; change_vs_unrestored: frame-to-frame change the restoration adds (excess over the unrestored sequence)"
    )
    out["flicker_setup"] = (
        f"{frames} frames {w}x{h}, orbit 0.6 deg/frame at {zoom} x the automatic view's "
        f"distance, rho {ratio} (UGC prune+merge)"
    )
    out["temporal_ms_per_frame"] = round(_med(tt), 1)
    out["temporal_valid_fraction_last"] = round(st.last_valid_fraction, 3)
    if png:
        from PIL import Image

        os.makedirs(png, exist_ok=True)
        i = len(cams) // 2
        row = np.concatenate([s[i] for s in seqs.values()], 1)
        Image.fromarray((np.clip(row, 0, 1) * 255 + 0.5).astype(np.uint8)).save(os.path.join(png, "flicker_mid.png"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default=os.path.join(ROOT, "examples", "playcanvas_biker.spz"))
    ap.add_argument(
        "--weights",
        default=None,
        help="weights folder, or 'random' (an untrained tiny model: a stress case for temporal stabilisation)",
    )
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", default="384x216")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--zoom", type=float, default=0.45, help="camera distance as a fraction of the automatic view's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: roundtrip,viewport,restore,flicker")
    ap.add_argument("--json", default=None)
    ap.add_argument("--png", default=None, help="folder for a side-by-side of the middle frame")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    import exgs_core as ex

    skip = set(a.skip.split(",")) - {""}
    out = {"cpu_count": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()]}
    weights, how = pick_weights(a.weights)
    out["weights"] = how
    if "roundtrip" not in skip:
        bench_roundtrip(out)
        print(json.dumps(out, indent=1), flush=True)
    scene = ex.load(a.scene)
    cam, res = bench_viewport(scene, out)
    if "viewport" not in skip:
        bench_viewport_progressive(a.scene, out)
    print(json.dumps(out, indent=1), flush=True)
    restorer = None
    if "restore" not in skip:
        restorer = bench_restore(scene, cam, res, weights, out)
        print(json.dumps(out, indent=1), flush=True)
    if "flicker" not in skip:
        if restorer is None:
            from exgs_core.painter.restore import Restorer

            restorer = Restorer.from_pretrained(weights, device="cpu")
        w, h = (int(x) for x in a.size.split("x"))
        bench_flicker(scene, restorer, a.ratio, a.frames, (w, h), out, a.png, a.zoom)
    out["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
