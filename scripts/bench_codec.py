"""Timing and size measurements of the .exgs codec.

    .venv/bin/python scripts/bench_codec.py [files...] [--n 1000000] [--degree 3] [--repeat 3] [--json]

Times are the best of ``--repeat`` runs, wall clock and process CPU time (all threads; on a busy machine the
CPU time is the steadier number). Without files it encodes a synthetic scene
(:func:`exgs_core.codec.synthetic.synthetic_scene`); with files it loads each (any format :func:`exgs_core.load`
reads), sanitises it and reports bytes per Gaussian per section, encode/decode times and the measured errors.
``--json`` prints one JSON object per scene instead of the table. (Formerly ``python -m exgs_core.codec.bench``.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exgs_core.codec.synthetic import synthetic_scene  # noqa: E402
from exgs_core.scene import GaussianScene  # noqa: E402


def measure(scene: GaussianScene, options=None, *, sh_full=None, repeat: int = 1) -> dict:
    """Encode and decode ``scene`` (best of ``repeat`` timings); sizes per section and the header's errors."""
    from exgs_core.exgs_format import CodecOptions, decode, describe, encode

    options = options or CodecOptions()
    te, td, ce, cd = [], [], [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        data = encode(scene, sh_full=sh_full, options=options)
        t1, c1 = time.perf_counter(), time.process_time()
        decode(data)
        t2, c2 = time.perf_counter(), time.process_time()
        te.append(t1 - t0)
        td.append(t2 - t1)
        ce.append(c1 - c0)
        cd.append(c2 - c1)
    info = describe(data)
    n = max(scene.n, 1)
    return {
        "n": scene.n,
        "sh_degree": scene.sh_degree,
        "n_sh_full": info["n_sh_full"],
        "bytes": len(data),
        "bytes_per_gaussian": len(data) / n,
        "sections_bytes_per_gaussian": {s["name"]: s["stored_bytes"] / n for s in info["container"]["sections"]},
        "header_bytes": len(data) - sum(s["stored_bytes"] for s in info["container"]["sections"]),
        "encode_s": min(te),
        "decode_s": min(td),
        "encode_cpu_s": min(ce),
        "decode_cpu_s": min(cd),
        "encode_s_per_1M": min(te) / n * 1e6,
        "decode_s_per_1M": min(td) / n * 1e6,
        "palette_size": info["quant"].get("sh_rest", {}).get("size"),
        "errors": info["errors"],
    }


def render_psnr(scene: GaussianScene, *, sh_full=None, options=None, views: int = 4, size: int = 512) -> float:
    """Mean PSNR (dB) of CPU renders of decode(encode(scene)) against renders of ``scene`` on ``views`` held-out
    automatic views (:func:`exgs_core.views.auto_views`, split "eval")."""
    from exgs_core.exgs_format import CodecOptions, decode, encode
    from exgs_core.metrics import psnr
    from exgs_core.render import render
    from exgs_core.views import auto_views

    dec = decode(encode(scene, sh_full=sh_full, options=options or CodecOptions()))
    cams = auto_views(scene, views, size, size, split="eval")
    return float(np.mean([psnr(render(dec, c, backend="cpu").rgb, render(scene, c, backend="cpu").rgb) for c in cams]))


def main(argv=None) -> int:
    from exgs_core import load

    ap = argparse.ArgumentParser(prog="scripts/bench_codec.py", description=__doc__)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic scene size (no files)")
    ap.add_argument("--degree", type=int, default=3)
    ap.add_argument(
        "--sh-keep",
        type=float,
        default=1.0,
        help="fraction of Gaussians keeping higher SH (the first ones in file order)",
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument(
        "--psnr",
        type=int,
        default=0,
        metavar="V",
        help="also render V held-out automatic views (512x512, CPU) of input and decode; mean PSNR",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    scenes = []
    if args.files:
        for f in args.files:
            s, _ = load(f).sanitize()
            scenes.append((f, s))
    else:
        scenes.append((f"synthetic n={args.n} SH{args.degree}", synthetic_scene(args.n, args.degree)))
    for name, s in scenes:
        sh_full = None
        if s.sh_degree > 0 and args.sh_keep < 1.0:
            sh_full = np.zeros(s.n, bool)
            sh_full[: int(round(args.sh_keep * s.n))] = True
        r = measure(s, sh_full=sh_full, repeat=args.repeat)
        r["scene"] = name
        if args.psnr:
            r["psnr_db"] = render_psnr(s, sh_full=sh_full, views=args.psnr)
        if args.json:
            print(json.dumps(r))
            continue
        print(f"{name}: N={r['n']} SH{r['sh_degree']} full-SH={r['n_sh_full']} palette={r['palette_size']}")
        print(
            f"  total {r['bytes_per_gaussian']:.3f} B/G ({r['bytes']} B, header+table {r['header_bytes']} B); "
            f"encode {r['encode_s']:.3f} s ({r['encode_s_per_1M']:.2f} s/1M), "
            f"decode {r['decode_s']:.3f} s ({r['decode_s_per_1M']:.2f} s/1M); CPU time (all threads) encode "
            f"{r['encode_cpu_s']:.3f} s, decode {r['decode_cpu_s']:.3f} s"
        )
        print("  " + ", ".join(f"{k} {v:.3f}" for k, v in r["sections_bytes_per_gaussian"].items()))
        if "psnr_db" in r:
            print(f"  PSNR decoded vs input: {r['psnr_db']:.2f} dB ({args.psnr} held-out views, 512x512)")
        print("  errors " + json.dumps(r["errors"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
