#!/usr/bin/env python
"""Benchmark the CPU renderer (exgs_core.render, backend="cpu") against the project's two speed targets.

Targets:
  1. >= 10 frames/s at 512 x 512 for the 152,746-Gaussian biker scene;
  2. <= 3 s for 1,000,000 Gaussians at 1920 x 1080 (a synthetic scene: the biker replicated and jittered).

It prints machine facts, the scene, N, the resolution, JIT times (compile into an empty numba cache, then load from
that cache, each in a fresh subprocess), and mean / min / median frame times over repeated frames.

Example:
    python scripts/bench_render.py
    python scripts/bench_render.py --frames 30 --big-frames 5 --no-jit
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_SCENE = REPO.parent / "shared" / "data" / "reference-ply" / "playcanvas_biker.from-spz.ply"


def read_scene(path: Path):
    """A GaussianScene from a 3DGS PLY (read here with plyfile), or from any format exgs_core.load knows."""
    from exgs_core import GaussianScene

    if path.suffix.lower() == ".ply":
        try:
            from plyfile import PlyData

            v = PlyData.read(str(path))["vertex"].data
            if "f_dc_0" in v.dtype.names and "chunk" not in path.name:

                def cols(*ns):
                    return np.stack([np.asarray(v[k], np.float32) for k in ns], 1)

                rest = sorted((k for k in v.dtype.names if k.startswith("f_rest_")), key=lambda k: int(k[7:]))
                k = len(rest) // 3 + 1
                sh = np.zeros((len(v), k, 3), np.float32)
                sh[:, 0] = cols("f_dc_0", "f_dc_1", "f_dc_2")
                if rest:
                    sh[:, 1:] = cols(*rest).reshape(len(v), 3, k - 1).transpose(0, 2, 1)
                return GaussianScene(
                    cols("x", "y", "z"),
                    cols("rot_0", "rot_1", "rot_2", "rot_3"),
                    cols("scale_0", "scale_1", "scale_2"),
                    np.asarray(v["opacity"], np.float32),
                    sh,
                    meta={"path": str(path)},
                )
        except (ImportError, KeyError, ValueError):
            pass
    import exgs_core

    return exgs_core.load(path)  # needs the matching reader in exgs_core.io


def orbit_camera(scene, width, height, *, up, azimuth_deg=30.0, elevation_deg=15.0, fov_y_deg=50.0, closeness=1.0):
    """A camera on a circle around the scene's robust centre, far enough that its robust bounding sphere fits
    (``closeness`` < 1 moves it in by that factor: a close-up that fills more of the frame)."""
    from exgs_core import Camera

    lo, hi = scene.robust_bounds()
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo) / 2)
    up = np.asarray(up, np.float64) / np.linalg.norm(up)
    # two horizontal axes perpendicular to up
    a = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 0, 1.0])
    e1 = np.cross(up, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    direction = np.cos(el) * (np.cos(az) * e1 + np.sin(az) * e2) + np.sin(el) * up
    fov = np.radians(min(fov_y_deg, fov_y_deg * width / height))
    dist = radius / np.sin(fov / 2) * 1.05 * closeness
    return Camera.look_at(centre + dist * direction, centre, up, fov_y_deg, width, height)


def replicate(scene, n, rng, jitter_frac):
    """n Gaussians: copies of ``scene`` (cycled), positions jittered by N(0, jitter_frac * robust extent)."""
    lo, hi = scene.robust_bounds()
    idx = np.resize(np.arange(scene.n), n)
    big = scene.subset(idx)
    big.means = (big.means + rng.normal(0, jitter_frac * float(np.linalg.norm(hi - lo)), big.means.shape)).astype(
        np.float32
    )
    return big


def time_frames(scene, camera, frames):
    from exgs_core.render import render

    t0 = time.perf_counter()
    res = render(scene, camera, backend="cpu")
    first = time.perf_counter() - t0
    ts = []
    for _ in range(frames):
        t0 = time.perf_counter()
        res = render(scene, camera, backend="cpu")
        ts.append(time.perf_counter() - t0)
    return first, np.array(ts), res


def report(first, ts, res, unit):
    k = 1000.0 if unit == "ms" else 1.0
    print(f"  first call in this process: {first * k:.3f} {unit}")
    print(
        f"  frame time mean {ts.mean() * k:.3f} {unit}, median {np.median(ts) * k:.3f} {unit}, "
        f"min {ts.min() * k:.3f} {unit}"
    )
    print(
        f"  rendered {res.n_rendered:,} Gaussians, {res.stats['n_intersections']:,} tile intersections; last frame: "
        + ", ".join(f"{key[2:]} {v * 1000:.1f} ms" for key, v in res.stats.items() if key.startswith("t_"))
    )


def save(folder, res, name):
    if folder is None:
        return
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(res.to_uint8()).save(folder / name)


JIT_SNIPPET = r"""
import sys, time, numpy as np
sys.path.insert(0, {repo!r})
from exgs_core import Camera, GaussianScene
rng = np.random.default_rng(0)
s = GaussianScene(rng.normal(0, 1, (1000, 3)) + [0, 0, 6], rng.normal(size=(1000, 4)), np.full((1000, 3), -3.0),
                  np.zeros(1000), rng.normal(size=(1000, 1, 3)))
