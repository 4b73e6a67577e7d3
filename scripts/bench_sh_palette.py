#!/usr/bin/env python3
"""The smaller SH palette of the codec choice (``exgs_core.compress.small_sh_palette``) at EQUAL BYTES.

Per scene and retention rho: ``compress(scene, CompressOptions(ratio=rho, head="off"))`` as the defaults do it (the
codec choice may take the smaller palette), then the same compressor with the smaller palette switched off,
size-searched to at most those bytes (``target_bytes``). Both files are decoded and rendered on 8 held-out ``eval``
views at 512x512 over black (never seen by the compressor) against the full scene: PSNR (mean of per-view) and
MS-SSIM (``exgs_core.msssim``, piq's measure). Scene head off, so the Gaussians and their coding are compared alone.

    .venv/bin/python scripts/bench_sh_palette.py [--scenes NAME ...] [--ratios 0.1 0.02] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SCENE_DIR = os.path.join(ROOT, "..", "shared", "data", "scenes")
#: The shared scenes with higher SH (the others are byte-identical with and without the smaller palette).
SCENES = [
    "kacytran_try_iter7000_sh3.ply",
    "pdal_fourth_st_sh3.spz",
    "playcanvas_flowers_lod2_sh2.sog",
    "supersplat_mixed_drops_label_crop_sh3.ply",
]


def run(name: str, ratios, views: int, size: int) -> list[dict]:
    import exgs_core.compress as C
    from exgs_core.exgs_format import decode
    from exgs_core.io import load
    from exgs_core.metrics import psnr
    from exgs_core.msssim import ms_ssim
    from exgs_core.render import prepare, render
    from exgs_core.views import auto_views

    full = load(os.path.join(SCENE_DIR, name))
    cams = auto_views(full, views, size, size, split="eval")
    pf = prepare(full)
    refs = [np.clip(render(full, c, prepared=pf).rgb, 0, 1) for c in cams]

    def score(data: bytes) -> tuple[float, float]:
        d = decode(data, max_gaussians=0)
        pd = prepare(d)
        ims = [np.clip(render(d, c, prepared=pd).rgb, 0, 1) for c in cams]
        return (
            float(np.mean([psnr(r, i) for r, i in zip(refs, ims, strict=True)])),
            float(np.mean([ms_ssim(i, r) for r, i in zip(refs, ims, strict=True)])),
        )

    rows = []
    orig = C.small_sh_palette
    for rho in ratios:
        data, rep = C.compress(full, C.CompressOptions(ratio=rho, head="off"))
        p, s = score(data)
        try:
            C.small_sh_palette = lambda m: None  # the compressor without the smaller palette
            old, rep_old = C.compress(full, C.CompressOptions(target_bytes=len(data), head="off"))
        finally:
            C.small_sh_palette = orig
        po, so = score(old)
        rows.append(
            {
                "scene": name,
                "ratio": rho,
                "palette": rep.sampling.get("codec", {}).get("sh_palette_size"),
                "bytes": len(data),
                "psnr": p,
                "msssim": s,
                "gaussians": rep.gaussians_out,
                "without_bytes": len(old),
                "without_psnr": po,
                "without_msssim": so,
                "without_gaussians": rep_old.gaussians_out,
            }
        )
        r = rows[-1]
        print(
            f"{name} rho={rho}: SH palette {r['palette'] or 'default'}, {r['bytes']:,} B, {p:.3f} dB, MS-SSIM {s:.5f} "
            f"| without, at <= those bytes: {len(old):,} B, {po:.3f} dB, {so:.5f} -> {p - po:+.3f} dB, "
            f"MS-SSIM {s - so:+.5f}",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", nargs="*", default=SCENES)
    ap.add_argument("--ratios", nargs="*", type=float, default=[0.1, 0.02])
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = [r for name in args.scenes for r in run(name, args.ratios, args.views, args.size)]
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "load_average": os.getloadavg()}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
