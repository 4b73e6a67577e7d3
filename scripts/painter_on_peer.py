#!/usr/bin/env python3
"""GaussPainter on *another tool's* compressed scenes: PlayCanvas splat-transform 3.7.0 ``-d N%`` (decimate) then
SOG, the peer of the compression benchmark. Same validation scenes, 8 held-out ``eval`` views at 512x512 on black
and PSNR (mean of per-view, against the full scene's renders) as ``scripts/bench_painter.py``.

    .venv/bin/python scripts/painter_on_peer.py [--ratios 0.1 0.05] [--weights NAME=FOLDER ...] [--json OUT]

Each ``--weights`` adds a GaussPainter weights folder under a name (the shipped checkpoint is always included).
splat-transform must be installed in ``.tools/`` (``scripts/bench_compress.py`` installs it on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.05])
    ap.add_argument("--weights", nargs="*", default=[], help="NAME=FOLDER of more GaussPainter checkpoints")
    ap.add_argument("--work", default=str(ROOT / "out" / "peer_restore"), help="folder for the peer's files")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import make_painter_data as mpd

    import exgs_core as ex
    from exgs_core.metrics import psnr
    from exgs_core.painter import classical
    from exgs_core.painter.restore import Restorer
    from exgs_core.render import render_many
    from exgs_core.views import auto_views

    exe = ROOT / ".tools" / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists():
        raise SystemExit(f"{exe} not found: run scripts/bench_compress.py once (it installs splat-transform)")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    restorers = {"shipped": Restorer.from_pretrained()}
    for spec in args.weights:
        name, _, folder = spec.partition("=")
        restorers[name] = Restorer.from_pretrained(folder)
    rows: dict = {}
    for ratio in args.ratios:
        for name in mpd.VAL_SCENES:
            src = Path(mpd.SCENE_DIR) / name
            stem = os.path.splitext(name)[0].replace(".compressed", "")
            out = work / f"{stem}_{ratio:g}.sog"
            if not out.exists():
                mid = work / f"{stem}_{ratio:g}.ply"
                for cmd in (
                    [str(exe), "-g", "cpu", str(src), "-d", f"{ratio * 100:g}%", str(mid)],
                    [str(exe), "-g", "cpu", str(mid), str(out)],
                ):
                    subprocess.run(cmd, check=True, capture_output=True)
            clean, _ = ex.load(src).sanitize()
            dec, _ = ex.load(out).sanitize()
            cams = auto_views(clean, 8, 512, 512, split="eval")
            for f, d in zip(
                render_many(clean, cams, backend="cpu"), render_many(dec, cams, backend="cpu"), strict=False
            ):
                t, x, a = (v.astype(np.float32) for v in (f.rgb, d.rgb, d.alpha))
                outs = {"unrestored": x, "classical": classical.classical_restore(x, a)}
                outs.update({k: r.restore(x, a) for k, r in restorers.items()})
                for k, y in outs.items():
                    for key in (f"{ratio:g}", f"{ratio:g} {stem}"):
                        rows.setdefault(key, {}).setdefault(k, []).append(psnr(np.clip(y, 0, 1), t))
            print(
                f"{ratio:g} {stem}",
                {k: round(float(np.mean(v)), 2) for k, v in rows[f"{ratio:g} {stem}"].items()},
                flush=True,
            )
    summary = {k: {m: round(float(np.mean(v)), 3) for m, v in d.items()} for k, d in rows.items()}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
