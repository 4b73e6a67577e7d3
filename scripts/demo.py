#!/usr/bin/env python3
"""exgs main job on the bundled scene: load it, compress it with UGC into .exgs, render held-out views of the
original and the compressed scene, restore the compressed renders (the file's scene head; unchanged when it has
none), and report sizes, ratio and PSNR/SSIM of each.

Usage: bash scripts/demo.sh [--scene FILE] [--ratio R] [--views N] [--size WxH] [--out DIR] [--no-restore]
Outputs (default out/demo/): scene.exgs, view_NNN.png (original | compressed | restored side by side),
contact_sheet.png (the original's views), comparison.png (all side-by-sides, then a zoomed crop of the window where
restoration helps most, labelled with its dB), zoom.png (that crop alone), summary.json, summary.txt.
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
from exgs_core.compress import CompressOptions, compress, decompress  # noqa: E402
from exgs_core.exgs_format import write_exgs  # noqa: E402
from exgs_core.metrics import psnr, ssim  # noqa: E402
from exgs_core.painter.restore import restored_by  # noqa: E402
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
        sheet[r * (h + g) : r * (h + g) + h, c * (w + g) : c * (w + g) + w] = np.clip(im, 0, 1)
    return sheet


def best_window(errs: list[tuple[np.ndarray, np.ndarray]], size: int) -> tuple[int, int, int]:
    """(view, row, column) of the ``size`` x ``size`` window whose squared error falls most from the compressed
    render to the restored one; ``errs`` holds per view (compressed, restored) squared errors [H, W]."""
    best = (-np.inf, 0, 0, 0)
    for v, (ec, er) in enumerate(errs):
        d = (ec - er).astype(np.float64)
        c = np.zeros((d.shape[0] + 1, d.shape[1] + 1))
        c[1:, 1:] = d.cumsum(0).cumsum(1)
        win = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
        y, x = np.unravel_index(int(np.argmax(win)), win.shape)
        if win[y, x] > best[0]:
            best = (float(win[y, x]), v, int(y), int(x))
    return best[1:]


def zoom_row(tiles: list[np.ndarray], y: int, x: int, size: int, labels: list[str]) -> np.ndarray:
    """The ``size`` window at (y, x) of each tile, enlarged (nearest) to the tiles' width, labelled."""
    from exgs_core.painter.restore import side_by_side

    h, w = tiles[0].shape[:2]
    f = max(1, min(h, w) // size)
    crops = [np.repeat(np.repeat(np.clip(t[y : y + size, x : x + size], 0, 1), f, 0), f, 1) for t in tiles]
    return side_by_side(crops, labels).astype(np.float32) / 255


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scene", default=str(ROOT / "examples" / "playcanvas_biker.spz"), help="scene file (default: bundled biker)"
    )
    ap.add_argument("--ratio", type=float, default=0.1, help="UGC retention ratio (default 0.1)")
    ap.add_argument("--views", type=positive_int, default=8, help="number of held-out views (default 8)")
    ap.add_argument("--size", type=parse_size, default=(512, 512), metavar="WxH", help="image size (default 512x512)")
    ap.add_argument("--out", default=str(ROOT / "out" / "demo"), help="output folder (default out/demo)")
    ap.add_argument("--no-restore", action="store_true", help="skip restoration (scene head / GaussPainter)")
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
    print(
        f"          {scene.meta.get('format')}, {scene.n:,} Gaussians, SH degree {scene.sh_degree}, "
        f"{size / 1e6:.2f} MB ({size / scene.n:.1f} B/Gaussian), loaded in {t_load:.2f} s"
    )
    print(
        f"          as a standard SH3 PLY: {scene.ply_size_bytes(3) / 1e6:.2f} MB; "
        f"framed as '{frame.kind}', radius {frame.radius:.3g}"
    )

    t2 = time.perf_counter()
    data, rep = compress(scene, CompressOptions(ratio=args.ratio))
    t_comp = time.perf_counter() - t2
    write_exgs(out / "scene.exgs", data)
    t3 = time.perf_counter()
    small = decompress(data)
    t_dec = time.perf_counter() - t3
    print(
        f"compress  UGC retention {args.ratio}: {rep.gaussians_out:,} Gaussians, {len(data) / 1e6:.3f} MB -> "
        f"{size / len(data):.1f}x vs the input file, {rep.bytes_sh3_ply / len(data):.1f}x vs SH3 PLY; "
        f"encode {t_comp:.2f} s, decode {t_dec * 1000:.0f} ms"
    )

    w, h = args.size
    cams = auto_views(scene, args.views, w, h, split="eval")
    t1 = time.perf_counter()
    render(scene, cams[0])  # first call compiles (or loads the cached) CPU kernels
    t_warm = time.perf_counter() - t1
    restorer = None
    if not args.no_restore:
        from exgs_core.codec.head import restoration_head
        from exgs_core.painter.restore import Restorer, side_by_side

        restorer = Restorer.from_pretrained()
        # the file's scene head when compress kept one (report: sampling["head"]), else the identity
        head = restoration_head(small)
        what = restored_by(head, restorer.after_head)
        if head is not None and not head.is_identity:
            what += f" ({rep.sampling['head']['bytes']} B in the file, {head.classes} class(es))"
        print(f"restore   {what}")
    images, pairs, times, ps, ss, pr, sr, tr = [], [], [], [], [], [], [], []
    frames, errs = [], []
    for i, cam in enumerate(cams):
        t = time.perf_counter()
        res = render(scene, cam)
        times.append(time.perf_counter() - t)
        cres = render(small, cam)
        comp = cres.rgb
        images.append(res.rgb)
        ps.append(min(psnr(res.rgb, comp), 100.0))
        ss.append(ssim(res.rgb, comp))
        tiles = [res.rgb, comp]
        line = (
            f"  view {i + 1}/{len(cams)}  render {times[-1] * 1000:7.1f} ms  compressed {ps[-1]:6.2f} dB / {ss[-1]:.4f}"
        )
        if restorer is not None:
            t = time.perf_counter()
            rest = restorer.restore(comp, cres.alpha, cres.depth, head=head)
            tr.append(time.perf_counter() - t)
            ref = np.clip(res.rgb, 0, 1)
            frames.append((res.rgb, comp, rest))
            errs.append((((np.clip(comp, 0, 1) - ref) ** 2).sum(-1), ((rest - ref) ** 2).sum(-1)))
            pr.append(min(psnr(res.rgb, rest), 100.0))
            sr.append(ssim(res.rgb, rest))
            tiles.append(rest)
            line += f"  restored {pr[-1]:6.2f} dB / {sr[-1]:.4f} ({tr[-1] * 1000:.0f} ms)"
            pair = side_by_side(tiles, ["original", f"compressed {args.ratio:g}", "restored"]).astype(np.float32) / 255
        else:
            pair = np.concatenate([res.rgb, np.full((h, 4, 3), 0.25, np.float32), comp], axis=1)
        pairs.append(pair)
        write_png(out / f"view_{i:03d}.png", pair)
        print(line, flush=True)
    write_png(out / "contact_sheet.png", contact_sheet(images))
    zoom = None
    if errs:  # the window where restoration helps most, enlarged, with its own PSNRs
        zs = max(8, min(w, h) // 8)
        v, y, x = best_window(errs, zs)
        orig, comp, rest = (f[y : y + zs, x : x + zs] for f in frames[v])
        pc, pz = psnr(orig, comp), psnr(orig, rest)
        zoom = {"view": v, "x": x, "y": y, "size": zs, "psnr_compressed": round(pc, 2), "psnr_restored": round(pz, 2)}
        row = zoom_row(
            list(frames[v]),
            y,
            x,
            zs,
            [f"zoom, view {v + 1}: original", f"compressed {pc:.2f} dB", f"restored {pz:.2f} dB ({pz - pc:+.2f})"],
        )
        write_png(out / "zoom.png", row)
        cell = np.full_like(pairs[0], 0.25)  # the contact sheet's cells are all one size
        rh, rw = min(row.shape[0], cell.shape[0]), min(row.shape[1], cell.shape[1])
        cell[:rh, :rw] = row[:rh, :rw]
        pairs.append(cell)
        print(f"zoom      view {v + 1}, {zs}x{zs} px at ({x}, {y}): {pc:.2f} -> {pz:.2f} dB ({pz - pc:+.2f})")
    write_png(out / "comparison.png", contact_sheet(pairs, cols=1 if restorer is not None else 2))
    summary = {
        "scene": args.scene,
        "format": scene.meta.get("format"),
        "gaussians": scene.n,
        "sh_degree": scene.sh_degree,
        "bytes": size,
        "bytes_sh3_ply": scene.ply_size_bytes(3),
        "ratio_retention": args.ratio,
        "gaussians_compressed": rep.gaussians_out,
        "bytes_exgs": len(data),
        "compression_vs_input": round(size / len(data), 2),
        "compression_vs_sh3_ply": round(rep.bytes_sh3_ply / len(data), 2),
        "encode_s": round(t_comp, 3),
        "decode_s": round(t_dec, 4),
        "psnr": round(float(np.mean(ps)), 3),
        "ssim": round(float(np.mean(ss)), 4),
        "psnr_restored": round(float(np.mean(pr)), 3) if pr else None,
        "ssim_restored": round(float(np.mean(sr)), 4) if sr else None,
        "restore_ms_mean": round(1000 * float(np.mean(tr)), 1) if tr else None,
        "restored_by": restored_by(head, restorer.after_head) if restorer is not None else None,
        "scene_head": rep.sampling.get("head"),
        "zoom": zoom,
        "views": len(cams),
        "size": [w, h],
        "backend": res.backend,
        "load_s": round(t_load, 3),
        "first_render_s": round(t_warm, 3),
        "render_ms_mean": round(1000 * float(np.mean(times)), 2),
        "fps": round(1.0 / float(np.mean(times)), 2),
        "images": [f"view_{i:03d}.png" for i in range(len(cams))]
        + ["contact_sheet.png", "comparison.png"]
        + (["zoom.png"] if zoom else []),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"{k}: {v}" for k, v in summary.items() if k != "images"]
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print(
        f"rendered {len(cams)} views at {w}x{h} on {res.backend}: {summary['render_ms_mean']} ms/frame "
        f"({summary['fps']} fps); first call {t_warm:.2f} s"
    )
    print(
        f"compressed {size / 1e6:.2f} MB -> {len(data) / 1e6:.3f} MB ({summary['compression_vs_input']}x; "
        f"{summary['compression_vs_sh3_ply']}x vs SH3 PLY) at PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f} "
        f"on {len(cams)} held-out views"
    )
    if pr:
        print(
            f"restored ({restored_by(head, restorer.after_head)}): "
            f"PSNR {summary['psnr_restored']:.2f} dB, SSIM {summary['ssim_restored']:.4f} "
            f"({summary['restore_ms_mean']} ms/frame)"
        )
    print(
        f"wrote {out}/comparison.png (original | compressed | restored), contact_sheet.png, view_*.png, scene.exgs, "
        f"{'zoom.png, ' if zoom else ''}summary.json, summary.txt"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
