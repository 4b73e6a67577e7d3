#!/usr/bin/env python3
"""Calibrate GaussPainter's residual against the current compressor's output, scene head in the loop (issue 17).

The shipped network's output is ``x + r * s(alpha)``: ``x`` the render (after the file's scene head), ``r`` the
decoded latent difference / 2 (:class:`exgs_core.painter.model` ``forward``), ``s`` the residual scale, linear in
alpha between ``residual_scale_hole`` (alpha 0) and ``residual_scale_visible`` (alpha 1). That scale was calibrated
on the outputs of an older compressor (voxel sampling, amplification) without a head. This script measures, per
alpha bin, the least-squares scale the current pipeline's renders want:

1. training scenes of the painter only (never its validation scenes, which the benchmarks use): each compressed
   with the default options (head ``auto``) at each retention, 8 held-out ``eval`` views at 512x512 of the full
   and the decoded scene, the decoded render restored by the file's head first;
2. per pixel the network's raw residual ``r`` and what would help, ``t - x`` (``t`` the full scene's render);
   each view weighted by ``1 / MSE`` of its input (the fit then favours the mean of per-view PSNR, as the head's);
3. per bin: ``s_b = sum w r (t - x) / sum w r^2`` and what the shipped scale and ``s_b`` change, in dB of the
   bin's share of the error. The bins are alpha bins, each split into pixels inside the pre-fill's closing (a gap
   between splats that the network fills) and outside it (open background, translucent edges).

``--no-head`` measures what a file without a head gets (other formats, or an .exgs whose encoder kept none).

    nice -n 5 .venv/bin/python scripts/calibrate_painter.py [--ratios 0.1 0.05 0.02] [--no-head] [--out F.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SCENE_DIR = os.path.join(ROOT, "..", "shared", "data", "scenes")
#: the painter's training scenes (exgs_core/painter/weights/MODEL_CARD.md), one statue of six
SCENES = [
    "gshairlod_donut_fused_sh0.ply",
    "splatset_plant.splat",
    "marcelpadilla_academic_tarot_cards.splat",
    "playcanvas_flowers_lod2_sh2.sog",
    "playcanvas_wc_statue_massa.sog",
]
#: alpha bin edges (the last bin is alpha >= 0.98, "covered")
EDGES = (0.0, 0.02, 0.3, 0.7, 0.98, 1.0001)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ratios", nargs="*", type=float, default=[0.1, 0.05, 0.02])
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--only", nargs="*", help="substrings of scene file names")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "painter_calib.json"))
    ap.add_argument("--no-head", action="store_true", help="never apply the file's head (what a file without one gets)")
    ap.add_argument(
        "--scenes", nargs="*", help="scene file names in ../shared/data/scenes instead of the training scenes"
    )
    args = ap.parse_args(argv)

    import torch

    from exgs_core import load
    from exgs_core.codec.head import apply_head, scene_head
    from exgs_core.compress import CompressOptions, compress
    from exgs_core.io.exgs import decode
    from exgs_core.painter.classical import close_alpha
    from exgs_core.painter.model import load_painter, pad_multiple
    from exgs_core.painter.restore import DEFAULT_WEIGHTS
    from exgs_core.render import prepare, render
    from exgs_core.views import auto_views

    torch.set_num_threads(2)
    model = load_painter(DEFAULT_WEIGHTS).eval()
    cfg = model.config
    na = len(EDGES) - 1
    nb = 2 * na  # alpha bin x (inside the pre-fill's closing: a gap the painter fills | open: background)
    scenes = [s for s in (args.scenes or SCENES) if not args.only or any(o in s for o in args.only)]
    rows = []
    for name in scenes:
        full = load(os.path.join(SCENE_DIR, name))
        cams = auto_views(full, args.views, args.size, args.size, split="eval")
        pf = prepare(full)
        targets = [np.clip(render(full, c, prepared=pf).rgb, 0, 1) for c in cams]
        del pf
        for rho in args.ratios:
            t0 = time.perf_counter()
            data, rep = compress(full, CompressOptions(ratio=rho))
            dec = decode(data)
            head = None if args.no_head else scene_head(dec)
            pd = prepare(dec)
            num, den, err, n_px = np.zeros(nb), np.zeros(nb), np.zeros(nb), np.zeros(nb)
            for cam, t in zip(cams, targets, strict=True):
                r = render(dec, cam, prepared=pd)
                x = np.clip(r.rgb, 0, 1) if head is None else np.clip(apply_head(head, r.rgb, r.alpha, r.depth), 0, 1)
                a = np.clip(r.alpha, 0, 1).astype(np.float32)
                with torch.no_grad():
                    xt = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float()
                    at = torch.from_numpy(a)[None, None]
                    m = pad_multiple(cfg)
                    ph, pw = (-x.shape[0]) % m, (-x.shape[1]) % m
                    if ph or pw:
                        xt = torch.nn.functional.pad(xt, (0, pw, 0, ph), mode="replicate")
                        at = torch.nn.functional.pad(at, (0, pw, 0, ph), mode="replicate")
                    _, aux = model(xt, at, return_aux=True)
                    raw = (
                        ((aux["d_hat"] - aux["d_in"]) * 0.5)[0, :, : x.shape[0], : x.shape[1]].permute(1, 2, 0).numpy()
                    )
                want = t - x
                w = 1.0 / max(float((want**2).mean()), 1e-6)
                gap = close_alpha(torch.from_numpy(a)[None, None], int(cfg["close_radius"]))[0, 0].numpy() > 0.5
                b = np.digitize(a, EDGES[1:-1]) + na * (~gap)
                for k in range(nb):
                    sel = b == k
                    if sel.any():
                        rk, wk = raw[sel], want[sel]
                        num[k] += w * float((rk * wk).sum())
                        den[k] += w * float((rk * rk).sum())
                        err[k] += w * float((wk * wk).sum())
                        n_px[k] += sel.sum()
            row = {
                "scene": name,
                "ratio": rho,
                "bytes": len(data),
                "head": rep.sampling.get("head", {}).get("kept"),
                "num": num.tolist(),
                "den": den.tolist(),
                "err": err.tolist(),
                "pixels": n_px.tolist(),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            rows.append(row)
            s = [num[k] / den[k] if den[k] > 0 else 0.0 for k in range(nb)]
            print(
                f"{name[:28]:28s} rho {rho:<5g} file head {str(row['head']):5s} applied {head is not None!s:5s} pixel share "
                + " ".join(f"{p / max(n_px.sum(), 1):.3f}" for p in n_px)
                + " | LS scale "
                + " ".join(f"{v:+.2f}" for v in s),
                flush=True,
            )
    # pooled over scenes and ratios: the LS scale per bin, and the weighted error change of the shipped scale and of it
    num = np.sum([r["num"] for r in rows], 0)
    den = np.sum([r["den"] for r in rows], 0)
    err = np.sum([r["err"] for r in rows], 0)
    centres = [(EDGES[k % na] + min(EDGES[k % na + 1], 1.0)) / 2 for k in range(nb)]
    shipped = [
        cfg.get("residual_scale_hole", 1.0)
        + (cfg.get("residual_scale_visible", 1.0) - cfg.get("residual_scale_hole", 1.0)) * c
        for c in centres
    ]
    ls = [num[k] / den[k] if den[k] > 0 else 0.0 for k in range(nb)]
    print("pooled (weighted squared error change per bin, relative to the error of all pixels):")
    tot = err.sum()
    out = {"edges": list(EDGES), "rows": rows, "bins": []}
    for k in range(nb):
        d_ship = shipped[k] ** 2 * den[k] - 2 * shipped[k] * num[k]
        d_ls = ls[k] ** 2 * den[k] - 2 * ls[k] * num[k]
        out["bins"].append(
            {
                "alpha": [EDGES[k % na], min(EDGES[k % na + 1], 1.0)],
                "closed": k < na,
                "ls_scale": ls[k],
                "shipped_scale": shipped[k],
                "shipped_change": d_ship / tot,
                "ls_change": d_ls / tot,
            }
        )
        print(
            f"  alpha [{EDGES[k % na]:.2f}, {min(EDGES[k % na + 1], 1.0):.2f}) {'gap ' if k < na else 'open'}: LS scale {ls[k]:+.3f} (change {d_ls / tot:+.5f}); "
            f"shipped {shipped[k]:+.3f} (change {d_ship / tot:+.5f}); {10 * math.log10(1 / (1 + d_ship / tot)):+.3f} dB"
        )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
