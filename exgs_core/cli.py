"""The ``exgs`` command line. Run ``exgs --help`` or ``exgs COMMAND --help``.

Every user-caused failure prints ``exgs: error: <file>: <problem>`` and exits with status 2; nothing is
left half-written (outputs are written to a temporary file and renamed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import __version__
from .conventions import human_bytes
from .errors import CameraError, ExgsError, OutputError
from .io.atomic import check_output_path
from .presets import FAST_HINT_GAUSSIANS, FAST_PRESET

PSNR_CAP_DB = 100.0  # identical renders have infinite PSNR; eval reports this cap instead (JSON has no inf)

# Bounds on the options that size the work, checked while the command line is parsed (exit status 2, the option
# named), before any file is read. Each image costs the CPU renderer ~20 B per pixel of output (rgb, alpha, depth as
# float32) plus its per-tile lists, which grow with the pixels each Gaussian covers; the PNG conversion another
# ~15 B per pixel; eval's SSIM ~100 B per pixel (float64 filtered images). A 16384x16384 render ran out of memory
# after a minute; these budgets keep one view within a few GB.
MAX_SIDE = 16384  #: longest image side, any command
RENDER_MAX_PIXELS = 8192 * 8192  #: render: pixels per view (8K UHD 7680x4320 fits, 16384x4096 fits)
EVAL_MAX_PIXELS = 4096 * 4096  #: eval: pixels per view (two renders and an SSIM per view)
SSIM_MIN_SIDE = 11  #: eval: SSIM's 11x11 Gaussian window needs images at least this wide and tall
MAX_VIEWS = 4096  #: --views, any command
MAX_VIEW_SIZE = 4096  #: compress --view-size (its check views are twice as large: 8192x8192 = RENDER_MAX_PIXELS)
MAX_TARGET_MB = 1e9  #: compress --target-mb (a petabyte)


# --------------------------------------------------------------------------- helpers
def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480); argparse type (each side 1..:data:`MAX_SIDE`)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 512x512, got {text!r}") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise argparse.ArgumentTypeError(f"size must be between 1x1 and {MAX_SIDE}x{MAX_SIDE}, got {text!r}")
    return w, h


def size_type(max_pixels: int, min_side: int = 1, what: str = "per view", min_reason: str = ""):
    """argparse type: :func:`parse_size`, then at least ``min_side`` per side and at most ``max_pixels`` pixels."""

    def parse(text: str) -> tuple[int, int]:
        w, h = parse_size(text)
        if min(w, h) < min_side:
            raise argparse.ArgumentTypeError(
                f"{w}x{h} is too small: at least {min_side}x{min_side} {what}"
                + (f" ({min_reason})" if min_reason else "")
            )
        if w * h > max_pixels:
            raise argparse.ArgumentTypeError(
                f"{w}x{h} is {w * h:,} pixels; at most {max_pixels:,} pixels ({_square(max_pixels)}) {what}"
            )
        return w, h

    parse.__name__ = "size"
    return parse


def _square(pixels: int) -> str:
    side = math.isqrt(pixels)
    return f"{side}x{side}" if side * side == pixels else f"{pixels:,} pixels"


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def int_range(lo: int, hi: int):
    """argparse type: an integer in [lo, hi]."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo} to {hi}, got {v}")
        return v

    parse.__name__ = "integer"
    return parse


