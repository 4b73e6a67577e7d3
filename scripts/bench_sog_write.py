#!/usr/bin/env python3
"""SOG writer (exgs_core.io.sog_write) against PlayCanvas splat-transform 3.10.2 on the same input.

For each scene: the scene is written as a 3DGS PLY (the common input), then encoded by exgs (in-process
``encode_sog`` time, and the wall time of load + encode + write) and by ``splat-transform -g cpu in.ply out.sog``
(wall time of the process, under ``nice -n 10``). Both bundles are decoded by exgs_core.io.sog.read_sog and rendered
(CPU renderer, automatic views) against the original: mean PSNR over the views. Prints sizes, times, PSNRs.

Usage:
    .venv/bin/python scripts/bench_sog_write.py SCENE [SCENE ...] [--views 8] [--size 256] [--no-splat-transform]
    .venv/bin/python scripts/bench_sog_write.py --tile-1m examples/playcanvas_biker.spz   # 1,000,000 Gaussians

``--tile-1m`` repeats the scene to 1,000,000 Gaussians and jitters every centre by N(0, 0.002 x robust extent)
(seed 0), as scripts/bench_compress_1m.py builds its 1M scene. EXGS_SPLAT_TRANSFORM overrides the tool's path.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exgs_core.io import load  # noqa: E402
from exgs_core.io.ply import write_ply  # noqa: E402
from exgs_core.io.sog import read_sog  # noqa: E402
from exgs_core.io.sog_write import encode_sog  # noqa: E402
from exgs_core.io.spz import to_ply_axes  # noqa: E402

TOOL = Path(os.environ.get("EXGS_SPLAT_TRANSFORM", ROOT / ".tools" / "node_modules" / ".bin" / "splat-transform"))


def tile(scene, n: int):
    rng = np.random.default_rng(0)
    idx = np.tile(np.arange(scene.n), -(-n // scene.n))[:n]
    big = scene.subset(idx)
    ext = np.quantile(scene.means, 0.98, 0) - np.quantile(scene.means, 0.02, 0)
    big.means = (big.means + rng.normal(scale=0.002 * ext.max(), size=big.means.shape)).astype(np.float32)
    return big


def mean_psnr(ref, test, cams) -> float:
    from exgs_core.metrics import psnr
    from exgs_core.render import render

    vals = [psnr(render(ref, c, backend="cpu").rgb, render(test, c, backend="cpu").rgb) for c in cams]
    return float(np.mean(vals))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+")
    ap.add_argument("--tile-1m", action="store_true", help="repeat each scene to 1,000,000 Gaussians")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--no-splat-transform", action="store_true")
    ap.add_argument("--no-render", action="store_true")
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for path in args.scenes:
        scene = to_ply_axes(load(path))
        if args.tile_1m:
            scene = tile(scene, 1_000_000)
        name = Path(path).name
        with tempfile.TemporaryDirectory(prefix="exgs-sog-bench-") as d:
            ply = os.path.join(d, "in.ply")
            write_ply(scene, ply)
            t = time.perf_counter()
            s = load(ply)
            t_load = time.perf_counter() - t
            t = time.perf_counter()
            data, rep = encode_sog(s)
            t_enc = time.perf_counter() - t
            ours = os.path.join(d, "ours.sog")
            with open(ours, "wb") as f:
                f.write(data)
            print(
                f"{name}: N={scene.n:,} SH{scene.sh_degree} aa={scene.antialiased}  exgs: {len(data):,} bytes, "
                f"encode {t_enc:.2f} s (load {t_load:.2f} s)",
                flush=True,
            )
            dec = {"exgs": read_sog(ours)}
            if not args.no_splat_transform and TOOL.exists():
                st = os.path.join(d, "st.sog")
                t = time.perf_counter()
                r = subprocess.run(
                    ["nice", "-n", "10", str(TOOL), "-q", "-w", "-g", "cpu", ply, st], capture_output=True, text=True
                )
                t_st = time.perf_counter() - t
                if r.returncode:
                    print(f"  splat-transform failed: {r.stderr[-500:]}")
                else:
                    print(f"  splat-transform: {os.path.getsize(st):,} bytes, {t_st:.2f} s wall (process)", flush=True)
                    dec["splat-transform"] = read_sog(st)
            if not args.no_render:
                from exgs_core.views import auto_views

                cams = auto_views(scene, args.views, args.size, args.size, split="eval")
                for k, v in dec.items():
                    print(f"  PSNR {k} vs original: {mean_psnr(scene, v, cams):.2f} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
