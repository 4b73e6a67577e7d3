#!/usr/bin/env python
"""Generate GaussPainter training / validation pairs from our own pipeline (deterministic).

For every scene in ``../shared/data/scenes`` (see SCENES below) this renders views of the full scene (the
target) and of UGC-pruned versions at several retention ratios and SH cuts (the input, with its alpha and
depth), on a black background, and caches them as one ``.npz`` per scene under ``out/painter_data/``
(gitignored). Everything is seeded: the same command writes the same arrays.

Training scenes use random ratios (log-uniform in [0.03, 0.5]) and SH cuts; validation scenes (never trained
on) use the benchmark ratios 0.25, 0.1, 0.05 on held-out ``eval`` views.

    .venv/bin/python scripts/make_painter_data.py [--out out/painter_data] [--size 512] [--only NAME ...]

Array layout per file: ``target`` uint8 [V,H,W,3], ``target_alpha`` uint8 [V,H,W], ``inputs`` uint8
[R,V,H,W,3], ``alpha`` uint8 [R,V,H,W], ``depth`` float16 [R,V,H,W], ``ratios`` float [R], ``sh_keep`` [R].
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SCENE_DIR = os.path.join(ROOT, "..", "shared", "data", "scenes")

# Validation scenes: never trained on. biker (both files: the same capture) is also the README demo scene,
# guitar and the SH3 house cover other content and view-dependent colour.
VAL_SCENES = ["playcanvas_biker.spz", "playcanvas_guitar.compressed.ply", "pdal_fourth_st_sh3.spz"]
# Training scenes (internal-only ones allowed for training; nothing of them is copied into the repository).
TRAIN_SCENES = [
    "gshairlod_donut_fused_sh0.ply",
    "splatset_plant.splat",
    "marcelpadilla_academic_tarot_cards.splat",
    "playcanvas_flowers_lod2_sh2.sog",
    "playcanvas_wc_statue_angel.sog",
    "playcanvas_wc_statue_angel_kneeling.sog",
    "playcanvas_wc_statue_angel_with_candlestick.sog",
    "playcanvas_wc_statue_massa.sog",
    "playcanvas_wc_statue_narcissus.sog",
    "playcanvas_wc_statue_trumpet.sog",
]
# Not used: playcanvas_biker.compressed.ply (same capture as the validation biker), angel_old (duplicate of
# angel), the tiny label crop and the kacytran robustness fixture.
VAL_RATIOS = [0.25, 0.1, 0.05]
VAL_SH_KEEP = 0.1


def _u8(x):
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _exgs_input(clean, ratio: float, cams) -> tuple[list, bool, int]:
    """Renders of the default compressor's .exgs at ``ratio`` (decoded), restored by the file's scene head where the
    encoder kept one: what GaussPainter sees after the head (issue 17 item 3). Returns (renders, head kept, bytes)."""
    from exgs_core.codec.head import apply_head, scene_head
    from exgs_core.compress import CompressOptions, compress
    from exgs_core.io.exgs import decode
    from exgs_core.render import render_many

    data, _ = compress(clean, CompressOptions(ratio=ratio))
    dec = decode(data)
    head = scene_head(dec)
    rr = render_many(dec, cams, backend="cpu")
    if head is not None:
        for r in rr:
            r.rgb = np.clip(apply_head(head, r.rgb, r.alpha, r.depth), 0, 1)
    return rr, head is not None, len(data)


def make_scene(
    name: str, out_dir: str, size: int, seed: int, n_train_views: int, n_ratios: int, pipeline: str = "prune"
) -> dict:
    import exgs_core as ex
    from exgs_core.compress import CompressOptions, prune
    from exgs_core.render import render_many
    from exgs_core.views import auto_views

    t0 = time.time()
    scene = ex.load(os.path.join(SCENE_DIR, name))
    clean, _ = scene.sanitize()
    val = name in VAL_SCENES
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    if val:
        cams = auto_views(clean, 8, size, size, split="eval")
        ratios = list(VAL_RATIOS)
        sh_keeps = [VAL_SH_KEEP] * len(ratios)
    else:
        half = n_train_views // 2
        cams = auto_views(clean, half, size, size, split="train") + auto_views(
            clean, n_train_views - half, size, size, split="eval", fov_y_deg=32.0
        )
        if pipeline == "exgs":  # the retentions the head benchmark judges, and two between (log-uniform draws)
            ratios = sorted([0.02, 0.1] + [float(np.exp(rng.uniform(np.log(0.015), np.log(0.3)))) for _ in range(2)])
            sh_keeps = [-1.0] * len(ratios)  # the compressor's default
        else:
            ratios = sorted(float(np.exp(rng.uniform(np.log(0.03), np.log(0.5)))) for _ in range(n_ratios))
            sh_keeps = [float(rng.choice([0.0, 0.1, 0.3])) for _ in range(n_ratios)]
    full = render_many(clean, cams, backend="cpu")
    target = np.stack([_u8(r.rgb) for r in full])
    target_alpha = np.stack([_u8(r.alpha) for r in full])
    inputs, alphas, depths, heads, sizes = [], [], [], [], []
    acc = None
    for ratio, shk in zip(ratios, sh_keeps, strict=False):
        if pipeline == "exgs":
            rr, kept, nbytes = _exgs_input(clean, ratio, cams)
            heads.append(kept)
            sizes.append(nbytes)
        else:
            pruned, _, acc = prune(clean, CompressOptions(ratio=ratio, sh_keep=shk), acc=acc)
            rr = render_many(pruned, cams, backend="cpu")
        inputs.append(np.stack([_u8(r.rgb) for r in rr]))
        alphas.append(np.stack([_u8(r.alpha) for r in rr]))
        depths.append(np.stack([np.nan_to_num(r.depth, nan=0, posinf=0, neginf=0).astype(np.float16) for r in rr]))
    stem = os.path.splitext(name)[0].replace(".compressed", "")
    path = os.path.join(out_dir, ("val_" if val else "train_") + stem + ".npz")
    np.savez(
        path,
        target=target,
        target_alpha=target_alpha,
        inputs=np.stack(inputs),
        alpha=np.stack(alphas),
        depth=np.stack(depths),
        ratios=np.array(ratios),
        sh_keep=np.array(sh_keeps),
        head=np.array(heads, dtype=bool),
    )
    info = {
        "scene": name,
        "split": "val" if val else "train",
        "views": len(cams),
        "ratios": ratios,
        "sh_keep": sh_keeps,
        "pipeline": pipeline,
        "head_kept": heads,
        "bytes": sizes,
        "gaussians": int(clean.n),
        "seconds": round(time.time() - t0, 1),
        "file": path,
    }
    print(json.dumps(info), flush=True)
    return info


def make_fixture(cache_dir: str, out_dir: str, h: int = 121, w: int = 163) -> dict:
    """Cut the small in-repo test pair from the (redistributable, MIT) biker validation cache at ratio 0.1:
    the odd-sized window of view 0 with the largest input error. Writes input.png (RGBA: premultiplied render
    + alpha), target.png (full-scene render) and fixture.json."""
    from PIL import Image

    d = np.load(os.path.join(cache_dir, "val_playcanvas_biker.npz"))
    r = int(np.argmin(np.abs(d["ratios"] - 0.1)))
    v = 0
    x, a, t = d["inputs"][r, v], d["alpha"][r, v], d["target"][v]
    err = ((x.astype(np.float32) - t.astype(np.float32)) ** 2).sum(-1)
    best, pos = -1.0, (0, 0)
    for y0 in range(0, x.shape[0] - h + 1, 8):
        for x0 in range(0, x.shape[1] - w + 1, 8):
            e = float(err[y0 : y0 + h, x0 : x0 + w].mean())
            if e > best:
                best, pos = e, (y0, x0)
    y0, x0 = pos
    sl = (slice(y0, y0 + h), slice(x0, x0 + w))
    os.makedirs(out_dir, exist_ok=True)
    Image.fromarray(np.concatenate([x[sl], a[sl][..., None]], -1), "RGBA").save(os.path.join(out_dir, "input.png"))
    Image.fromarray(t[sl], "RGB").save(os.path.join(out_dir, "target.png"))
    info = {
        "scene": "playcanvas_biker.spz (MIT, (c) PlayCanvas)",
        "ratio": float(d["ratios"][r]),
        "sh_keep": float(d["sh_keep"][r]),
        "view": "auto_views(split='eval', 8 views, 512x512)[0]",
        "window_yx": [y0, x0],
        "size_hw": [h, w],
        "note": "input.png = RGBA, RGB is the premultiplied render of the UGC-pruned scene on black, A its alpha; "
        "target.png = render of the full scene. Made by scripts/make_painter_data.py --fixture.",
    }
    with open(os.path.join(out_dir, "fixture.json"), "w") as f:
        json.dump(info, f, indent=1)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "painter_data"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-views", type=int, default=24)
    ap.add_argument("--ratios", type=int, default=5, help="random retention ratios per training scene")
    ap.add_argument("--only", nargs="*", help="scene file names (default: all train + val scenes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--val-ratios",
        type=float,
        nargs="+",
        default=None,
        help=f"retention ratios of the validation scenes (default {VAL_RATIOS})",
    )
    ap.add_argument(
        "--pipeline",
        choices=("prune", "exgs"),
        default="prune",
        help="inputs from prune() (the v1 data) or from the default compressor's decoded .exgs with its scene head "
        "applied (issue 17 item 3; training ratios 0.02, 0.1 and two log-uniform draws in [0.015, 0.3])",
    )
    ap.add_argument("--fixture", action="store_true", help="only cut tests/data/painter/ from the cached biker pairs")
    args = ap.parse_args(argv)
    if args.val_ratios:
        VAL_RATIOS[:] = args.val_ratios
    if args.fixture:
        print(json.dumps(make_fixture(args.out, os.path.join(ROOT, "tests", "data", "painter"))))
        return 0
    try:
        import numba

        numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:
        pass
    os.makedirs(args.out, exist_ok=True)
    names = args.only or (VAL_SCENES + TRAIN_SCENES)
    infos = [make_scene(n, args.out, args.size, args.seed, args.train_views, args.ratios, args.pipeline) for n in names]
    with open(os.path.join(args.out, "manifest.json" if not args.only else "manifest_partial.json"), "w") as f:
        json.dump(
            {
                "size": args.size,
                "seed": args.seed,
                "val_scenes": VAL_SCENES,
                "train_scenes": TRAIN_SCENES,
                "scenes": infos,
            },
            f,
            indent=1,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