def float_range(lo: float, hi: float, *, lo_open: bool = False, what: str = "a number"):
    """argparse type: a finite float in [lo, hi] (or (lo, hi] with ``lo_open``); NaN and inf are refused."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in {interval}, got {text!r}") from None
        if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
            raise argparse.ArgumentTypeError(f"expected {what} in {interval}, got {text!r}")
        return v

    parse.__name__ = "number"
    return parse


def _check_compress_numbers(args) -> None:
    """``--ratio``, ``--sh-keep`` and ``--target-mb`` are finite and in range (NaN, inf, 0 and overflowing sizes
    used to fail late or untyped). An :class:`ExgsError` naming the option: exit status 2, before any work."""

    def check(option, v, lo, hi, *, lo_open=False, what):
        if v is None:
            return
        if not (math.isfinite(v) and lo <= v <= hi and not (lo_open and v == lo)):
            interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
            raise ExgsError(f"{option}: expected {what} in {interval}, got {v!r}")

    check("--ratio", args.ratio, 0.0, 1.0, lo_open=True, what="a fraction of the Gaussians")
    check("--sh-keep", args.sh_keep, 0.0, 1.0, what="a fraction of the kept Gaussians")
    check("--target-mb", args.target_mb, 1e-6, MAX_TARGET_MB, what="a file size in MB (10^6 bytes, at least 1 byte)")


def _check_inputs(*paths) -> None:
    """Refuse named pipes and devices among the input paths (None: not given) before anything reads them."""
    from .io import check_input_path

    for p in paths:
        if p is not None:
            check_input_path(p)


def path_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or of every file under a folder (an unbundled SOG)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a float image [H, W, 3] (or [H, W]) in [0, 1] as an 8-bit PNG, atomically."""
    from PIL import Image

    from .io.atomic import atomic_write
    from .metrics import to_uint8

    with atomic_write(path) as f:
        Image.fromarray(to_uint8(img)).save(f, format="PNG")


def _progress(iterable, desc: str, total: int | None = None, quiet: bool = False):
    from tqdm import tqdm

    return tqdm(
        iterable, desc=desc, total=total, unit="view", disable=quiet or None, file=sys.stderr, dynamic_ncols=True
    )


def _views(scene, args, split: str):
    from .views import auto_views, load_cameras_json

    w, h = args.size
    if getattr(args, "cameras", None):
        cams = load_cameras_json(args.cameras, width=w, height=None)
        cams = cams[: args.views] if args.views else cams
        # --size sets the width; the height follows each camera's aspect, so check the budget again, before rendering
        max_px, min_side = args.max_pixels, args.min_side
        for cam in cams:
            if cam.width * cam.height > max_px or min(cam.width, cam.height) < min_side:
                raise CameraError(
                    f"camera {cam.name!r} at --size width {w} has the aspect of a {cam.width}x{cam.height} image "
                    f"({cam.width * cam.height:,} pixels); {args.command} allows {min_side}x{min_side} to "
                    f"{max_px:,} pixels per view: choose another --size",
                    args.cameras,
                )
        return cams
    return auto_views(scene, args.views, w, h, split=split, mode=args.mode)


# --------------------------------------------------------------------------- commands
def cmd_info(args) -> int:
    from .io import detect_format, load

    _check_inputs(*args.files)
    for path in args.files:
        fmt = detect_format(path)
        scene = load(path, format=fmt)
        size = path_bytes(path)
        lo, hi = scene.bounds()
        rep = scene.validate()
        info = {
            "file": os.fspath(path),
            "format": fmt,
            "gaussians": scene.n,
            "sh_degree": scene.sh_degree,
            "bounds_min": [round(float(v), 6) for v in lo],
            "bounds_max": [round(float(v), 6) for v in hi],
            "bytes": size,
            "bytes_per_gaussian": size / scene.n if scene.n else None,
            "sh3_ply_bytes": scene.ply_size_bytes(3),
            "antialiased": scene.antialiased,
            "problems": rep.problems(),
            "notes": list(scene.meta.get("notes", [])),
        }
        if fmt == "exgs":
            from .codec.entropy import CODEC_NAMES
            from .exgs_format import read_header

            c = read_header(path)["container"]
            info["exgs"] = {
                "version": c["version"],
                "sections": [
                    {"name": x["name"], "bytes": x["stored_bytes"], "codec": CODEC_NAMES.get(x["codec"], x["codec"])}
                    for x in c["sections"]
                ],
            }
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{info['file']}")
        print(f"  format            {fmt}" + (f" (format version {info['exgs']['version']})" if "exgs" in info else ""))
        print(f"  gaussians         {scene.n:,}")
        print(f"  SH degree         {scene.sh_degree}")
        print(f"  bounds min        {' '.join(f'{v:.4g}' for v in lo)}")
        print(f"  bounds max        {' '.join(f'{v:.4g}' for v in hi)}")
        bpg = f"{info['bytes_per_gaussian']:.2f}" if scene.n else "n/a"
        print(f"  size              {human_bytes(size)} ({size:,} bytes, {bpg} bytes/Gaussian)")
        sh3 = info["sh3_ply_bytes"]
        print(
            f"  as SH3 PLY        {human_bytes(sh3)} "
            + (f"(ratio {sh3 / max(size, 1):.1f}x)" if sh3 else "(no Gaussians: no ratio)")
        )
        for x in info.get("exgs", {}).get("sections", []):
            bits = f", {8 * x['bytes'] / scene.n:.1f} bits/Gaussian" if scene.n else ""
            print(f"  section           {x['name']:<11} {x['bytes']:>10,} bytes ({x['codec']}{bits})")
        if info["antialiased"]:
            print("  antialiased       yes (mip-splatting style opacity compensation)")
        for p in info["problems"]:
            print(f"  problem           {p}")
        for n in info["notes"]:
            print(f"  note              {n}")
    return 0