cam = Camera(np.eye(4), 100.0, 100.0, 64.0, 64.0, 128, 128)
t0 = time.perf_counter()
from exgs_core.render import render
render(s, cam, backend="cpu", return_weights=True)
t1 = time.perf_counter()
render(s, cam, backend="cpu", return_weights=True)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def jit_times():
    """(compile seconds, cached-load seconds): first-call overhead in fresh processes with an empty, then a warm,
    private numba cache directory (the first render minus the second, on a tiny scene)."""
    out = []
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for _ in range(2):
            r = subprocess.run(
                [sys.executable, "-c", JIT_SNIPPET.format(repo=str(REPO))],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            first, second = map(float, r.stdout.split())
            out.append(first - second)
    return out[0], out[1]


def machine_info():
    import numba

    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from exgs_core.render import render  # noqa: F401  (so numba's threading layer is initialised below)

    return {
        "cpu": cpu,
        "os.cpu_count": os.cpu_count(),
        "numba threads": numba.get_num_threads(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load average (1, 5, 15 min) at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE, help="scene file (default: the biker reference PLY)")
    ap.add_argument(
        "--up",
        default="0,1,0",
        help="world up vector for the orbit camera (default 0,1,0: this biker PLY decode is y-up)",
    )
    ap.add_argument("--frames", type=int, default=20, help="timed frames at 512x512 (default 20)")
    ap.add_argument("--big-n", type=int, default=1_000_000, help="Gaussians in the synthetic scene (default 1e6)")
    ap.add_argument("--big-frames", type=int, default=3, help="timed frames at 1920x1080 (default 3)")
    ap.add_argument(
        "--jitter",
        type=float,
        default=0.002,
        help="position jitter of the replicas, fraction of the robust extent (default 0.002)",
    )
    ap.add_argument(
        "--closeup",
        type=float,
        default=0.4,
        help="distance factor of the second (close-up) view of each target (default 0.4)",
    )
    ap.add_argument("--no-jit", action="store_true", help="skip the JIT compile / cache-load measurement")
    ap.add_argument("--save", type=Path, default=None, help="write the 512x512 and 1080p renders as PNGs here")
    args = ap.parse_args(argv)

    print("== machine")
    for k, v in machine_info().items():
        print(f"  {k}: {v}")
    if not args.no_jit:
        compile_s, load_s = jit_times()
        print("== JIT (fresh processes, private numba cache)")
        print(f"  first-call overhead, empty cache (compile + write cache): {compile_s:.2f} s")
        print(f"  first-call overhead, warm cache (load):                   {load_s:.2f} s")

    up = [float(x) for x in args.up.split(",")]
    t0 = time.perf_counter()
    scene = read_scene(args.scene)
    print(
        f"== scene: {args.scene} ({scene.n:,} Gaussians, SH{scene.sh_degree}), loaded in "
        f"{time.perf_counter() - t0:.2f} s"
    )

    results = {}
    views = [("framing view", 1.0), (f"close-up ({args.closeup}x the distance)", args.closeup)]
    for name, closeness in views:
        cam = orbit_camera(scene, 512, 512, up=up, closeness=closeness)
        first, ts, res = time_frames(scene, cam, args.frames)
        fps = 1.0 / ts.mean()
        print(f"== target 1: {scene.n:,} Gaussians at 512x512, {name}, {args.frames} frames")
        report(first, ts, res, "ms")
        print(f"  -> {fps:.1f} fps (mean), {1 / ts.min():.1f} fps (best); {100 * res.alpha.mean():.0f} % coverage")
        results[f"target 1, {name} (>= 10 fps, mean)"] = fps >= 10.0
        save(args.save, res, f"bench_512_{closeness}.png")

    rng = np.random.default_rng(0)
    big = replicate(scene, args.big_n, rng, args.jitter)
    print(
        f"== synthetic scene: {big.n:,} Gaussians = the scene replicated {big.n / scene.n:.2f}x (cycled), positions "
        f"jittered by N(0, {args.jitter} x robust extent), seed 0"
    )
    for name, closeness in views:
        cam = orbit_camera(big, 1920, 1080, up=up, closeness=closeness)
        first, ts, res = time_frames(big, cam, args.big_frames)
        print(f"== target 2: {big.n:,} Gaussians at 1920x1080, {name}, {args.big_frames} frames")
        report(first, ts, res, "s")
        print(f"  -> {100 * res.alpha.mean():.0f} % coverage")
        results[f"target 2, {name} (<= 3 s, mean)"] = ts.mean() <= 3.0
        save(args.save, res, f"bench_1080p_{closeness}.png")

    print(
        f"== load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other processes on the machine inflate every timing above)"
    )
    print("== targets")
    for k, ok in results.items():
        print(f"  {k}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
