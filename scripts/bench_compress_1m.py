#!/usr/bin/env python3
"""Compress timing on a synthetic 1,000,000-Gaussian scene: the bundled biker tiled to 1M with every centre
jittered by N(0, 0.002 x robust extent) (seed 0), as scripts/bench_render.py builds its 1M scene.

Usage: .venv/bin/python scripts/bench_compress_1m.py [--ratio 0.1] [--views 24] [--compensation auto]
       [--codec auto]   (the CLI's --fast is --compensation pairwise --codec compact)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exgs_core import load  # noqa: E402
from exgs_core.compress import CODEC_CHOICES, CompressOptions, compress, decompress  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--views", type=int, default=24)
    ap.add_argument("--compensation", default="auto")
    ap.add_argument("--codec", default="auto", choices=CODEC_CHOICES)
    args = ap.parse_args(argv)
    s = load(ROOT / "examples" / "playcanvas_biker.spz")
    rng = np.random.default_rng(0)
    idx = np.tile(np.arange(s.n), -(-args.n // s.n))[: args.n]
    big = s.subset(idx)
    ext = np.quantile(s.means, 0.98, 0) - np.quantile(s.means, 0.02, 0)
    big.means = (big.means + rng.normal(scale=0.002 * ext.max(), size=big.means.shape)).astype(np.float32)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; N = {big.n:,}")
    t = time.perf_counter()
    data, rep = compress(
        big, CompressOptions(ratio=args.ratio, views=args.views, compensation=args.compensation, codec=args.codec)
    )
    enc = time.perf_counter() - t
    t = time.perf_counter()
    dec = decompress(data)
    dt = time.perf_counter() - t
    print(f"encode {enc:.2f} s {rep.seconds} -> {len(data):,} bytes, {dec.n:,} Gaussians; decode {dt * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