def _writer_options(fmt: str, args) -> dict:
    """Per-format writer options from the command line (only those that apply to ``fmt``)."""
    if fmt == "ply":
        return {"ascii": bool(getattr(args, "ascii", False))}
    if fmt == "spz":
        return {"version": int(getattr(args, "spz_version", 4))}
    return {}


def _print_write_report(rep) -> None:
    for k, n in rep.clamped.items():
        print(f"warning: clamped {n:,} value(s) of {k} into the {rep.format} format's range", file=sys.stderr)
    for note in rep.notes:
        print(f"note: {note}", file=sys.stderr)


def cmd_convert(args) -> int:
    from .io import format_for_path, load, save

    _check_inputs(args.input)
    out = Path(args.output)
    fmt = format_for_path(out)
    if args.ascii and fmt != "ply":
        raise ExgsError(f"--ascii applies to .ply output only, not {fmt}", out)
    check_output_path(out)
    t0 = time.perf_counter()
    scene = load(args.input)
    rep = save(scene, out, format=fmt, sanitize=args.sanitize, **_writer_options(fmt, args))
    _print_write_report(rep)
    print(
        f"{args.input} ({scene.meta.get('format')}) -> {out} ({fmt}): {rep.gaussians:,} Gaussians, SH {scene.sh_degree}, "
        f"{human_bytes(path_bytes(out))} in {time.perf_counter() - t0:.2f} s"
    )
    return 0


