#!/usr/bin/env python3
"""Turn the JSON of scripts/bench_compress.py into the Markdown tables of BENCHMARKS.md.

Usage: .venv/bin/python scripts/bench_compress_report.py out/bench_compress.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def fmt_b(b):
    return f"{b / 1000:,.0f} kB" if b < 10_000_000 else f"{b / 1e6:.2f} MB"


def cell(r):
    if not r or "error" in r:
        return "timeout" if r and "timed out" in r.get("error", "") else "failed"
    return f"{fmt_b(r['bytes'])}, {r['psnr']:.2f} dB / {r['ssim']:.3f}, {r['encode_s']:.1f} s"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    d = json.loads(Path(argv[0]).read_text())
    print(
        f"Machine: {d['machine']}; {d['date']}; splat-transform {d['splat_transform']} (`-g cpu`); "
        f"PSNR/SSIM vs the uncompressed scene on {d['views']} held-out automatic views at {d['size']}×{d['size']}.\n"
    )
    print("| scene | N | SH | SH3 PLY | SOG full | SPZ full |")
    print("|---|---:|---:|---:|---|---|")
    for name, r in d["scenes"].items():
        print(
            f"| {name} | {r['gaussians']:,} | {r['sh_degree']} | {fmt_b(r['bytes_sh3_ply'])} | "
            f"{cell(r.get('sog_full'))} | {cell(r.get('spz_full'))} |"
        )
    ratios = sorted({k for r in d["scenes"].values() for k in r["ours"]}, key=float, reverse=True)
    print(
        "\nPer retention ratio: **ours** (UGC + .exgs) vs `--decimate` + SOG; cells: bytes, PSNR / SSIM, encode time. "
        "Δ = our PSNR minus theirs; ratio = SH3 PLY size / our bytes; decode = our decode time.\n"
    )
    print(
        "| scene | rho | ours | decimate + SOG | Δ dB | bytes ours/theirs | ratio vs SH3 PLY | encode speed-up | decode |"
    )
    print("|---|---:|---|---|---:|---:|---:|---:|---:|")
    wins = total = 0
    for name, r in d["scenes"].items():
        for k in ratios:
            o, t = r["ours"].get(k), r["decimate_sog"].get(k)
            if not o:
                continue
            ok_t = t and "error" not in t
            delta = o["psnr"] - t["psnr"] if ok_t else float("nan")
            br = o["bytes"] / t["bytes"] if ok_t else float("nan")
            sp = t["encode_s"] / o["encode_s"] if ok_t else float("nan")
            if ok_t:
                total += 1
                wins += delta >= 1.0 and o["bytes"] <= t["bytes"]
            print(
                f"| {name} | {k} | {cell(o)} | {cell(t)} | {delta:+.2f} | {br:.2f} | "
                f"{r['bytes_sh3_ply'] / o['bytes']:.0f}× | {sp:.1f}× | {o['decode_s'] * 1000:.0f} ms |"
            )
    print(f"\nAt the same rho: PSNR ≥ decimate+SOG + 1 dB with ≤ bytes in {wins} of {total} comparisons.")
    print(
        "\nAt equal bytes: **ours** compressed with `target_bytes` = the decimate+SOG file's size (rho chosen by "
        "the encoder), against the same decimate+SOG file. `comp` = the compensation `auto` chose.\n"
    )
    print("| scene | peer rho | ours at ≤ peer bytes | kept | comp | decimate + SOG | Δ dB |")
    print("|---|---:|---|---:|---|---|---:|")
    wins = total = 0
    deltas = {}
    for name, r in d["scenes"].items():
        for k in ratios:
            o, t = r.get("ours_equal_bytes", {}).get(k), r["decimate_sog"].get(k)
            if not o or not t or "error" in t:
                continue
            if "error" in o:
                print(f"| {name} | {k} | {o['error'][:60]} | | | {cell(t)} | |")
                continue
            delta = o["psnr"] - t["psnr"]
            total += 1
            wins += delta >= 1.0 and o["bytes"] <= t["bytes"]
            deltas.setdefault(k, []).append(delta)
            print(
                f"| {name} | {k} | {cell(o)} | {o['kept']:,} | {o.get('compensation', '')} | {cell(t)} | {delta:+.2f} |"
            )
    med = ", ".join(f"rho {k}: {sorted(v)[len(v) // 2]:+.2f} dB" for k, v in deltas.items())
    print(
        f'\nTarget "PSNR ≥ decimate+SOG + 1 dB at equal or fewer bytes" met in {wins} of {total} comparisons '
        f"(median Δ {med})."
    )
    abl = {n: r["ablation"] for n, r in d["scenes"].items() if r.get("ablation")}
    if abl:
        names = list(next(iter(abl.values())).keys())
        print(
            "\nAblation at rho = 0.1 (PSNR dB, bytes); the first column is the default (exgs score, auto compensation):\n"
        )
        print("| scene | default | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        for n, a in abl.items():
            base = d["scenes"][n]["ours"].get("0.1")
            cells = [f"{base['psnr']:.2f} ({fmt_b(base['bytes'])})" if base else "-"]
            cells += [f"{a[x]['psnr']:.2f} ({fmt_b(a[x]['bytes'])})" for x in names]
            print(f"| {n} | " + " | ".join(cells) + " |")
    summary(d)
    return 0


def summary(d: dict) -> None:
    """Per ratio, over the scenes where decimate+SOG finished: Δ PSNR (ours - theirs), bytes ratio, speed-up."""
    print("\nSummary (over the scenes where decimate+SOG finished; Δ = ours − theirs):\n")
    print(
        "| comparison | rho | scenes | mean / median Δ PSNR | scenes where ours ≥ theirs | our bytes / theirs "
        "(median) | encode speed-up (median) |"
    )
    print("|---|---:|---:|---|---:|---:|---:|")
    for comp, key in (("same rho", "ours"), ("equal bytes", "ours_equal_bytes")):
        for r in ("0.5", "0.25", "0.1", "0.05"):
            ds, br, sp = [], [], []
            for s in d["scenes"].values():
                p, o = s["decimate_sog"].get(r), s.get(key, {}).get(r)
                if not p or not o or "psnr" not in p or "psnr" not in o:
                    continue
                ds.append(o["psnr"] - p["psnr"])
                br.append(o["bytes"] / p["bytes"])
                sp.append(p["encode_s"] / o["encode_s"])
            if not ds:
                continue
            ds_ = np.array(ds)
            print(
                f"| {comp} | {r} | {len(ds)} | {ds_.mean():+.2f} / {np.median(ds_):+.2f} dB | {(ds_ >= 0).sum()} | "
                f"{np.median(br):.2f} | {np.median(sp):.1f}× |"
            )


if __name__ == "__main__":
    sys.exit(main())
