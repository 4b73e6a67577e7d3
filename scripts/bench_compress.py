#!/usr/bin/env python3
"""Compression benchmark (issue #3): exgs UGC + .exgs against PlayCanvas splat-transform 3.7.0, one run.

For every scene and retention ratio: bytes, ratio vs the scene as a standard SH3 PLY, PSNR/SSIM against the
uncompressed scene on held-out automatic views (the views `exgs eval` uses), encode and decode time.
Peers, in the same run on the same machine: splat-transform SOG and SPZ of the full scene (`-g cpu`), and
`--decimate N%` (to PLY) followed by SOG at the same retention. At the peer's byte count, ours again with
``target_bytes`` set to it (the issue's "at equal or fewer bytes" criterion). Plus the ablation (score variants,
the compensations, voxel sampling and amplification on/off) on a subset of scenes.

Usage: .venv/bin/python scripts/bench_compress.py [--scenes DIR] [--ratios 0.5 0.25 0.1 0.05] [--out FILE.json]
splat-transform is installed on first use with `npm install --prefix .tools @playcanvas/splat-transform@3.7.0`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exgs_core import load  # noqa: E402
from exgs_core.compress import CompressOptions, compress, decompress  # noqa: E402
from exgs_core.metrics import psnr, ssim  # noqa: E402
from exgs_core.render import render  # noqa: E402
from exgs_core.views import auto_views  # noqa: E402

ST_VERSION = "3.7.0"


def splat_transform() -> Path:
    exe = ROOT / ".tools" / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists():
        print(f"installing @playcanvas/splat-transform@{ST_VERSION} into .tools/ ...", file=sys.stderr)
        subprocess.run(
            [
                "npm",
                "install",
                "--prefix",
                str(ROOT / ".tools"),
                "--no-audit",
                "--no-fund",
                f"@playcanvas/splat-transform@{ST_VERSION}",
            ],
            check=True,
            capture_output=True,
        )
    return exe


PEER_TIMEOUT_S = 300.0


def st_run(exe: Path, *args) -> float:
    t = time.perf_counter()
    try:
        r = subprocess.run(
            [str(exe), "-q", "-w", *map(str, args)], capture_output=True, text=True, timeout=PEER_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {PEER_TIMEOUT_S:.0f} s") from None
    if r.returncode:
        raise RuntimeError(f"splat-transform {' '.join(map(str, args))}: {r.stderr.strip()[-300:]}")
    return time.perf_counter() - t


class Evaluator:
    """Held-out views of one reference scene, its renders cached."""

    def __init__(self, ref, views: int, size: int):
        self.cams = auto_views(ref, views, size, size, split="eval")
        self.ref_imgs = [render(ref, c).rgb for c in self.cams]

    def __call__(self, cand) -> tuple[float, float]:
        ps, ss = [], []
        for c, a in zip(self.cams, self.ref_imgs, strict=False):
            b = render(cand, c).rgb
            ps.append(min(psnr(a, b), 100.0))
            ss.append(ssim(a, b))
        return float(np.mean(ps)), float(np.mean(ss))


def ours(scene, ev, ratio, src_bytes, **opt):
    t = time.perf_counter()
    data, rep = compress(scene, CompressOptions(ratio=ratio or 0.1, **opt))
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    dec = decompress(data)
    t_dec = time.perf_counter() - t
    p, s = ev(dec)
    return {
        "bytes": len(data),
        "kept": dec.n,
        "encode_s": round(t_enc, 3),
        "decode_s": round(t_dec, 4),
        "psnr": round(p, 3),
        "ssim": round(s, 4),
        "compensation": rep.sampling.get("chosen", rep.sampling.get("method")),
    }


def peer(exe, src, tmp: Path, ev, kind: str, ratio: float | None):
    out = tmp / f"peer.{kind}"
    if ratio is None:
        t_enc = st_run(exe, *(["-g", "cpu"] if kind == "sog" else []), src, out)
    else:
        mid = tmp / "decimated.ply"
        t_enc = st_run(exe, "-g", "cpu", src, "-d", f"{ratio * 100:g}%", mid)
        t_enc += st_run(exe, "-g", "cpu", mid, out)
    t = time.perf_counter()
    dec = load(out)
    t_dec = time.perf_counter() - t
    p, s = ev(dec)
    return {
        "bytes": out.stat().st_size,
        "kept": dec.n,
        "encode_s": round(t_enc, 3),
        "decode_s": round(t_dec, 4),
        "psnr": round(p, 3),
        "ssim": round(s, 4),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=Path, default=ROOT.parent / "shared" / "data" / "scenes")
    ap.add_argument("--only", nargs="*", help="scene file names to run (default all)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25, 0.1, 0.05])
    ap.add_argument("--views", type=int, default=6, help="held-out views per scene (default 6)")
    ap.add_argument("--size", type=int, default=384, help="eval image size (default 384)")
    ap.add_argument(
        "--ablation",
        nargs="*",
        default=[
            "playcanvas_biker.spz",
            "pdal_fourth_st_sh3.spz",
            "playcanvas_flowers_lod2_sh2.sog",
            "splatset_plant.splat",
        ],
        help="scenes for the ablation at ratio 0.1",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_compress.json")
    ap.add_argument("--resume", action="store_true", help="keep the scenes already in --out and run the rest")
    ap.add_argument(
        "--reuse-peers",
        action="store_true",
        help="for scenes already in --out, keep the splat-transform results and re-run only ours",
    )
    ap.add_argument(
        "--peer-timeout",
        type=float,
        default=PEER_TIMEOUT_S,
        help="seconds before a splat-transform run counts as timed out (default 300)",
    )
    args = ap.parse_args(argv)
    globals()["PEER_TIMEOUT_S"] = args.peer_timeout
    exe = splat_transform()
    files = sorted(p for p in args.scenes.iterdir() if p.is_file() and p.name != "SOURCES.md")
    if args.only:
        files = [p for p in files if p.name in args.only]
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "splat_transform": ST_VERSION,
        "views": args.views,
        "size": args.size,
        "scenes": {},
    }
    previous = json.loads(args.out.read_text())["scenes"] if args.out.exists() else {}
    if args.resume:
        results["scenes"] = dict(previous)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.name in results["scenes"]:
            continue
        scene = load(f)
        print(f"== {f.name}: {scene.n:,} Gaussians, SH {scene.sh_degree}", flush=True)
        ev = Evaluator(scene, args.views, args.size)
        row = {
            "gaussians": scene.n,
            "sh_degree": scene.sh_degree,
            "bytes_input": f.stat().st_size,
            "bytes_sh3_ply": scene.ply_size_bytes(3),
            "ours": {},
            "ours_equal_bytes": {},
            "decimate_sog": {},
            "ablation": {},
        }
        old = previous.get(f.name) if args.reuse_peers else None
        with tempfile.TemporaryDirectory() as td:
            tmp = Path(td)
            for kind in ("sog", "spz"):
                if old and f"{kind}_full" in old:
                    row[f"{kind}_full"] = old[f"{kind}_full"]
                    continue
                try:
                    row[f"{kind}_full"] = peer(exe, f, tmp, ev, kind, None)
                except Exception as e:  # a peer failing is a result too
                    row[f"{kind}_full"] = {"error": str(e)}
            for r in args.ratios:
                row["ours"][str(r)] = ours(scene, ev, r, f.stat().st_size)
                if old and str(r) in old.get("decimate_sog", {}):
                    row["decimate_sog"][str(r)] = old["decimate_sog"][str(r)]
                else:
                    try:
                        row["decimate_sog"][str(r)] = peer(exe, f, tmp, ev, "sog", r)
                    except Exception as e:
                        row["decimate_sog"][str(r)] = {"error": str(e)}
                d = row["decimate_sog"][str(r)]
                if "bytes" in d:  # ours at the peer's size: rho chosen by --target-bytes (the criterion)
                    try:
                        row["ours_equal_bytes"][str(r)] = ours(
                            scene, ev, None, f.stat().st_size, target_bytes=d["bytes"], sh_keep_auto=True
                        )
                    except Exception as e:
                        row["ours_equal_bytes"][str(r)] = {"error": str(e)}
                o = row["ours"][str(r)]
                print(
                    f"  rho {r:<5} ours {o['bytes']:>9,} B {o['psnr']:6.2f} dB {o['encode_s']:6.2f} s | "
                    f"decimate+SOG {d.get('bytes', 0):>9,} B {d.get('psnr', float('nan')):6.2f} dB "
                    f"{d.get('encode_s', float('nan')):6.2f} s",
                    flush=True,
                )
            if f.name in args.ablation:
                for name, opt in {
                    "score=lightgaussian": dict(score="lightgaussian"),
                    "score=opacity": dict(score="opacity"),
                    "pairwise only (Ward, opaque)": dict(compensation="pairwise"),
                    "pairwise-kl only": dict(compensation="pairwise-kl"),
                    "voxel sampling + one-shot merge": dict(compensation="merge"),
                    "top-k + one-shot merge (no voxel)": dict(compensation="merge", voxel_sampling=False),
                    "voxel sampling + per-voxel gain": dict(compensation="amplify"),
                    "voxel sampling, no amplification": dict(compensation="none"),
                    "top-k, no amplification": dict(voxel_sampling=False, compensation="none"),
                }.items():
                    row["ablation"][name] = ours(scene, ev, 0.1, f.stat().st_size, **opt)
                    a = row["ablation"][name]
                    print(f"  ablation 0.1 {name:28s} {a['bytes']:>9,} B {a['psnr']:6.2f} dB", flush=True)
        results["scenes"][f.name] = row
        args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
