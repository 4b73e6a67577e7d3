#!/usr/bin/env python3
"""How much could any restorer gain on UGC renders? Two measurements on a painter cache (validation scenes).

1. Error anatomy per scene and retention: PSNR of the unrestored render, the share of the squared error at
   scales above 2 and 8 pixels (Gaussian-blurred difference), the share in thinned pixels (full alpha exceeds
   the render's by > 0.05) and the mean bias (x255).
2. A per-scene linear restoration filter (ALF-style): residual = W_class . [5x5 RGB neighbourhood, alpha, 1]
   with three classes by local gradient, least squares on the even views of the scene, PSNR on the odd views.
   It sees the scene's own ground truth, which a shipped restorer never does: an optimistic bound for
   linear restoration.

Usage: .venv/bin/python scripts/painter_headroom.py [--data out/painter_data_pw] [--radius 2]
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import gaussian_filter


def _psnr(a, b):
    return -10 * np.log10(max(float(((a - b) ** 2).mean()), 1e-12))


def _features(x, a, r):
    """[H*W, 3 (2r+1)^2 + 2] neighbourhood features of x [H, W, 3] plus alpha a [H, W] and a bias."""
    k = 2 * r + 1
    p = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge")
    win = sliding_window_view(p, (k, k), axis=(0, 1))
    h, w = x.shape[:2]
    return np.concatenate([win.reshape(h * w, -1), a.reshape(-1, 1), np.ones((h * w, 1))], 1)


def _classes(x):
    g = np.abs(np.diff(x.mean(-1), axis=0, append=0)) + np.abs(np.diff(x.mean(-1), axis=1, append=0))
    return np.digitize(g.ravel(), [0.01, 0.05])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "out", "painter_data_pw"))
    ap.add_argument("--radius", type=int, default=2)
    args = ap.parse_args(argv)
    files = sorted(glob.glob(os.path.join(args.data, "val_*.npz")))
    if not files:
        raise SystemExit(f"no val_*.npz in {args.data}: run scripts/make_painter_data.py first")
    print(
        "| scene | rho | PSNR | error share >2 px / >8 px | thinned px / error share | bias x255 | linear filter (odd views) |"
    )
    print("|---|---:|---:|---|---|---:|---|")
    for f in files:
        d = np.load(f)
        t = d["target"].astype(np.float64) / 255
        ta = d["target_alpha"].astype(np.float64) / 255
        name = os.path.basename(f)[4:-4]
        for ri, rho in enumerate(d["ratios"]):
            x = d["inputs"][ri].astype(np.float64) / 255
            a = d["alpha"][ri].astype(np.float64) / 255
            diff = t - x
            mse = (diff**2).mean()
            low2 = np.stack([gaussian_filter(v, (2, 2, 0)) for v in diff])
            low8 = np.stack([gaussian_filter(v, (8, 8, 0)) for v in diff])
            thin = (ta - a) > 0.05
            e2 = (diff**2).sum(-1)
            fit, test = range(0, len(x), 2), range(1, len(x), 2)
            nf = 3 * (2 * args.radius + 1) ** 2 + 2
            gram = np.zeros((3, nf, nf))
            rhs = np.zeros((3, nf, 3))
            for v in fit:
                feat, c, y = _features(x[v], a[v], args.radius), _classes(x[v]), diff[v].reshape(-1, 3)
                for k in range(3):
                    m = c == k
                    gram[k] += feat[m].T @ feat[m]
                    rhs[k] += feat[m].T @ y[m]
            wk = [np.linalg.solve(gram[k] + 1e-3 * np.eye(nf), rhs[k]) for k in range(3)]
            p0, p1 = [], []
            for v in test:
                feat, c = _features(x[v], a[v], args.radius), _classes(x[v])
                res = np.zeros((feat.shape[0], 3))
                for k in range(3):
                    m = c == k
                    res[m] = feat[m] @ wk[k]
                p0.append(_psnr(x[v], t[v]))
                p1.append(_psnr(np.clip(x[v] + res.reshape(x[v].shape), 0, 1), t[v]))
            print(
                f"| {name} | {rho:g} | {-10 * np.log10(mse):.2f} | {(low2**2).mean() / mse:.2f} / "
                f"{(low8**2).mean() / mse:.2f} | {thin.mean():.3f} / {(e2 * thin).sum() / e2.sum():.2f} | "
                f"{diff.mean() * 255:+.2f} | {np.mean(p0):.2f} -> {np.mean(p1):.2f} ({np.mean(p1) - np.mean(p0):+.2f}) |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
