"""Entropy stage only: zstd (format v1) against the range coder (codec 2, format v2) on pruned scenes.

    .venv/bin/python scripts/bench_range_coder.py [FILES...] [--ratio 0.1] [--json out.json]

Each scene is compressed once with the defaults at ``--ratio`` (scoring, merging, the codec ladder); the decoded
pruned scene is then re-encoded with the bit widths that compress chose, once with ``range_coder=False`` (every
section zstd, version 1) and once with the default (range coder where smaller, version 2). Both files decode to
the same arrays (checked). Prints bytes and bits per Gaussian per section, and encode/decode times (best of 3).
Without FILES: every scene in ../shared/data/scenes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exgs_core import exgs_format as F  # noqa: E402
from exgs_core import load  # noqa: E402
from exgs_core.compress import CompressOptions, compress  # noqa: E402

FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def _best(fn, repeat=3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    files = [Path(f) for f in args.files] or sorted(
        p
        for p in (ROOT.parent / "shared" / "data" / "scenes").iterdir()
        if p.suffix in (".ply", ".splat", ".spz", ".sog")
    )
    print(f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; rho {args.ratio}")
    print(
        "| scene | N kept | zstd (v1) | range coder (v2) | saved | colour / rotation / scale / position / opacity, "
        "bits per Gaussian v1 -> v2 | encode v1 / v2 | decode v1 / v2 |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|")
    rows = []
    for f in files:
        src, _ = load(f).sanitize()
        data, _ = compress(src, CompressOptions(ratio=args.ratio))
        h = F.describe(data)
        pruned = F.decode(data)
        opts = F.CodecOptions(**h["options"])
        sh_full = pruned.meta["exgs_sh_full"] if pruned.sh_degree else None
        te2, v2 = _best(lambda: F.encode(pruned, sh_full=sh_full, options=opts))
        te1, v1 = _best(lambda: F.encode(pruned, sh_full=sh_full, options=dataclasses.replace(opts, range_coder=False)))
        td2, d2 = _best(lambda: F.decode(v2))
        td1, d1 = _best(lambda: F.decode(v1))
        assert all(getattr(d1, k).tobytes() == getattr(d2, k).tobytes() for k in FIELDS), f
        n = pruned.n
        sec = {}
        for v, d in (("v1", v1), ("v2", v2)):
            for s in F.describe(d)["container"]["sections"]:
                sec.setdefault(s["name"], {})[v] = 8 * s["stored_bytes"] / n
        per = " / ".join(
            f"{sec[k]['v1']:.1f} -> {sec[k]['v2']:.1f}"
            for k in ("sh_dc", "rotations", "log_scales", "positions", "opacity")
        )
        row = dict(
            scene=f.name,
            n=n,
            v1=len(v1),
            v2=len(v2),
            sections=sec,
            encode_v1=te1,
            encode_v2=te2,
            decode_v1=td1,
            decode_v2=td2,
        )
        rows.append(row)
        print(
            f"| {f.name} | {n:,} | {len(v1):,} | {len(v2):,} | {100 * (1 - len(v2) / len(v1)):.1f} % | {per} | "
            f"{1e3 * te1:.0f} / {1e3 * te2:.0f} ms | {1e3 * td1:.1f} / {1e3 * td2:.1f} ms |",
            flush=True,
        )
    tot1, tot2 = sum(r["v1"] for r in rows), sum(r["v2"] for r in rows)
    print(f"all scenes: {tot1:,} -> {tot2:,} bytes ({100 * (1 - tot2 / tot1):.1f} % saved)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
