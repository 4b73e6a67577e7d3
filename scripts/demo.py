#!/usr/bin/env python3
"""exgs main job on the bundled scene: load it, report it, render held-out views, write images and a summary.

Usage: bash scripts/demo.sh [--scene FILE] [--views N] [--size WxH] [--out DIR]
Outputs (default out/demo/): view_NNN.png, contact_sheet.png (all views in one image), summary.json, summary.txt.
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

from exgs_core import ExgsError, load  # noqa: E402
from exgs_core.cli import parse_size, path_bytes, positive_int, write_png  # noqa: E402
from exgs_core.render import render  # noqa: E402
from exgs_core.views import auto_views, scene_frame  # noqa: E402


def contact_sheet(images: list[np.ndarray], cols: int = 4) -> np.ndarray:
    """Tile float images [H, W, 3] into one [rows*H, cols*W, 3] image (2-pixel grey gutters)."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // cols)
    g = 2
    sheet = np.full((rows * h + (rows - 1) * g, cols * w + (cols - 1) * g, 3), 0.25, np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + g): r * (h + g) + h, c * (w + g): c * (w + g) + w] = np.clip(im, 0, 1)
    return sheet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scene", default=str(ROOT / "examples" / "playcanvas_biker.spz"), help="scene file (default: bundled biker)")
    ap.add_argument("--views", type=positive_int, default=8, help="number of held-out views (default 8)")
    ap.add_argument("--size", type=parse_size, default=(512, 512), metavar="WxH", help="image size (default 512x512)")
    ap.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder (default out/demo)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    try:
        scene = load(args.scene)
    except ExgsError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    t_load = time.perf_counter() - t0
    size = path_bytes(args.scene)
    frame = scene_frame(scene)
    print(f"scene     {args.scene}")
    print(f"          {scene.meta.get('format')}, {scene.n:,} Gaussians, SH degree {scene.sh_degree}, "
          f"{size / 1e6:.2f} MB ({size / scene.n:.1f} B/Gaussian), loaded in {t_load:.2f} s")
    print(f"          as a standard SH3 PLY: {scene.ply_size_bytes(3) / 1e6:.2f} MB; "
          f"framed as '{frame.kind}', radius {frame.radius:.3g}")

    w, h = args.size
    cams = auto_views(scene, args.views, w, h, split="eval")
    t1 = time.perf_counter()
    render(scene, cams[0])  # first call compiles (or loads the cached) CPU kernels
    t_warm = time.perf_counter() - t1
    images, times = [], []
    for i, cam in enumerate(cams):
        t = time.perf_counter()
        res = render(scene, cam)
        times.append(time.perf_counter() - t)
        images.append(res.rgb)
        write_png(out / f"view_{i:03d}.png", res.rgb)
        print(f"  view {i + 1}/{len(cams)}  {times[-1] * 1000:7.1f} ms  coverage {res.alpha.mean():.3f}", flush=True)
    write_png(out / "contact_sheet.png", contact_sheet(images))
    summary = {
        "scene": args.scene,
        "format": scene.meta.get("format"),
        "gaussians": scene.n,
        "sh_degree": scene.sh_degree,
        "bytes": size,
        "bytes_sh3_ply": scene.ply_size_bytes(3),
        "views": len(cams),
        "size": [w, h],
        "backend": res.backend,
        "load_s": round(t_load, 3),
        "first_render_s": round(t_warm, 3),
        "render_ms_mean": round(1000 * float(np.mean(times)), 2),
        "fps": round(1.0 / float(np.mean(times)), 2),
        "images": [f"view_{i:03d}.png" for i in range(len(cams))] + ["contact_sheet.png"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"{k}: {v}" for k, v in summary.items() if k != "images"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print(f"rendered {len(cams)} views at {w}x{h} on {res.backend}: {summary['render_ms_mean']} ms/frame "
          f"({summary['fps']} fps); first call {t_warm:.2f} s")
    print(f"wrote {out}/contact_sheet.png, view_*.png, summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
