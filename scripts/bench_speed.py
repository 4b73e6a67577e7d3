#!/usr/bin/env python3
"""Compress speed (issue #16): `exgs compress` with its defaults against PlayCanvas splat-transform (decimate + SOG),
on the bundled biker and a 1,000,000-Gaussian scene, in one run, with peak memory.

Every command runs as a child process and is measured from outside, from its start to its exit (start-up, reading
and writing included): wall seconds, CPU seconds (user + system) and peak resident memory, all from the kernel's
accounting of that child (``os.wait4``; for a two-step peer the times add up and the peak is the larger one). The
commands of one repeat run in turn (ours, then each peer), so a machine load that drifts during the run weighs on
all of them alike; the table gives medians over the repeats, the ratio peer/ours per repeat (median), and the load
average at the start and the end.

Rows per scene (R = ``--ratio``, 10 % by default):

- ``ours``: ``exgs compress IN -o OUT.exgs --ratio R`` (every other option at its default);
- ``decimate+sog``: ``splat-transform -g cpu IN -d R% MID.ply``, then ``splat-transform -g cpu MID.ply OUT.sog``;
- ``adaptive+sog``: the same with ``--decimate-adaptive R%`` (splat-transform 3.10: either decimation must be the
  last action and write a .ply).

Scenes: ``biker`` (examples/playcanvas_biker.spz, 152,746 Gaussians) and ``1m`` (the biker tiled to 1,000,000
Gaussians with every centre jittered by N(0, 0.002 x robust extent), seed 0, as scripts/bench_compress_1m.py builds
it; written once as a binary PLY that every tool reads). ``--psnr`` also reports each output's PSNR against the
input on 6 held-out automatic views at 384 x 384 (as scripts/bench_compress.py evaluates).

Before timing, ours runs once on the biker (not counted) so numba's on-disk cache is loaded as in normal use.

``10m`` (no peers, ``--no-peers``): shared scenes (scripts' TILE_SCENES, SH 0) side by side on a grid, repeated to
10,000,000 Gaussians: the large-scene check (peak memory, spatial merge chunks).

``--also DIR ...`` times ``exgs compress`` from other checkouts as well (rows ``ours@DIR``; e.g. an export of an
earlier commit, ``git archive HEAD | tar -x -C DIR``, for before/after in the same run). ``wall_ratio_to_ours``: a
row's wall time over ours, per repeat, median (> 1: ours is faster).

Usage: .venv/bin/python scripts/bench_speed.py [--scenes biker 1m 10m] [--repeat 3] [--ratio 0.1] [--psnr]
       [--no-peers] [--also DIR ...] [--out out/bench_speed.json]
splat-transform comes from .tools (`npm install --prefix .tools @playcanvas/splat-transform@3.10.2`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ST_VERSION = "3.10.2"
BIKER = ROOT / "examples" / "playcanvas_biker.spz"


def splat_transform() -> Path:
    exe = ROOT / ".tools" / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists():
        raise SystemExit(
            f"splat-transform not found at {exe}; install it with "
            f"npm install --prefix .tools @playcanvas/splat-transform@{ST_VERSION}"
        )
    return exe


def run_child(cmd: list[str], timeout: float, cwd: Path | None = None) -> dict:
    """Run ``cmd`` (in ``cwd``, with that folder first on PYTHONPATH); wall seconds, CPU seconds (user + system) and
    peak RSS (MiB) of that child (``os.wait4``)."""
    env = None
    if cwd is not None:
        env = {**os.environ, "PYTHONPATH": str(cwd)}
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd, env=env)
    deadline = t + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            os.wait4(p.pid, 0)
            raise RuntimeError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}")
        time.sleep(0.01)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}: {err.strip()[-400:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_mib": ru.ru_maxrss / 1024}


def ours_cmd(src: Path, out: Path, ratio: float, extra: tuple[str, ...] = ()) -> list[list[str]]:
    return [
        [
            sys.executable,
            "-m",
            "exgs_core.cli",
            "compress",
            str(src),
            "-o",
            str(out),
            "--ratio",
            f"{ratio:g}",
            "-q",
            *extra,
        ]
    ]


def peer_cmds(exe: Path, src: Path, mid: Path, out: Path, ratio: float, adaptive: bool) -> list[list[str]]:
    flag = "--decimate-adaptive" if adaptive else "-d"
    return [
        [str(exe), "-q", "-w", "-g", "cpu", str(src), flag, f"{ratio * 100:g}%", str(mid)],
        [str(exe), "-q", "-w", "-g", "cpu", str(mid), str(out)],
    ]


def run_steps(steps: list[list[str]], timeout: float, cwd: Path | None = None) -> dict:
    rs = [run_child(c, timeout, cwd) for c in steps]
    return {
        "wall_s": sum(r["wall_s"] for r in rs),
        "cpu_s": sum(r["cpu_s"] for r in rs),
        "peak_mib": max(r["peak_mib"] for r in rs),
    }


def scene_1m(n: int = 1_000_000):
    """The biker tiled to ``n`` Gaussians, centres jittered (as scripts/bench_compress_1m.py)."""
    from exgs_core import load

    s = load(BIKER)
    rng = np.random.default_rng(0)
    big = s.subset(np.tile(np.arange(s.n), -(-n // s.n))[:n])
    ext = np.quantile(s.means, 0.98, 0) - np.quantile(s.means, 0.02, 0)
    big.means = (big.means + rng.normal(scale=0.002 * ext.max(), size=big.means.shape)).astype(np.float32)
    return big


TILE_SCENES = (
    "playcanvas_biker.spz",
    "marcelpadilla_academic_tarot_cards.splat",
    "splatset_plant.splat",
    "playcanvas_guitar.compressed.ply",
    "playcanvas_wc_statue_narcissus.sog",
    "playcanvas_flowers_lod2_sh2.sog",
)


def scene_tiled(n: int, scenes_dir: Path):
    """About ``n`` Gaussians: the shared scenes of :data:`TILE_SCENES` (the bundled biker when the folder is absent)
    at SH degree 0, side by side on a square grid (each in a cell of its own 1..99 % extent, rescaled to the biker's),
    repeated until ``n``."""
    from exgs_core import GaussianScene, load

    paths = [scenes_dir / f for f in TILE_SCENES if (scenes_dir / f).exists()] or [BIKER]
    base = []
    for path in paths:
        sc = load(path)
        lo, hi = np.quantile(sc.means, 0.01, 0), np.quantile(sc.means, 0.99, 0)
        base.append((sc, lo, float(np.max(hi - lo)) or 1.0))
    per = sum(b[0].n for b in base)
    reps = -(-n // per)
    cells = reps * len(base)
    side = int(np.ceil(np.sqrt(cells)))
    parts = {k: [] for k in ("means", "quats", "log_scales", "opacity_logits", "sh")}
    size = base[0][2]
    for c in range(cells):
        sc, lo, ext = base[c % len(base)]
        f = size / ext  # every scene rescaled to the first one's extent, placed in its grid cell
        off = np.array([c % side, 0.0, c // side]) * 1.2 * size
        parts["means"].append(((sc.means - lo) * f + off).astype(np.float32))
        parts["quats"].append(sc.quats)
        parts["log_scales"].append((sc.log_scales + np.float32(np.log(f))).astype(np.float32))
        parts["opacity_logits"].append(sc.opacity_logits)
        parts["sh"].append(sc.sh[:, :1])
    arrays = {k: np.concatenate(v)[:n] for k, v in parts.items()}
    return GaussianScene(
        arrays["means"], arrays["quats"], arrays["log_scales"], arrays["opacity_logits"], arrays["sh"], up=base[0][0].up
    )


def held_out_psnr(src: Path, outputs: dict[str, Path]) -> dict[str, float]:
    """Mean PSNR (dB) of each output against ``src`` on 6 held-out automatic views at 384 x 384."""
    from exgs_core import load
    from exgs_core.metrics import psnr
    from exgs_core.render import render
    from exgs_core.views import auto_views

    ref = load(src)
    cams = auto_views(ref, 6, 384, 384, split="eval")
    refs = [render(ref, c).rgb for c in cams]
    out = {}
    for name, path in outputs.items():
        dec = load(path)
        out[name] = round(
            float(np.mean([min(psnr(a, render(dec, c).rgb), 100.0) for c, a in zip(cams, refs, strict=True)])), 3
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenes",
        nargs="+",
        default=["biker", "1m"],
        help="biker, 1m, 10m (shared scenes tiled to 10,000,000 Gaussians, SH 0), or paths of scene files",
    )
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of every command (default 3)")
    ap.add_argument("--ratio", type=float, default=0.1, help="retention (default 0.1)")
    ap.add_argument("--no-adaptive", action="store_true", help="skip the --decimate-adaptive peer")
    ap.add_argument("--no-peers", action="store_true", help="time ours only (e.g. the 10m scene)")
    ap.add_argument("--fast", action="store_true", help="also time ours with --fast (row 'ours --fast')")
    ap.add_argument(
        "--shared-scenes",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "scenes",
        help="where the 10m scene's tiles come from (default ../shared/data/scenes)",
    )
    ap.add_argument("--psnr", action="store_true", help="also measure each output's held-out PSNR")
    ap.add_argument(
        "--also",
        type=Path,
        nargs="*",
        default=[],
        metavar="DIR",
        help="also time `exgs compress` from these checkouts (e.g. an export of an earlier commit: before/after)",
    )
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per command (default 1200)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_speed.json")
    args = ap.parse_args(argv)
    exe = splat_transform()
    v = subprocess.run([str(exe), "-v"], capture_output=True, text=True)
    version = (v.stdout or v.stderr).strip().splitlines()[0] if (v.stdout or v.stderr).strip() else "?"
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "splat_transform": version,
        "ratio": args.ratio,
        "repeat": args.repeat,
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "scenes": {},
    }
    print(f"{results['machine']}; splat-transform {version}; load average {results['load_start']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="exgs_bench_speed_") as td:
        tmp = Path(td)
        others = {f"ours@{d.resolve().name}": d.resolve() for d in args.also}
        for cwd in [ROOT, *others.values()]:  # numba's cache, the file cache
            run_steps(ours_cmd(BIKER, tmp / "warm.exgs", args.ratio), args.timeout, cwd)
        for name in args.scenes:
            if name == "biker":
                src = BIKER
            elif name == "1m":
                from exgs_core.io import save_ply

                src = tmp / "biker_1m.ply"
                save_ply(scene_1m(), src)
            elif name == "10m":
                from exgs_core.io import save_ply

                src = tmp / "tiled_10m.ply"
                save_ply(scene_tiled(10_000_000, args.shared_scenes), src)
            else:
                src = Path(name).resolve()  # the commands run in other checkouts too (--also)
            where = {"ours": ROOT, **others}
            tools = {
                "ours": ours_cmd(src, tmp / "ours.exgs", args.ratio),
                **{k: ours_cmd(src, tmp / f"{k}.exgs", args.ratio) for k in others},
            }
            if args.fast:
                tools["ours --fast"] = ours_cmd(src, tmp / "fast.exgs", args.ratio, ("--fast",))
            if not args.no_peers:
                tools["decimate+sog"] = peer_cmds(exe, src, tmp / "dec.ply", tmp / "dec.sog", args.ratio, False)
            if not (args.no_adaptive or args.no_peers):
                tools["adaptive+sog"] = peer_cmds(exe, src, tmp / "ada.ply", tmp / "ada.sog", args.ratio, True)
            runs: dict[str, list[dict]] = {k: [] for k in tools}
            outputs = {"ours": tmp / "ours.exgs", "decimate+sog": tmp / "dec.sog", "adaptive+sog": tmp / "ada.sog"}
            outputs.update({k: tmp / f"{k}.exgs" for k in others})
            outputs["ours --fast"] = tmp / "fast.exgs"
            for _ in range(args.repeat):
                for tool, steps in tools.items():
                    try:
                        runs[tool].append(run_steps(steps, args.timeout, where.get(tool)))
                    except RuntimeError as e:
                        runs[tool].append({"error": str(e)})
            row: dict = {"input": str(src.name), "tools": {}}
            for tool, rs in runs.items():
                ok = [r for r in rs if "error" in r] == []
                if not ok:
                    row["tools"][tool] = {"error": next(r["error"] for r in rs if "error" in r)}
                    continue
                row["tools"][tool] = {
                    k: round(statistics.median(r[k] for r in rs), 3) for k in ("wall_s", "cpu_s", "peak_mib")
                }
                row["tools"][tool]["wall_runs"] = [round(r["wall_s"], 2) for r in rs]
                row["tools"][tool]["bytes"] = outputs[tool].stat().st_size
                if tool != "ours" and "error" not in row["tools"]["ours"]:  # > 1: ours is faster than this row
                    row["tools"][tool]["wall_ratio_to_ours"] = round(
                        statistics.median(p["wall_s"] / o["wall_s"] for p, o in zip(rs, runs["ours"], strict=True)), 2
                    )
            if args.psnr:
                done = {t: outputs[t] for t in tools if "error" not in row["tools"][t]}
                for tool, p in held_out_psnr(src, done).items():
                    row["tools"][tool]["psnr_db"] = p
            results["scenes"][name] = row
            print(f"== {name} ({src.name})", flush=True)
            for tool, r in row["tools"].items():
                if "error" in r:
                    print(f"  {tool:14s} error: {r['error']}")
                    continue
                extra = f"  {r['wall_ratio_to_ours']:.2f}x ours' wall" if "wall_ratio_to_ours" in r else ""
                ps = f"  {r['psnr_db']:.2f} dB" if "psnr_db" in r else ""
                print(
                    f"  {tool:14s} wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  peak {r['peak_mib']:7.0f} MiB  "
                    f"{r['bytes']:>10,} B{ps}{extra}",
                    flush=True,
                )
    results["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end {results['load_end']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
