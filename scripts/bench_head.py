#!/usr/bin/env python3
"""Benchmark of the scene head (issue 17): restored vs unrestored at EQUAL TOTAL BYTES on held-out views.

Per scene and retention rho, with the default compressor (``CompressOptions(ratio=rho)``, head ``auto``):

1. ``A`` = compress(rho): the file as shipped, with its head when the rate rule kept one (``h`` bytes).
2. Its Gaussians alone are the head-off file at rho (``B0 = len(A) - h`` bytes; byte-identical, checked). A second
   head-off file at ``rho x 1.1`` (``B1`` bytes) gives the unrestored quality bytes buy there; the unrestored
   quality *at A's total bytes* is the linear interpolation between (B0, q0) and (B1, q1) at ``B0 + h``.
3. On 8 held-out ``eval`` views at 512x512 over black (never seen by the compressor): PSNR (mean of per-view, both
   images clipped to [0, 1]), HaarPSI and MS-SSIM (``piq``) of the head-restored ``A`` and, with ``--painter``,
   of the head followed by the shipped GaussPainter, against the full scene's renders.

Gains = restored - unrestored at equal bytes. A file whose head was dropped scores its own Gaussians (gain 0).
Also times :func:`apply_head` on a 512x512 frame (``--threads`` BLAS threads; median of 10 after a warm-up).

    nice -n 10 .venv/bin/python scripts/bench_head.py --out out/bench_head.json [--only biker] [--painter]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SCENE_DIR = os.path.join(ROOT, "..", "shared", "data", "scenes")
#: The painter's validation scenes (never trained on) and the two small scenes the rate rule must handle.
SCENES = [
    "playcanvas_biker.spz",
    "playcanvas_guitar.compressed.ply",
    "pdal_fourth_st_sh3.spz",
    "kacytran_try_iter7000_sh3.ply",
    "supersplat_mixed_drops_label_crop_sh3.ply",
]
RATIOS = (0.1, 0.02)
UP = 0.1  # the second head-off file's extra retention


def _piq():
    """piq's HaarPSI and MS-SSIM without importing its package (whose __init__ needs torchvision)."""
    import importlib.util
    import types

    if "piq" not in sys.modules:
        spec = importlib.util.find_spec("piq")
        if spec is None:
            raise SystemExit("piq is missing: .venv/bin/pip install --no-deps piq")
        pkg = types.ModuleType("piq")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["piq"] = pkg
    from piq.haarpsi import haarpsi
    from piq.ms_ssim import multi_scale_ssim

    return haarpsi, multi_scale_ssim


def _metrics(imgs, refs) -> dict:
    """Mean per-view PSNR, HaarPSI, MS-SSIM of images [H, W, 3] against references (both clipped to [0, 1])."""
    import numpy as np
    import torch

    haarpsi, msssim = _piq()
    p, h, m = [], [], []
    for a, b in zip(imgs, refs, strict=True):
        a = np.clip(a, 0, 1).astype(np.float32)
        b = np.clip(b, 0, 1).astype(np.float32)
        p.append(10 * np.log10(1 / max(float(((a.astype(np.float64) - b) ** 2).mean()), 1e-12)))
        ta = torch.from_numpy(a).permute(2, 0, 1)[None]
        tb = torch.from_numpy(b).permute(2, 0, 1)[None]
        h.append(float(haarpsi(ta, tb, data_range=1.0)))
        m.append(float(msssim(ta, tb, data_range=1.0)))
    return {"psnr": float(np.mean(p)), "haarpsi": float(np.mean(h)), "msssim": float(np.mean(m))}


def _interp(b0, q0, b1, q1, b):
    return {k: q0[k] + (q1[k] - q0[k]) * (b - b0) / (b1 - b0) if b1 != b0 else q0[k] for k in q0}


def run_scene(name: str, rho: float, size: int, painter) -> dict:
    import exgs_core as ex
    from exgs_core.codec.head import apply_head, scene_head
    from exgs_core.compress import CompressOptions, compress
    from exgs_core.io.exgs import decode, with_head
    from exgs_core.render import prepare, render
    from exgs_core.views import auto_views

    scene, _ = ex.load(os.path.join(SCENE_DIR, name)).sanitize()
    t = time.perf_counter()
    data, rep = compress(scene, CompressOptions(ratio=rho))
    t_head = time.perf_counter() - t
    info = rep.sampling.get("head", {})
    plain = with_head(data, None)
    t = time.perf_counter()
    off, _ = compress(scene, CompressOptions(ratio=rho, head="off"))
    t_off = time.perf_counter() - t
    assert off == plain, "the Gaussians of the head file differ from the head-off file"
    up, _ = compress(scene, CompressOptions(ratio=min(1.0, rho * (1 + UP)), head="off"))
    cams = auto_views(scene, 8, size, size, split="eval")
    pf = prepare(scene)
    refs = [render(scene, c, prepared=pf).rgb for c in cams]
    dec, dec_up = decode(data), decode(up)
    head = scene_head(dec)
    pd, pu = prepare(dec), prepare(dec_up)
    raw, restored, both = [], [], []
    for c in cams:
        r = render(dec, c, prepared=pd)
        raw.append(r.rgb)
        x = r.rgb if head is None else apply_head(head, r.rgb, r.alpha, r.depth)
        restored.append(x)
        if painter is not None:
            both.append(painter.restore(r.rgb, r.alpha, r.depth, head=head))
    q0 = _metrics(raw, refs)
    q1 = _metrics([render(dec_up, c, prepared=pu).rgb for c in cams], refs)
    qa = _metrics(restored, refs)
    b0, b1, ba = len(plain), len(up), len(data)
    eq = _interp(b0, q0, b1, q1, ba)
    out = {
        "scene": name,
        "ratio": rho,
        "gaussians": dec.n,
        "bytes": ba,
        "head_bytes": ba - b0,
        "head_kept": head is not None,
        "head": {k: v for k, v in info.items() if k not in ("thresholds", "features")},
        "bytes_up": b1,
        "unrestored": q0,
        "unrestored_up": q1,
        "unrestored_equal_bytes": eq,
        "restored": qa,
        "gain": {k: qa[k] - eq[k] for k in qa},
        "gain_same_gaussians": {k: qa[k] - q0[k] for k in qa},
        "compress_seconds": round(t_head, 2),
        "compress_seconds_head_off": round(t_off, 2),
    }
    if painter is not None:
        qp = _metrics(both, refs)
        out["restored_painter"] = qp
        out["gain_painter"] = {k: qp[k] - eq[k] for k in qp}
    return out


