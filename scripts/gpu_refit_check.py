#!/usr/bin/env python3
"""The colour refit (issue #16 item 1) on CUDA against the CPU, on the bundled biker: a check only a GPU machine can
run (under 3 minutes on an H200, gsplat's first JIT build excluded).

The biker is pruned to 10 % as compression does (``exgs_core.compress.prune``, pairwise-kl, 24 scoring views at
256 px), then refitted on those views by :func:`exgs_core.prune.refit_colours` twice: ``backend="cpu"`` and
``backend="gsplat"``. Printed and written to ``OUT/gpu_refit_check.json``: each refit's time, its training-view
PSNR before/after, the held-out PSNR (8 ``split="eval"`` views at 384 px, all rendered on the CPU so both are
measured the same way), and how far the two refits' coefficients are apart. A third gsplat run repeats the first
(the GPU adjoint sums with atomics: it is reproducible to rounding, not bit for bit). Then the gsplat test of
``tests/test_refit.py`` runs.

Usage (on the GPU machine, torch + CUDA + gsplat 1.5.3 importable):
    python scripts/gpu_refit_check.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "out")
    ap.add_argument("--ratio", type=float, default=0.1)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    from exgs_core.compress import CompressOptions, prune, scoring_cameras
    from exgs_core.io import load
    from exgs_core.metrics import psnr
    from exgs_core.prune import refit_colours
    from exgs_core.render import has_gsplat, prepare, render
    from exgs_core.views import auto_views

    res: dict = {"machine": platform.node(), "python": sys.version.split()[0], "has_gsplat": has_gsplat()}
    try:
        import gsplat
        import torch

        res |= {"torch": torch.__version__, "gsplat": gsplat.__version__, "gpu": torch.cuda.get_device_name(0)}
    except Exception as e:  # noqa: BLE001 - reported, the CPU half still runs
        res["import_error"] = f"{type(e).__name__}: {e}"

    def save():
        (args.out / "gpu_refit_check.json").write_text(json.dumps(res, indent=1, default=float))

    scene = load(REPO / "examples" / "playcanvas_biker.spz")
    opts = CompressOptions(ratio=args.ratio, compensation="pairwise-kl")
    t = time.perf_counter()
    pruned, full, _ = prune(scene, opts)
    res["prune_s"] = round(time.perf_counter() - t, 2)
    cams = scoring_cameras(scene, opts, None)
    held = auto_views(scene, 8, 384, 384, split="eval")
    ref_prep = prepare(scene, "cpu")
    refs = [render(scene, c, backend="cpu", prepared=ref_prep).rgb for c in held]

    def held_psnr(x):
        p = prepare(x, "cpu")
        return float(
            np.mean([psnr(r, render(x, c, backend="cpu", prepared=p).rgb) for c, r in zip(held, refs, strict=False)])
        )

    res["held_psnr_pruned"] = round(held_psnr(pruned), 3)
    print(f"pruned {scene.n:,} -> {pruned.n:,}: held-out {res['held_psnr_pruned']} dB", flush=True)
    outs = {}
    runs = [("cpu", "cpu"), ("gsplat", "gsplat"), ("gsplat_again", "gsplat")] if has_gsplat() else [("cpu", "cpu")]
    for name, backend in runs:
        refit_colours(pruned, scene, cams[:1], iterations=1, sh_full=full, backend=backend)  # compile / JIT warm-up
        t = time.perf_counter()
        out, rep = refit_colours(pruned, scene, cams, sh_full=full, backend=backend)
        secs = time.perf_counter() - t
        outs[name] = out
        res[name] = {
            "seconds": round(secs, 3),
            "train_psnr_before": round(rep.psnr_before, 3),
            "train_psnr_after": round(rep.psnr_after, 3),
            "held_psnr_after": round(held_psnr(out), 3),
            "iterations": rep.iterations,
            "objective": [round(v, 5) for v in rep.objective],
            "step": rep.step,
            "coefficients": rep.coefficients,
            "clamped": rep.clamped,
        }
        print(f"{name}: {json.dumps(res[name])}", flush=True)
        save()
    if "gsplat" in outs:
        a, b, c = outs["cpu"].sh, outs["gsplat"].sh, outs["gsplat_again"].sh
        res["max_abs_dsh_cpu_vs_gsplat"] = float(np.abs(a - b).max())
        res["mean_abs_dsh_cpu_vs_gsplat"] = float(np.abs(a - b).mean())
        res["max_abs_dsh_gsplat_repeat"] = float(np.abs(b - c).max())
    save()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "test_refit.py")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    res["pytest"] = r.stdout.strip().splitlines()[-1:] + ([r.stderr[-500:]] if r.returncode else [])
    save()
    print(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
