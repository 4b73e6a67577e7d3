#!/usr/bin/env python3
"""Ablation of exgs_core.prune.pairwise_merge rules against splat-transform's --decimate (pruning only, no coding).

For each scene and retention ratio: PSNR on 4 held-out automatic views at 256x256 of splat-transform 3.7.0
`--decimate` (its PLY output, cached in out/ablate_pairwise/) and of every variant, given as a JSON object
{name: PairwiseRule fields}; the exgs significance score comes from the compressor's default
scoring views. Merge times are printed next to each PSNR (`name_s`).

Usage:
  .venv/bin/python scripts/ablate_pairwise.py --scenes splatset_plant.splat playcanvas_biker.spz \\
      --ratios 0.25 0.1 --variants '{"ward": {}, "kl": {"cost": "kl", "opacity_floor": 0}}'
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exgs_core import load  # noqa: E402
from exgs_core.compress import PAIRWISE, CompressOptions, scoring_cameras  # noqa: E402
from exgs_core.metrics import psnr  # noqa: E402
from exgs_core.prune import PairwiseRule, accumulate, pairwise_merge, significance  # noqa: E402
from exgs_core.render import render  # noqa: E402
from exgs_core.views import auto_views  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene-dir", type=Path, default=ROOT.parent / "shared" / "data" / "scenes")
    ap.add_argument("--scenes", nargs="+", required=True)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.1, 0.05])
    ap.add_argument(
        "--variants",
        default=json.dumps({k: asdict(v) for k, v in PAIRWISE.items()}),
        help="JSON {name: PairwiseRule fields} (default: the two rules)",
    )
    args = ap.parse_args(argv)
    variants = {k: PairwiseRule(**kw) for k, kw in json.loads(args.variants).items()}
    exe = ROOT / ".tools" / "node_modules" / ".bin" / "splat-transform"
    cache = ROOT / "out" / "ablate_pairwise"
    cache.mkdir(parents=True, exist_ok=True)
    for name in args.scenes:
        scene, _ = load(args.scene_dir / name).sanitize()
        cams = auto_views(scene, 4, 256, 256, split="eval")
        ref = [render(scene, c).rgb for c in cams]

        def ev(s):
            return round(float(np.mean([psnr(render(s, c).rgb, r) for c, r in zip(cams, ref, strict=False)])), 2)

        score = significance(scene, accumulate(scene, scoring_cameras(scene, CompressOptions(), None)))
        for r in args.ratios:
            row = {}
            if exe.exists():
                st = cache / f"st_{Path(name).stem}_{r}.ply"
                if not st.exists():
                    subprocess.run(
                        [str(exe), "-q", "-w", "-g", "cpu", str(args.scene_dir / name), "-d", f"{r * 100:g}%", str(st)],
                        check=True,
                    )
                row["splat-transform"] = ev(load(st))
            for vn, rule in variants.items():
                t = time.perf_counter()
                out, _ = pairwise_merge(scene, score, int(round(r * scene.n)), rule)
                row[vn + "_s"] = round(time.perf_counter() - t, 2)
                row[vn] = ev(out)
            print(name, r, json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
