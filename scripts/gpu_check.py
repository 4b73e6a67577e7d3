#!/usr/bin/env python3
"""The checks only a CUDA machine can run: gsplat against our CPU rasterizer on the bundled biker scene, UGC's
significance score from both backends, compression with GPU scoring, CUDA render and GaussPainter speed.

Every section is timed and appended to ``OUT/gpu_check.json`` as soon as it finishes (a run cut short keeps what
it measured). The CPU side of each comparison uses numba with ``--cpu-threads`` threads (default 2, as on our
build machines), so "CPU" times here are comparable with BENCHMARKS.md's 2-core numbers only roughly (another CPU).

Usage (on the GPU machine, with torch + CUDA, gsplat 1.5.3, diffusers importable):
    python scripts/gpu_check.py --out DIR [--skip-compress]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

RESULTS: dict = {}


def _save(out: Path) -> None:
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(RESULTS, indent=1, default=float))
    os.replace(tmp, out / "gpu_check.json")


def section(name, out):
    def deco(fn):
        t = time.perf_counter()
        try:
            RESULTS[name] = fn()
        except Exception as e:  # a failed section is recorded, the next one still runs
            RESULTS[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        RESULTS[name + "_seconds"] = round(time.perf_counter() - t, 2)
        print(
            f"== {name} ({RESULTS[name + '_seconds']} s)\n{json.dumps(RESULTS[name], indent=1, default=float)[:4000]}",
            flush=True,
        )
        _save(out)
        return fn

    return deco


DRY = False


def _median_ms(fn, reps: int) -> float:
    """Median ms of ``reps`` calls after one warm-up call (one timed call in a dry run)."""
    from bench_painter import _median_time

    return round(_median_time(fn, 1 if DRY else reps), 2)


def _cameras(scene, n, w, h):
    from exgs_core.views import auto_views

    return auto_views(scene, n, w, h, split="eval")


def _psnr(a, b):
    from exgs_core.metrics import psnr

    return round(float(min(psnr(a, b), 100.0)), 2)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--skip-compress", action="store_true")
    ap.add_argument("--skip-painter", action="store_true")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="check this script on a machine without CUDA: 'gsplat' renders and 'cuda' run on the CPU, "
        "small scenes, few repetitions (the numbers mean nothing)",
    )
    args = ap.parse_args(argv)
    gs = "cpu" if args.dry_run else "gsplat"
    cuda = "cpu" if args.dry_run else "cuda"
    big_n = 20_000 if args.dry_run else 1_000_000
    global DRY
    DRY = args.dry_run
    args.out.mkdir(parents=True, exist_ok=True)

    import numba
    import torch

    numba.set_num_threads(min(args.cpu_threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.cpu_threads)
    import exgs_core
    import exgs_core.render as R
    from exgs_core.render import render

    biker = exgs_core.load(REPO / "examples" / "playcanvas_biker.spz")

    @section("env", args.out)
    def _():
        try:
            import gsplat
        except ImportError:
            gsplat = None
        t = time.perf_counter()
        ok = R.has_gsplat()
        return {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "gsplat": gsplat and gsplat.__version__,
            "has_gsplat": ok,
            "gsplat_probe_s": round(time.perf_counter() - t, 1),
            "cpu_cores": os.cpu_count(),
            "numba_threads": numba.get_num_threads(),
            "bf16": bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
        }

    @section("parity_biker", args.out)
    def _():
        rows = []
        for w, h in [(640, 360), (1920, 1080)]:
            for cam in _cameras(biker, 4, w, h):
                c = render(biker, cam, backend="cpu", return_weights=True)
                g = render(biker, cam, backend=gs, return_weights=True)
                d = np.abs(c.rgb - g.rgb).max(-1)
                if cam.name.endswith("_000"):  # the first view of each size, to look at
                    from exgs_core.cli import write_png

                    diff = np.repeat(np.clip(d * 10, 0, 1)[..., None], 3, -1)
                    write_png(args.out / f"parity_{w}x{h}.png", np.concatenate([c.rgb, g.rgb, diff], 1))
                wc, wg = c.weights, g.weights
                k = max(1, int(0.1 * (wc > 0).sum()))
                top = len(np.intersect1d(np.argsort(-wc)[:k], np.argsort(-wg)[:k])) / k
                rows.append(
                    {
                        "size": f"{w}x{h}",
                        "view": cam.name,
                        "max_abs_rgb": round(float(d.max()), 5),
                        "mean_abs_rgb": float(d.mean()),
                        "frac_within_1_255": float((d < 1 / 255).mean()),
                        "max_abs_alpha": round(float(np.abs(c.alpha - g.alpha).max()), 5),
                        "psnr_cpu_vs_gsplat": _psnr(c.rgb, g.rgb),
                        "n_rendered_cpu": c.n_rendered,
                        "n_rendered_gsplat": g.n_rendered,
                        "weights_rel_l1": float(np.abs(wc - wg).sum() / max(wc.sum(), 1e-12)),
                        "top10pct_overlap": round(top, 4),
                    }
                )
        return rows

    @section("render_speed", args.out)
    def _():
        rng = np.random.default_rng(0)
        lo, hi = biker.robust_bounds()
        big = biker.subset(np.resize(np.arange(biker.n), big_n))
        big.means = (big.means + rng.normal(0, 0.002 * float(np.linalg.norm(hi - lo)), big.means.shape)).astype(
            np.float32
        )
        out = []
        for name, sc, sizes in [
            ("biker 152,746", biker, [(640, 360), (512, 512), (1920, 1080)]),
            (f"biker x {big_n:,}", big, [(1920, 1080)]),
        ]:
            for w, h in sizes:
                cam = _cameras(sc, 1, w, h)[0]
                gp = R.prepare(sc, gs)  # uploaded once (what scoring, the worker and the viewport do)
                row = {
                    "scene": name,
                    "size": f"{w}x{h}",
                    "gsplat_ms": _median_ms(lambda: render(sc, cam, backend=gs), 20),
                    "gsplat_prepared_ms": _median_ms(lambda: render(sc, cam, backend=gs, prepared=gp), 20),
                    "gsplat_weights_ms": _median_ms(lambda: render(sc, cam, backend=gs, return_weights=True), 10),
                }
                prep = R.PreparedScene(sc)
                row[f"cpu_{args.cpu_threads}threads_ms"] = _median_ms(
                    lambda: R._render(sc, cam, prep, backend="cpu"), 3 if sc.n > 500_000 else 5
                )
                out.append(row)
        return out

    def painter():
        from exgs_core.painter.restore import Restorer

        rng = np.random.default_rng(0)
        rows = []
        variants = [
            ("cuda bf16", dict(device=cuda)),
            ("cuda fp32", dict(device=cuda, half=False)),
            (f"cpu fp32 {args.cpu_threads} threads", dict(device="cpu")),
        ]
        for label, kw in variants:
            r = Restorer.from_pretrained(**kw)
            for w, h in [(512, 512), (1920, 1080)]:
                a = (rng.random((h, w)) < 0.8).astype(np.float32)
                rgb = rng.random((h, w, 3)).astype(np.float32) * a[..., None]
                reps = 3 if label.startswith("cpu") else 20
                rows.append(
                    {
                        "variant": label,
                        "half": r.half,
                        "size": f"{w}x{h}",
                        "ms_per_frame": _median_ms(lambda: r.restore(rgb, a), reps),
                    }
                )
            if label.startswith("cuda"):
                rgb8 = rng.random((8, 512, 512, 3)).astype(np.float32)
                a8 = (rng.random((8, 512, 512)) < 0.8).astype(np.float32)
                rows.append(
                    {
                        "variant": label,
                        "size": "batch of 8 x 512x512",
                        "ms_per_frame": round(_median_ms(lambda: r.restore(rgb8, a8), 5) / 8, 2),
                    }
                )
        return rows

    if not args.skip_painter:
        section("painter", args.out)(painter)

    if not args.skip_compress:

        @section("compress_biker", args.out)
        def _():
            from exgs_core.cli import evaluate
            from exgs_core.compress import CompressOptions, compress, decompress

            eval_cams = _cameras(biker, 8, 512, 512)
            rows = []
            real = R.has_gsplat
            for backend in ("gsplat", "cpu"):
                for ratio in (0.1, 0.05):
                    R.has_gsplat = real if backend == "gsplat" else (lambda: False)  # what backend="auto" picks
                    try:
                        t = time.perf_counter()
                        data, rep = compress(biker, CompressOptions(ratio=ratio))
                        enc = time.perf_counter() - t
                    finally:
                        R.has_gsplat = real
                    ev = evaluate(biker, decompress(data), eval_cams, backend=gs)
                    rows.append(
                        {
                            "scoring_backend": backend,
                            "ratio": ratio,
                            "encode_s": round(enc, 2),
                            "bytes": len(data),
                            "gaussians": rep.gaussians_out,
                            "psnr_heldout": round(ev["psnr"], 3),
                            "ssim_heldout": round(ev["ssim"], 4),
                            "stages_s": rep.seconds,
                            "amplification": rep.amplification,
                        }
                    )
            return rows

        @section("compress_1m", args.out)
        def _():
            from exgs_core.compress import CompressOptions, compress

            rng = np.random.default_rng(0)
            idx = np.tile(np.arange(biker.n), -(-big_n // biker.n))[:big_n]
            big = biker.subset(idx)
            ext = np.quantile(biker.means, 0.98, 0) - np.quantile(biker.means, 0.02, 0)
            big.means = (big.means + rng.normal(scale=0.002 * ext.max(), size=big.means.shape)).astype(np.float32)
            rows = []
            for comp in ("auto", "pairwise"):
                t = time.perf_counter()
                data, rep = compress(big, CompressOptions(ratio=0.1, compensation=comp))
                rows.append(
                    {
                        "compensation": comp,
                        "encode_s_gsplat_scoring": round(time.perf_counter() - t, 2),
                        "bytes": len(data),
                        "stages_s": getattr(rep, "seconds", None),
                    }
                )
            return rows

    print(json.dumps({k: v for k, v in RESULTS.items() if k.endswith("_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