def cmd_render(args) -> int:
    from .io import load
    from .render import render

    _check_inputs(args.file, args.cameras)
    scene = load(args.file)
    cams = _views(scene, args, args.split)  # checks the image sizes cameras.json implies, before any heavy setup
    restorer = _restorer(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the output folder: {e.strerror or e}", out) from None
    check_output_path(out / "view_000.png")
    bg = np.array(args.background, np.float32)
    t0 = time.perf_counter()
    for i, cam in enumerate(_progress(cams, "render", len(cams), args.quiet)):
        res = render(scene, cam, backend=args.backend, background=bg)
        write_png(out / f"view_{i:03d}.png", res.rgb)
        if restorer is not None:
            write_png(
                out / f"view_{i:03d}_restored.png",
                restorer.restore(res.rgb, res.alpha, res.depth, background=bg, head=_scene_head(scene)),
            )
        if args.alpha:
            write_png(out / f"view_{i:03d}_alpha.png", res.alpha)
    dt = time.perf_counter() - t0
    what = "view(s)"
    if restorer is not None:
        what = f"view(s) + copies restored by {_restored_by(restorer, _scene_head(scene))} (*_restored.png)"
    print(
        f"wrote {len(cams)} {what} of {args.file} ({scene.n:,} Gaussians) at {args.size[0]}x{args.size[1]} "
        f"to {out}/ in {dt:.2f} s ({res.backend} backend)"
    )
    return 0


def evaluate(reference, candidate, cameras, *, backend="auto", progress=None, restorer=None) -> dict:
    """Render both scenes on ``cameras``; per-view and mean PSNR (capped at 100 dB) and SSIM. With a
    GaussPainter ``restorer`` the candidate's renders are also restored and scored (``psnr_restored``, ...)."""
    from .metrics import psnr, ssim
    from .render import prepare, render

    per_view = []
    it = progress(cameras) if progress else cameras
    prep_a, prep_b = prepare(reference, backend), prepare(candidate, backend)
    for cam in it:
        ra = render(reference, cam, backend=backend, prepared=prep_a)
        a = ra.rgb
        rb = render(candidate, cam, backend=backend, prepared=prep_b)
        b = rb.rgb
        p = psnr(a, b)
        v = {
            "view": cam.name,
            "psnr": min(p, PSNR_CAP_DB),
            "ssim": ssim(a, b),
            "identical": p == math.inf,
            "empty": bool(ra.alpha.max(initial=0.0) < 1 / 255),
        }
        if restorer is not None:
            r = restorer.restore(b, rb.alpha, rb.depth, head=_scene_head(candidate))
            v["psnr_restored"] = min(psnr(a, r), PSNR_CAP_DB)
            v["ssim_restored"] = ssim(a, r)
        per_view.append(v)
    out = {
        "psnr": float(np.mean([v["psnr"] for v in per_view])),
        "ssim": float(np.mean([v["ssim"] for v in per_view])),
        "identical": all(v["identical"] for v in per_view),
        "empty_views": sum(v["empty"] for v in per_view),  # views where the reference shows nothing at all
        "per_view": per_view,
    }
    if restorer is not None:
        out["psnr_restored"] = float(np.mean([v["psnr_restored"] for v in per_view]))
        out["ssim_restored"] = float(np.mean([v["ssim_restored"] for v in per_view]))
    return out


def _scene_head(scene):
    """The head ``--restore`` applies first (:func:`~exgs_core.codec.head.restoration_head`): a decoded .exgs's
    scene head, the identity for an .exgs without one, None for other formats."""
    from .codec.head import restoration_head

    return restoration_head(scene)


def _restored_by(restorer, head) -> str:
    """What ``--restore`` runs on a scene with ``head`` (:func:`_scene_head`): the head, GaussPainter, or both."""
    from .painter.restore import restored_by

    return restored_by(head, restorer.after_head)


def _restorer(args):
    """The restorer when ``--restore`` / ``--painter-weights`` was given, else None: GaussPainter's network loads
    only when a frame needs it (an .exgs with a scene head is restored by its head, without torch, unless the
    weights run after heads)."""
    if not getattr(args, "restore", False) and not getattr(args, "painter_weights", None):
        return None
    from .painter.restore import LazyRestorer

    return LazyRestorer(getattr(args, "painter_weights", None))


def cmd_eval(args) -> int:
    from .io import load
    from .metrics import lpips_available

    _check_inputs(args.reference, args.candidate, args.cameras)
    ref = load(args.reference)
    cand = load(args.candidate)
    cams = _views(ref, args, "eval")
    restorer = _restorer(args)
    t0 = time.perf_counter()
    res = evaluate(
        ref,
        cand,
        cams,
        backend=args.backend,
        restorer=restorer,
        progress=lambda c: _progress(c, "eval", len(c), args.quiet or args.json),
    )
    if res["empty_views"] == len(cams):  # two black images compare as "identical": not a result
        raise CameraError(
            f"none of the {len(cams)} view(s) sees the reference scene, so there is nothing to compare; "
            f"check that the cameras belong to this scene and use its axes (docs/CONVENTIONS.md)",
            args.cameras or args.reference,
        )
    if res["empty_views"]:
        print(
            f"warning: {res['empty_views']} of {len(cams)} view(s) show nothing of the reference scene; "
            f"they count as perfect matches in the means",
            file=sys.stderr,
        )
    out = {
        "psnr": res["psnr"],
        "ssim": res["ssim"],
        "lpips": None,
        "identical": res["identical"],
        "psnr_cap_db": PSNR_CAP_DB,
        "bytes_reference": path_bytes(args.reference),
        "bytes_candidate": path_bytes(args.candidate),
        "gaussians_reference": ref.n,
        "gaussians_candidate": cand.n,
        "views": len(cams),
        "size": list(args.size),
        "split": "eval (held-out automatic views)" if not args.cameras else f"cameras from {args.cameras}",
        "seconds": round(time.perf_counter() - t0, 3),
        "per_view": res["per_view"],
    }
    if restorer is not None:
        out["psnr_restored"] = res["psnr_restored"]
        out["ssim_restored"] = res["ssim_restored"]
        head = _scene_head(cand)
        out["scene_head"] = head is not None and not head.is_identity  # the file's head ran first
        out["restored_by"] = _restored_by(restorer, head)
    if args.json:
        print(json.dumps(out))
        return 0
    ratio = out["bytes_reference"] / max(out["bytes_candidate"], 1)
    psnr_txt = f"{out['psnr']:.2f} dB" + (" (identical renders: capped)" if res["identical"] else "")
    print(f"reference  {args.reference}: {ref.n:,} Gaussians, {human_bytes(out['bytes_reference'])}")
    print(
        f"candidate  {args.candidate}: {cand.n:,} Gaussians, {human_bytes(out['bytes_candidate'])} ({ratio:.2f}x smaller)"
    )
    print(f"views      {len(cams)} at {args.size[0]}x{args.size[1]}, {out['split']}")
    print(f"PSNR       {psnr_txt}")
    print(f"SSIM       {out['ssim']:.4f}")
    if restorer is not None:
        print(
            f"restored   PSNR {out['psnr_restored']:.2f} dB ({out['psnr_restored'] - out['psnr']:+.2f}), "
            f"SSIM {out['ssim_restored']:.4f} ({out['ssim_restored'] - out['ssim']:+.4f}) with "
            + _restored_by(restorer, _scene_head(cand))
        )
    print(f"LPIPS      n/a ({lpips_available()[1]})")
    return 0


def _file_sha256(path) -> str | None:
    import hashlib

    p = Path(path)
    if not p.is_file():
        return None
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cmd_compress(args) -> int:
    from tqdm import tqdm

    from .compress import CompressOptions, compress
    from .io import format_for_path, load
    from .io.atomic import atomic_write
    from .views import load_cameras_json

    _check_compress_numbers(args)
    _check_inputs(args.input, args.cameras)
    out = Path(args.output)
    container = format_for_path(out)  # .exgs, or a standard container: .spz, .sog, .glb, .compressed.ply, ...
    check_output_path(out)  # before minutes of work, not after
    try:
        opts = CompressOptions(
            ratio=args.ratio,
            target_bytes=None if args.target_mb is None else max(1, int(args.target_mb * 1e6)),
            sh_keep=0.1 if args.sh_keep is None else args.sh_keep,
            sh_keep_auto=args.target_mb is not None and args.sh_keep is None,
            score=args.score,
            voxel_sampling=not args.no_voxel,
            compensation=args.compensation or (FAST_PRESET["compensation"] if args.fast else "auto"),
            codec=args.codec or (FAST_PRESET["codec"] if args.fast else "auto"),
            head=args.head or (FAST_PRESET["head"] if args.fast else "auto"),
            refit=not args.no_refit,
            fold_sh=not args.no_fold_sh,
            views=args.views or (FAST_PRESET["views"] if args.fast else CompressOptions.views),
            view_size=args.view_size,
        )
    except ValueError as e:
        raise ExgsError(str(e)) from None
    t0 = time.perf_counter()
    scene = load(args.input)
    cams = load_cameras_json(args.cameras) if args.cameras else None
    if scene.n >= FAST_HINT_GAUSSIANS and not args.fast and not args.quiet:
        print(
            f"exgs: {scene.n:,} Gaussians: the defaults judge merge rules, codec steps and a scene head on renders "
            "and can take many minutes at this size; --fast is about 5x quicker (up to several dB lower on fuzzy "
            "scenes; BENCHMARKS.md)",
            file=sys.stderr,
        )
    bar = tqdm(
        total=1000,
        desc="compress",
        unit="",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
        file=sys.stderr,
        disable=args.quiet or None,
        dynamic_ncols=True,
    )

    def progress(f, stage):
        bar.n = int(1000 * min(max(f, 0.0), 1.0))
        bar.set_postfix_str(stage, refresh=False)
        bar.refresh()

    try:
        data, rep = compress(
            scene,
            opts,
            cameras=cams,
            source_sha256=_file_sha256(args.input),
            progress=progress,
            container=container,
            container_options={"version": args.spz_version} if container == "spz" else None,
        )
    finally:
        bar.close()
    with atomic_write(out) as f:
        f.write(data)
    in_bytes = path_bytes(args.input)
    dt = time.perf_counter() - t0
    for a in rep.sanitize_actions:
        print(f"sanitize: {a}")
    print(f"{args.input} -> {out}" + ("" if container == "exgs" else f" ({container})"))
    print(
        f"  Gaussians  {rep.gaussians_in:,} -> {rep.gaussians_out:,} (retention {rep.ratio:.4f}), "
        f"{rep.sh_full:,} with full SH"
    )
    print(
        f"  bytes      {human_bytes(len(data))} ({len(data):,} bytes, {8 * len(data) / max(rep.gaussians_out, 1):.1f} bits/Gaussian)"
    )
    print(
        f"  ratio      {in_bytes / len(data):.1f}x vs the input file ({human_bytes(in_bytes)}), "
        f"{rep.bytes_sh3_ply / len(data):.1f}x vs the scene as SH3 PLY ({human_bytes(rep.bytes_sh3_ply)})"
    )
    smp = rep.sampling
    if smp.get("method") == "auto":
        alts = ", ".join(f"{k} {v:.2f} dB" for k, v in smp.get("view_psnr", {}).items())
        print(f"  merging    {smp.get('chosen')} (chosen on the check views: {alts})")
    if "sh_keep_search" in smp:
        alts = ", ".join(
            f"{t['sh_keep']:g}: {t['gaussians']:,} G {t['view_psnr']:.2f} dB" for t in smp["sh_keep_search"]
        )
        print(f"  SH keep    chosen among {alts}")
    cod = smp.get("codec")
    if cod and "tried" in cod:
        alts = ", ".join(f"{t['codec']} {t['bytes']:,} B {t['view_psnr']:.2f} dB" for t in cod["tried"])
        pal = f", SH palette {cod['sh_palette_size']}" if cod.get("sh_palette_size") else ""
        print(f"  codec      {cod['chosen']}{pal} (judged on the check views: {alts})")
    trials = len(smp.get("target_search", [])) or 1
    print(
        f"  time       {dt:.2f} s (score {rep.seconds.get('score', 0):.2f} s on {rep.views} views, "
        f"prune {rep.seconds.get('prune', 0):.2f} s, encode {rep.seconds.get('encode', 0):.2f} s"
        + (f"; {trials} trial encodes in the last size search" if trials > 1 else "")
        + ")"
    )
    if args.json:
        print(
            json.dumps(
                {**rep.as_dict(), "output": os.fspath(out), "bytes_input": in_bytes, "seconds_wall": round(dt, 3)}
            )
        )
    return 0


def cmd_decompress(args) -> int:
    from .exgs_format import read_exgs
    from .io.ply import write_ply

    _check_inputs(args.input)
    out = Path(args.output)
    if out.suffix.lower() != ".ply":
        raise ExgsError(f"the output must end in .ply, got {out.name!r}", out)
    check_output_path(out)
    t0 = time.perf_counter()
    scene = read_exgs(args.input)
    t1 = time.perf_counter()
    write_ply(scene, out)
    print(
        f"{args.input} -> {out}: {scene.n:,} Gaussians, SH {scene.sh_degree}, decoded in {t1 - t0:.2f} s, "
        f"{human_bytes(path_bytes(out))} written"
    )
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="exgs",
        description="Shrink 3D Gaussian Splatting scenes and render them back (ExGS: UGC + GaussPainter).",
        epilog="Formats read: 3DGS .ply (binary/ascii), .splat, .spz (v2-v4), .compressed.ply, .sog. "
        "Conventions: docs/CONVENTIONS.md.",
    )
    p.add_argument("--version", action="version", version=f"exgs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def view_args(sp, default_views, max_pixels, min_side=1, min_reason=""):
        sp.add_argument(
            "--views",
            type=int_range(1, MAX_VIEWS),
            default=default_views,
            help=f"number of views, 1..{MAX_VIEWS} (default {default_views})",
        )
        sp.add_argument(
            "--size",
            type=size_type(max_pixels, min_side, min_reason=min_reason),
            default=(512, 512),
            metavar="WxH",
            help=f"image size, {min_side}x{min_side} to {max_pixels:,} pixels ({_square(max_pixels)}) "
            f"and {MAX_SIDE} per side (default 512x512)",
        )
        sp.set_defaults(max_pixels=max_pixels, min_side=min_side)
        sp.add_argument(
            "--mode",
            choices=["auto", "orbit", "inside"],
            default="auto",
            help="automatic views: orbit around an object, inside-out for a room, or decide (default)",
        )
        sp.add_argument("--cameras", metavar="cameras.json", help="use a 3DGS cameras.json instead of automatic views")
        sp.add_argument(
            "--backend",
            choices=["auto", "cpu", "gsplat"],
            default="auto",
            help="renderer: gsplat on CUDA when available, else CPU (default auto)",
        )
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sp = sub.add_parser("info", help="format, Gaussian count, SH degree, bounds and bytes per Gaussian")
    sp.add_argument("files", nargs="+", metavar="FILE")
    sp.add_argument("--json", action="store_true", help="one JSON object per file")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser(
        "convert",
        help="convert any readable splat file to another format, chosen by OUT's name: .ply, .compressed.ply, "
        ".spz, .sog, .splat, .glb or .exgs",
    )
    sp.add_argument("input", metavar="IN")
    sp.add_argument("output", metavar="OUT")
    sp.add_argument("--ascii", action="store_true", help="write ASCII PLY (default binary little endian)")
    sp.add_argument("--spz-version", type=int, choices=(3, 4), default=4, help="SPZ version to write (default 4)")
    sp.add_argument(
        "--sanitize",
        action="store_true",
        help="write a scene with NaN/Inf Gaussians dropped and zero rotations set to identity (reported); "
        "without it such a scene is refused with the counts",
    )
    sp.set_defaults(func=cmd_convert)

    sp = sub.add_parser("render", help="render automatic views (or cameras.json) to PNG files")
    sp.add_argument("file", metavar="FILE")
    view_args(sp, 8, RENDER_MAX_PIXELS)
    sp.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    sp.add_argument(
        "--split", choices=["train", "eval"], default="eval", help="which automatic view set (default eval)"
    )
    sp.add_argument("--alpha", action="store_true", help="also write the coverage (alpha) image per view")
    sp.add_argument(
        "--background",
        type=float_range(0.0, 1.0),
        nargs=3,
        default=(0.0, 0.0, 0.0),
        metavar=("R", "G", "B"),
        help="background colour in [0, 1] (default black)",
    )
    _painter_args(sp)
    sp.set_defaults(func=cmd_render)

    sp = sub.add_parser("eval", help="PSNR/SSIM of a candidate against a reference on held-out views")
    sp.add_argument("reference", metavar="REFERENCE")
    sp.add_argument("candidate", metavar="CANDIDATE")
    view_args(sp, 8, EVAL_MAX_PIXELS, SSIM_MIN_SIDE, "SSIM's 11x11 window")
    sp.add_argument("--json", action="store_true", help="print one JSON object (psnr, ssim, bytes_reference, ...)")
    _painter_args(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("compress", help="UGC-compress a scene into a compact .exgs file")
    sp.add_argument("input", metavar="IN")
    sp.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="the compressed file; its ending picks the container: .exgs (default codec), or .spz, .sog, .glb, "
        ".compressed.ply, .splat, .ply (UGC-pruned scene in that standard format; --target-mb counts its bytes)",
    )
    sp.add_argument("--spz-version", type=int, choices=(3, 4), default=4, help="SPZ version for .spz output")
    g = sp.add_mutually_exclusive_group()
    g.add_argument(
        "--ratio", type=float, default=0.1, help="retention ratio: fraction of Gaussians kept, in (0, 1] (default 0.1)"
    )
    g.add_argument(
        "--target-mb",
        type=float,
        metavar="M",
        help="choose the retention so the file is at most M MB (10^6 bytes), M > 0",
    )
    sp.add_argument(
        "--sh-keep",
        type=float,
        default=None,
        metavar="F",
        help="fraction of the kept Gaussians that keep their higher SH (default 0.1; with --target-mb "
        "and no --sh-keep the encoder tries 0.1, 0.3 and 1.0 and keeps the best at that size)",
    )
    sp.add_argument("--cameras", metavar="cameras.json", help="decide on these views instead of automatic ones")
    sp.add_argument(
        "--views",
        type=int_range(1, MAX_VIEWS),
        default=None,
        help=f"automatic scoring views, 1..{MAX_VIEWS} (default 24; {FAST_PRESET['views']} with --fast)",
    )
    sp.add_argument(
        "--view-size",
        type=int_range(1, MAX_VIEW_SIZE),
        default=256,
        help=f"scoring image size in pixels, 1..{MAX_VIEW_SIZE} (default 256; the check views are twice as large)",
    )
    sp.add_argument(
        "--score",
        choices=["exgs", "lightgaussian", "opacity"],
        default="exgs",
        help="significance score (default exgs: transmittance-weighted opacity)",
    )
    sp.add_argument("--no-voxel", action="store_true", help="global top-k instead of voxel-based sampling")
    sp.add_argument(
        "--compensation",
        choices=["auto", "pairwise", "pairwise-kl", "merge", "amplify", "none"],
        default=None,
        help="adaptive amplification: drop the invisible and merge neighbour pairs hierarchically by "
        "moment matching, opaque merges with a Ward cost (pairwise) or, dropping nothing, "
        "mass-conserving merges with a significance-weighted KL cost (pairwise-kl); auto (default) "
        "runs both, and pairwise-kl after the drop, and keeps the one closest to the full scene on "
        "8 check views (not the scoring views, twice their size); voxel-sample and merge every "
        "removed Gaussian into its nearest survivor (merge); voxel-sample and scale up "
        "opacity/size (amplify); or none",
    )
    sp.add_argument(
        "--codec",
        choices=["auto", "default", "compact", "coarse"],
        default=None,
        help="quantisation: auto (default) walks from the default bit widths to compact (rotations 8, "
        "log-scales and colours 7 bits, positions 14 bits per axis) and coarse (7, 6, 6, opacity 7, "
        "positions 12) while each step costs less on the check views than its saving is worth, then, on "
        "scenes with higher SH, tries an SH palette a quarter the default size by the same rule; or one of "
        "them (default SH palette)",
    )
    sp.add_argument(
        "--fast",
        action="store_true",
        help=f"for very large scenes: --compensation pairwise --codec compact --head off --views {FAST_PRESET['views']} "
        "unless given (no candidate merges, no judging renders, no scene head; 2.6x (the biker) to 5.3x (a 1M "
        "scene) faster than splat-transform decimate + SOG, but up to several dB lower than the default on "
        "fuzzy scenes: BENCHMARKS.md, ablation 'pairwise only')",
    )
    sp.add_argument(
        "--head",
        choices=["auto", "off", "always"],
        default=None,
        help="the scene head, a small restoration filter fitted against the original and stored in the .exgs "
        "(docs/FORMAT.md 4.2; .exgs output only): auto (default) keeps it only where it gains more on the "
        "check views than its bytes buy as retention; off; always (the better of the candidates, even a "
        "loss). --fast turns it off unless given",
    )
    sp.add_argument(
        "--no-refit",
        action="store_true",
        help="keep the merged colours: skip the least-squares refit of the survivors' colours against the "
        "original's renders of the scoring views (on by default; about +2 dB held-out at 10 %%)",
    )
    sp.add_argument("--no-fold-sh", action="store_true", help="do not fold cut SH bands into the DC colour")
    sp.add_argument("--json", action="store_true", help="also print the report as one JSON object")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_compress)

    sp = sub.add_parser("decompress", help="decode an .exgs file to a standard 3DGS .ply")
    sp.add_argument("input", metavar="IN.exgs")
    sp.add_argument("-o", "--output", required=True, metavar="OUT.ply")
    sp.set_defaults(func=cmd_decompress)

    from .viewer import add_view_parser

    add_view_parser(sub)  # exgs view FILE: a local web viewer (Babylon.js / PlayCanvas / Spark, built offline)

    sp = sub.add_parser(
        "train-painter",
        add_help=False,
        help="train GaussPainter on pairs from scripts/make_painter_data.py (see train-painter --help)",
    )
    sp.add_argument("rest", nargs=argparse.REMAINDER)  # handled in main() before parsing
    return p


def _painter_args(sp) -> None:
    sp.add_argument(
        "--restore",
        action="store_true",
        help="also restore the renders: an .exgs file's scene head (an .exgs without one is left as rendered), "
        "GaussPainter for scenes from other formats (the shipped weights unless --painter-weights; weights whose "
        "config says after_head also run on .exgs renders, after the head)",
    )
    sp.add_argument("--painter-weights", metavar="DIR", help="a local GaussPainter weights folder (safetensors)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train-painter"]:  # its own argparse (every option passes through, --help included)
        from .painter.train import main as train_main

        try:
            return train_main(argv[1:])
        except ExgsError as e:
            print(f"exgs: error: {e}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ExgsError as e:
        print(f"exgs: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("exgs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
