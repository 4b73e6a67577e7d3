#!/usr/bin/env python
"""Benchmark GaussPainter on the held-out validation scenes (never trained on).

For each validation scene (biker, guitar, fourth_st house; see scripts/make_painter_data.py) and retention
ratio 0.25 / 0.1 / 0.05 (sh_keep 0.1), on 8 held-out ``eval`` views at 512x512, black background, reports
PSNR / SSIM against the full scene's renders of: the unrestored render, the classical baseline
(coverage-aware normalised-convolution fill + unsharp, :mod:`exgs_core.painter.classical`) and GaussPainter;
plus PSNR on visible pixels only (input alpha >= 0.5) and inside thinned pixels (input alpha < 0.5 where the
full render has alpha >= 0.5). Then times one frame at 512x512 and 1920x1080 (median of ``--reps``).

    .venv/bin/python scripts/bench_painter.py [--weights DIR] [--data out/painter_data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def _median_time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="weights folder (default: the shipped checkpoint)")
    ap.add_argument("--data", default=os.path.join(ROOT, "out", "painter_data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    import make_painter_data as mpd

    from exgs_core.metrics import psnr, ssim
    from exgs_core.painter import classical
    from exgs_core.painter import data as pdata
    from exgs_core.painter.restore import Restorer

    for name in mpd.VAL_SCENES:
        stem = os.path.splitext(name)[0].replace(".compressed", "")
        if not os.path.isfile(os.path.join(args.data, f"val_{stem}.npz")):
            os.makedirs(args.data, exist_ok=True)
            mpd.make_scene(name, args.data, 512, 0, 40, 6)
    r = Restorer.from_pretrained(args.weights, device=args.device)
    rows = {}
    per_scene = {}
    for name in mpd.VAL_SCENES:
        stem = os.path.splitext(name)[0].replace(".compressed", "")
        sc = pdata.SceneCache(os.path.join(args.data, f"val_{stem}.npz"))
        for ri, ratio in enumerate(sc.ratios):
            key = f"{ratio:.2f}"
            for v in range(sc.n_views):
                x, a, t = sc.frame(ri, v)
                ta = sc.target_alpha[v].astype(np.float32) / 255
                vis = a >= 0.5
                thin = (a < 0.5) & (ta >= 0.5)
                outs = {
                    "unrestored": x,
                    "classical": classical.classical_restore(x, a),
                    "gausspainter": r.restore(x, a),
                }
                for meth, y in outs.items():
                    d = rows.setdefault(key, {}).setdefault(
                        meth, {"psnr": [], "ssim": [], "psnr_vis": [], "psnr_thin": []}
                    )
                    d["psnr"].append(psnr(y, t))
                    d["ssim"].append(ssim(y, t))
                    d["psnr_vis"].append(psnr(y, t, vis))
                    if thin.sum() >= 50:
                        d["psnr_thin"].append(psnr(y, t, thin))
                    per_scene.setdefault(f"{stem} {key}", {}).setdefault(meth, []).append(psnr(y, t))
    summary = {
        k: {m: {q: round(float(np.nanmean(vals)), 3) if vals else None for q, vals in d.items()} for m, d in ms.items()}
        for k, ms in rows.items()
    }
    scenes = {k: {m: round(float(np.mean(v)), 3) for m, v in ms.items()} for k, ms in per_scene.items()}

    # timing: a real validation frame at 512x512 and the biker scene rendered (pruned, 0.1) at 1920x1080
    import exgs_core as ex
    from exgs_core.compress import CompressOptions, prune
    from exgs_core.views import auto_views

    sc = pdata.SceneCache(os.path.join(args.data, "val_playcanvas_biker.npz"))
    x, a, _ = sc.frame(1, 0)
    scene, _ = ex.load(os.path.join(mpd.SCENE_DIR, "playcanvas_biker.spz")).sanitize()
    pruned, _, _ = prune(scene, CompressOptions(ratio=0.1, sh_keep=0.1))
    cam = auto_views(scene, 1, 1920, 1080, split="eval")[0]
    hd = ex.render(pruned, cam, backend="cpu")
    timing = {
        "classical_512_ms": _median_time(lambda: classical.classical_restore(x, a), args.reps),
        "gausspainter_512_ms": _median_time(lambda: r.restore(x, a), args.reps),
        "gausspainter_512_batch4_ms_per_frame": _median_time(
            lambda: r.restore(np.stack([x] * 4), np.stack([a] * 4)), max(1, args.reps // 2)
        )
        / 4,
        "classical_1080p_ms": _median_time(
            lambda: classical.classical_restore(hd.rgb, hd.alpha), max(1, args.reps // 2)
        ),
        "gausspainter_1080p_ms": _median_time(lambda: r.restore(hd.rgb, hd.alpha), max(1, args.reps // 2)),
    }
    timing = {k: round(v, 1) for k, v in timing.items()}
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "weights": args.weights or "shipped",
        "load_avg": os.getloadavg(),
    }
    out = {"summary": summary, "per_scene_psnr": scenes, "timing": timing, "env": env}

    print(
        "| retention | method | PSNR | SSIM | PSNR visible (alpha_in>=0.5) | PSNR thinned (alpha_in<0.5<=alpha_full) |"
    )
    print("|---|---|---|---|---|---|")
    for k in sorted(summary, key=float, reverse=True):
        for m, d in summary[k].items():
            print(
                f"| {k} | {m} | {d['psnr']:.2f} | {d['ssim']:.4f} | {d['psnr_vis']:.2f} | "
                f"{d['psnr_thin'] if d['psnr_thin'] is None else round(d['psnr_thin'], 2)} |"
            )
    print()
    print("| scene, retention | unrestored | classical | GaussPainter |")
    print("|---|---|---|---|")
    for k, d in scenes.items():
        print(f"| {k} | {d['unrestored']:.2f} | {d['classical']:.2f} | {d['gausspainter']:.2f} |")
    print()
    print(json.dumps({"timing": timing, "env": env}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
