#!/usr/bin/env python3
"""Colour refit benchmark (issue #16 item 1): ``compress`` with the defaults, without and with the closed-form
colour refit of the survivors (:func:`exgs_core.prune.refit_colours`), on every scene and retention.

Per scene and retention: file bytes, PSNR / SSIM of the decoded file against the uncompressed scene on held-out
automatic views (``split="eval"``: the protocol of ``scripts/bench_compress.py``, whose ``Evaluator`` this reuses;
never the views the refit fits on), the refit's own time and its training-view PSNR before and after, and the
whole compress time. When the refit changes the codec step compression keeps (``codec="auto"`` judges each
step's loss against its saving, and a better scene makes a coarser step's loss larger), the refit runs again at the
step kept without it (``with_same_codec``), for a comparison at about equal bytes.

The refit's targets (the original's renders of the scoring views) are rendered once per compress call and timed
apart (``targets_s``): the integration can render them once per compress call too (the scoring pass renders at SH
degree 0, so its renders are not the targets of a scene with SH).

While ``CompressOptions`` has no ``refit`` field, "with refit" wraps ``exgs_core.compress._prune`` so that the
survivors are refitted on the scoring views right after pruning and before the codec choice, exactly where the
integration puts it; once the field exists, the script sets it instead.

Usage: .venv/bin/python scripts/bench_refit.py [--scenes DIR] [--only NAME ...] [--ratios 0.5 0.25 0.1 0.05]
       [--iterations 8] [--pull 0.05] [--out out/bench_refit.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_compress import Evaluator  # noqa: E402

from exgs_core import compress as C  # noqa: E402
from exgs_core import load  # noqa: E402
from exgs_core.prune import refit_colours  # noqa: E402


@contextlib.contextmanager
def refit_in_prune(iterations: int, pull: float, reports: list):
    """Make ``compress`` refit the survivors' colours after ``_prune`` (the integration point), recording each
    :class:`~exgs_core.prune.refit.RefitReport` in ``reports``."""
    from exgs_core.render import prepare, render

    original = C._prune
    targets: dict = {}

    def _prune(scene, options, scoring, check, cancel, *args, **kwargs):
        pr = original(scene, options, scoring, check, cancel, *args, **kwargs)
        if pr.scene.n >= scene.n:
            return pr
        key = id(scoring)
        t = time.perf_counter()
        if key not in targets:  # the scoring pass rendered these already; compress would keep them (see docstring)
            prep = prepare(scene)
            targets[key] = (scoring, [render(scene, c, prepared=prep).rgb for c in scoring.cameras])
        t_targets = time.perf_counter() - t
        out, rep = refit_colours(
            pr.scene,
            scene,
            scoring.cameras,
            iterations=iterations,
            pull=pull,
            sh_full=pr.sh_full,
            targets=targets[key][1],
            cancel=cancel,
        )
        reports.append((rep, t_targets))
        changes = {"scene": out, "seconds": pr.seconds + rep.seconds}
        if "judged" in {f.name for f in dataclasses.fields(pr)}:
            changes["judged"] = None  # the check-view PSNRs were of the colours before the refit
        return dataclasses.replace(pr, **changes)

    C._prune = _prune
    try:
        yield
    finally:
        C._prune = original


def run(scene, ev, ratio, refit: bool, iterations: int, pull: float, codec: str = "auto") -> dict:
    fields = {f.name for f in dataclasses.fields(C.CompressOptions)}
    reports: list = []
    t = time.perf_counter()
    if "refit" in fields:  # integrated: the option decides
        kw = {"refit": refit}
        if refit and "refit_iterations" in fields:
            kw |= {"refit_iterations": iterations, "refit_pull": pull}
        data, rep = C.compress(scene, C.CompressOptions(ratio=ratio, codec=codec, **kw))
        info = rep.amplification.get("refit") if refit else None
    elif refit:
        with refit_in_prune(iterations, pull, reports):
            data, rep = C.compress(scene, C.CompressOptions(ratio=ratio, codec=codec))
        info = {**reports[-1][0].as_dict(), "targets_s": reports[-1][1]} if reports else None
    else:
        data, rep = C.compress(scene, C.CompressOptions(ratio=ratio, codec=codec))
        info = None
    t_enc = time.perf_counter() - t
    dec = C.decompress(data, max_gaussians=0)
    p, s = ev(dec)
    row = {
        "bytes": len(data),
        "kept": dec.n,
        "encode_s": round(t_enc, 3),
        "psnr": round(p, 3),
        "ssim": round(s, 4),
        "compensation": rep.sampling.get("chosen", rep.sampling.get("method")),
        "codec": (rep.sampling.get("codec") or {}).get("chosen"),
    }
    if info:
        row["refit"] = {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in info.items()
            if k
            in ("seconds", "targets_s", "iterations", "psnr_before", "psnr_after", "step", "coefficients", "clamped")
        }
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=Path, default=ROOT.parent / "shared" / "data" / "scenes")
    ap.add_argument("--only", nargs="*", help="scene file names to run (default all)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 0.25, 0.1, 0.05])
    ap.add_argument("--views", type=int, default=6, help="held-out views per scene (default 6)")
    ap.add_argument("--size", type=int, default=384, help="held-out image size (default 384)")
    ap.add_argument("--iterations", type=int, default=None, help="CG iterations (default: refit's)")
    ap.add_argument("--pull", type=float, default=None, help="pull toward the merged colours (default: refit's)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench_refit.json")
    ap.add_argument("--resume", action="store_true", help="keep the results already in --out")
    args = ap.parse_args(argv)
    from exgs_core.prune.refit import DEFAULT_ITERATIONS, DEFAULT_PULL

    iterations = DEFAULT_ITERATIONS if args.iterations is None else args.iterations
    pull = DEFAULT_PULL if args.pull is None else args.pull
    files = sorted(p for p in args.scenes.iterdir() if p.is_file() and p.name != "SOURCES.md")
    if args.only:
        files = [p for p in files if p.name in args.only]
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "views": args.views,
        "size": args.size,
        "iterations": iterations,
        "pull": pull,
        "scenes": {},
    }
    if args.resume and args.out.exists():
        results["scenes"] = json.loads(args.out.read_text())["scenes"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{'scene':44s} {'rho':>5s} {'bytes':>9s} {'PSNR':>7s} {'+refit':>7s} {'dB':>6s} {'SSIM':>6s} "
        f"{'+refit':>6s} {'bytes+':>9s} {'refit s':>7s} {'tgt s':>6s} {'train dB':>13s}",
        flush=True,
    )
    for f in files:
        done = results["scenes"].setdefault(f.name, {})
        todo = [r for r in args.ratios if str(r) not in done]
        if not todo:
            continue
        scene = load(f)
        ev = Evaluator(scene, args.views, args.size)
        for r in todo:
            base = run(scene, ev, r, False, iterations, pull)
            ref = run(scene, ev, r, True, iterations, pull)
            done[str(r)] = {"gaussians": scene.n, "sh_degree": scene.sh_degree, "without": base, "with": ref}
            if ref["codec"] != base["codec"] and base["codec"] in C.CODEC_LADDER:
                # the refit changed the codec step the ladder keeps (a better scene makes a coarser step's loss
                # larger): the same step as without, for a comparison at about equal bytes
                done[str(r)]["with_same_codec"] = run(scene, ev, r, True, iterations, pull, codec=base["codec"])
            rf = ref.get("refit", {})
            print(
                f"{f.name:44s} {r:5.2f} {base['bytes']:9,d} {base['psnr']:7.2f} {ref['psnr']:7.2f} "
                f"{ref['psnr'] - base['psnr']:+6.2f} {base['ssim']:6.4f} {ref['ssim']:6.4f} {ref['bytes']:9,d} "
                f"{rf.get('seconds', float('nan')):7.2f} {rf.get('targets_s', float('nan')):6.2f} "
                f"{rf.get('psnr_before', 0):6.2f}>{rf.get('psnr_after', 0):6.2f}",
                flush=True,
            )
            same = done[str(r)].get("with_same_codec")
            if same:
                print(
                    f"{'  same codec step (' + base['codec'] + ') with refit':44s} {r:5.2f} {'':9s} {'':7s} "
                    f"{same['psnr']:7.2f} {same['psnr'] - base['psnr']:+6.2f} {'':6s} {same['ssim']:6.4f} "
                    f"{same['bytes']:9,d}",
                    flush=True,
                )
            args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