def time_apply(threads: int) -> dict:
    """apply_head on a 512x512 render of the biker at retention 0.1 (its kept head, and a 1-class one)."""
    import numpy as np

    import exgs_core as ex
    from exgs_core.codec.head import HeadFitter, apply_head, scene_head
    from exgs_core.compress import CompressOptions, compress
    from exgs_core.io.exgs import decode
    from exgs_core.render import render
    from exgs_core.views import auto_views

    scene = ex.load(os.path.join(SCENE_DIR, "playcanvas_biker.spz"))
    data, _ = compress(scene, CompressOptions(ratio=0.1, head="always"))
    dec = decode(data)
    cam = auto_views(scene, 8, 512, 512, split="eval")[0]
    r = render(dec, cam)
    fitter = HeadFitter(thresholds=(0.3, 0.98))
    fitter.add(r.rgb, r.alpha, r.depth, render(scene, cam).rgb)
    out = {"threads": threads}
    for label, head in (("shipped", scene_head(dec)), ("one_class", fitter.solve(classes=False))):
        apply_head(head, r.rgb, r.alpha, r.depth)
        wall, cpu = [], []
        for _ in range(10):
            t, c = time.perf_counter(), time.process_time()
            apply_head(head, r.rgb, r.alpha, r.depth)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        out[label] = {
            "classes": head.classes,
            "median_ms": round(1000 * float(np.median(wall)), 1),
            "min_ms": round(1000 * min(wall), 1),
            "cpu_ms": round(1000 * float(np.median(cpu)), 1),
        }
    out["load_average"] = os.getloadavg()[0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="substrings of scene file names")
    ap.add_argument("--ratios", nargs="*", type=float, default=list(RATIOS))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--painter", action="store_true", help="also score the head followed by GaussPainter")
    ap.add_argument("--weights", default=None, help="GaussPainter weights folder for --painter (default: the shipped)")
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "bench_head.json"))
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out, run the others")
    args = ap.parse_args(argv)
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    painter = None
    if args.painter:
        from exgs_core.painter.restore import Restorer

        # the network after the head too, whatever the weights' after_head says
        painter = Restorer.from_pretrained(args.weights, threads=args.threads, after_head=True)
    scenes = [s for s in SCENES if not args.only or any(o in s for o in args.only)]
    rows = []
    if args.resume and os.path.exists(args.out):
        with open(args.out) as f:
            rows = json.load(f)["rows"]
    for name in scenes:
        for rho in args.ratios:
            if any(r["scene"] == name and r["ratio"] == rho for r in rows):
                continue
            print(f"{name} rho={rho} ...", flush=True)
            row = run_scene(name, rho, args.size, painter)
            rows.append(row)
            g = row["gain"]
            print(
                f"{name} rho={rho}: {row['bytes']:,} B (head {row['head_bytes']} B, kept {row['head_kept']}); "
                f"PSNR {row['unrestored_equal_bytes']['psnr']:.3f} -> {row['restored']['psnr']:.3f} "
                f"({g['psnr']:+.3f} dB), HaarPSI {g['haarpsi']:+.4f}, MS-SSIM {g['msssim']:+.4f}",
                flush=True,
            )
            _save(args.out, rows, None)
    timing = time_apply(args.threads)
    print(json.dumps(timing), flush=True)
    _save(args.out, rows, timing)
    print(table(rows, timing))
    return 0


def _save(path, rows, timing) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"rows": rows, "timing": timing, "load_average": os.getloadavg()}, f, indent=1)


def table(rows, timing) -> str:
    import numpy as np

    out = [
        "| scene | rho | bytes (head) | PSNR unrestored @ equal bytes | restored | gain dB | HaarPSI gain | "
        "MS-SSIM gain | retention dB/kB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r['scene'].split('.')[0]} | {r['ratio']:g} | {r['bytes']:,} ({r['head_bytes']}) | "
            f"{r['unrestored_equal_bytes']['psnr']:.3f} | {r['restored']['psnr']:.3f} | {r['gain']['psnr']:+.3f} | "
            f"{r['gain']['haarpsi']:+.4f} | {r['gain']['msssim']:+.4f} | "
            f"{r['head'].get('retention_db_per_kb', float('nan')):.4f} |"
        )
    for rho in sorted({r["ratio"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["ratio"] == rho]
        g = {k: float(np.mean([r["gain"][k] for r in sel])) for k in ("psnr", "haarpsi", "msssim")}
        out.append(
            f"| **mean** | {rho:g} | | | | **{g['psnr']:+.3f}** (min {min(r['gain']['psnr'] for r in sel):+.3f}) | "
            f"{g['haarpsi']:+.4f} | {g['msssim']:+.4f} | |"
        )
    if timing:
        out.append(f"\napply_head 512x512, {timing['threads']} threads: {json.dumps(timing)}")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
