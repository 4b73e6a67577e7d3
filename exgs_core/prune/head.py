"""The encoder's step of the scene head (docs/FORMAT.md 4.2): fit candidates for a compressed file against the
original's renders and decide, by the rate rule of :func:`encoder_head`, whether one ships.

The head itself (its payload, :func:`~exgs_core.codec.head.apply_head`, the least-squares
:class:`~exgs_core.codec.head.HeadFitter`) is numpy-only and lives in :mod:`exgs_core.codec.head`, where the
.exgs reader and the restorers find it; this module renders, so it sits with the other encoder-side fits
(:mod:`exgs_core.prune.refit`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..codec.head import (
    DEFAULT_FEATURES,
    DEFAULT_RADIUS,
    KIND_INT8,
    HeadFitter,
    SceneHead,
    head_gain,
    head_gains,
    section_bytes,
    unrestored_scores,
)
from ..msssim import MsSsimTarget

__all__ = ["encoder_head", "FIT_VIEWS", "CLASS_THRESHOLDS", "PROBE_EXTRA", "SHAPES", "GUARD_TRIES"]

#: Training views the encoder renders (full and decoded scene) to fit the head, at the check views' size.
FIT_VIEWS = 12
#: Alpha thresholds of the encoder's class candidate (thinned / partly covered / covered pixels).
CLASS_THRESHOLDS = (0.3, 0.98)
#: The (radius, features) of the fitted heads; each is solved with one class and with :data:`CLASS_THRESHOLDS`, and
#: stored as int8 codes (half the bytes of fp16; the rounding costs at most a few hundredths of a dB, on high-PSNR
#: files, less than the bytes are worth on every scene and retention benchmarked). Radius 0 (the pixel alone;
#: ``mean_thin`` is ``thin`` there, so it is left out) is the small one: 59 payload bytes with one class and int8
#: codes, against 131 for radius 1. Measured with 12 fit and 8 held-out 512² views against what the same bytes buy
#: as retention, it is what turns the small files positive at 0.02 retention (int8, one class: kacytran +0.15 dB net
#: against -0.33 for the fp16 radius-1 head, supersplat +0.56 against -0.81), while radius 1 stays the better one
#: on larger files.
SHAPES = ((DEFAULT_RADIUS, DEFAULT_FEATURES), (0, ("alpha", "thin", "thin2", "depth_edge")))
#: The structure guard judges at most this many candidates, best PSNR net worth first (MS-SSIM on the check views
#: costs about 10 ms per 512² view; candidates whose best two fail it share their shape and fail it too).
GUARD_TRIES = 2
#: The retention probe adds at least this fraction of Gaussians (and at least 4 x the largest head's bytes).
PROBE_EXTRA = 0.1


def encoder_head(
    full,
    decoded,
    file_bytes: int,
    fit_cameras: list,
    check,
    *,
    mode: str = "auto",
    max_bytes: int | None = None,
    probe=None,
    cancel=None,
) -> tuple[SceneHead | None, dict]:
    """Fit the scene head for a compressed file and decide whether it ships (``compress``'s last step).

    Args:
        full: the original (sanitised) GaussianScene; its renders are the targets.
        decoded: the GaussianScene the file decodes to.
        file_bytes: the file's size without a head.
        fit_cameras: the training views to fit on (never the check or eval views).
        check: the compressor's :class:`~exgs_core.compress.CheckViews` (``cameras``, ``reference(i)``: the full
            scene's renders, ``psnr(scene)``): the candidates are judged there, never on the views they were fitted on.
        mode: ``"auto"`` (the rate rule below) or ``"always"`` (keep the candidate with the best check-view gain,
            even a loss).
        max_bytes: the most bytes the head's section may add (``target_bytes`` minus the file), None = no limit.
        probe: ``probe(extra) -> (bytes, decoded scene)`` of the same compression with a fraction ``extra`` more
            Gaussians (the retention probe), or None (then retention is assumed to buy nothing).
        cancel: ``cancel()`` -> True stops the work (raises :class:`exgs_core.prune.Cancelled`).

    The rule (``"auto"``): four candidates are fitted on ``fit_cameras`` (each of :data:`SHAPES` with one class
    and with three alpha classes, :data:`CLASS_THRESHOLDS`, stored as int8; ``"always"`` also judges them in
    fp16), each judged by its mean per-view PSNR gain ``g`` on the check views. If one gains, the probe measures
    what bytes buy as retention there: ``s = (PSNR(probe) - PSNR(file)) / (bytes(probe) - bytes(file))`` dB per
    byte (0 when the probe cannot add Gaussians or does not gain). A candidate's net worth is ``g - s x b`` with
    ``b`` its section bytes. Of the candidates with a positive net worth, the best ships unless its MS-SSIM net
    worth ``g_s - s_s x b`` is negative (:func:`~exgs_core.msssim.ms_ssim` gain on the check views, ``s_s`` its
    retention slope), then the next best is tried (at most :data:`GUARD_TRIES`). (The structure guard keeps heads
    that buy PSNR but less structure than the same bytes of retention would from shipping: the guitar at 0.02 once
    gained +0.09 dB with HaarPSI -0.004 at equal bytes, and a radius-0 head on the supersplat crop at 0.02 +0.55 dB
    with MS-SSIM -0.004, which the luma SSIM at one scale that guarded before did not see.)

    Returns:
        (the head to ship or None, the report entry: candidates, gains, slope, choice, seconds).
    """
    import time

    from ..render import prepare, render
    from .cancel import check_cancel

    t0 = time.perf_counter()
    if not fit_cameras:  # e.g. a few given cameras, all of them check views: nothing to fit on without judging on it
        return None, {"kept": False, "why": "no training views besides the check views", "mode": mode}
    # one fitter of the largest shape: the others' normal equations are rows and columns of its own
    fitter = HeadFitter(
        radius=max(r for r, _ in SHAPES), features={f for _, fs in SHAPES for f in fs}, thresholds=CLASS_THRESHOLDS
    )
    pf, pd = prepare(full), prepare(decoded)
    frames = []
    # one thread adds each view to the normal equations (in view order: the same sums as one after the other) while
    # this one renders the next view (the renderer uses every core; the fitter's gathers and sorts use one)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="exgs-head") as pool:
        added = None
        for cam in fit_cameras:
            check_cancel(cancel)
            r = render(decoded, cam, prepared=pd)
            target = np.clip(render(full, cam, prepared=pf).rgb, 0.0, 1.0)
            if added is not None:
                added.result()
            added = pool.submit(fitter.add, r.rgb, r.alpha, r.depth, target)
        del pf
        for i, cam in enumerate(check.cameras):
            check_cancel(cancel)
            r = render(decoded, cam, prepared=pd)
            frames.append((r.rgb, r.alpha, r.depth, check.reference(i)))
        if added is not None:
            added.result()
    base = unrestored_scores(frames, ssim=False)
    cands: list[dict] = []
    for radius, features in SHAPES:
        for classes in (False, True):
            solved = fitter.solve(classes=classes, radius=radius, features=features)
            # int8 nets more than fp16 wherever bytes are worth anything (every scene and retention measured);
            # "always" ships the best gain whatever its bytes, so it also judges fp16
            for head in (solved.quantized(), solved) if mode == "always" else (solved.quantized(),):
                b = section_bytes(head.radius, head.flags, head.classes, int8=head.kind == KIND_INT8)
                if max_bytes is not None and b > max_bytes:
                    continue
                cands.append({"head": head, "bytes": b})
    # every candidate judged in one pass over the check views (they share each view's inputs and features)
    for c, g in zip(cands, head_gains([c["head"] for c in cands], frames, base, ssim=False), strict=True):
        c["gain"] = g["gain"]
    info: dict = {"fit_views": len(fit_cameras), "check_views": len(frames), "mode": mode}
    for c in cands:  # each candidate's row of the report, filled in as it is judged
        h = c["head"]
        c["row"] = {"radius": h.radius, "classes": h.classes, "storage": h.describe()["storage"], "bytes": c["bytes"]}
        c["row"]["check_gain_db"] = round(c["gain"], 4)
    info["candidates"] = [c["row"] for c in cands]
    slope = 0.0
    probe_frames: list = []
    pbytes = 0
    if mode != "always" and any(c["gain"] > 0 for c in cands) and probe is not None:
        check_cancel(cancel)
        extra = max(PROBE_EXTRA, 4.0 * max(c["bytes"] for c in cands) / max(file_bytes, 1))
        got = probe(extra)
        if got is not None:
            pbytes, pscene = got
            pp = prepare(pscene)
            for i, cam in enumerate(check.cameras):
                check_cancel(cancel)
                probe_frames.append((render(pscene, cam, prepared=pp).rgb, None, None, check.reference(i)))
            p_probe = unrestored_scores(probe_frames, ssim=False)
            if pbytes > file_bytes:
                slope = max(0.0, (p_probe[0] - base[0]) / (pbytes - file_bytes))
            info["probe"] = {
                "extra": round(extra, 4),
                "bytes": int(pbytes),
                "view_psnr": round(p_probe[0], 4),
                "file_view_psnr": round(base[0], 4),
            }
    info["retention_db_per_kb"] = round(slope * 1000, 5)
    for c in cands:
        c["net"] = c["gain"] - slope * c["bytes"]
        c["row"]["net_db"] = round(c["net"], 4)
    chosen = None
    if mode == "always" and cands:
        chosen = max(cands, key=lambda c: c["gain"])
    else:  # the best PSNR net worth whose MS-SSIM net worth is not negative (MS-SSIM only where it can decide)
        slope_s = ssim0 = None
        for c in sorted((c for c in cands if c["net"] > 0), key=lambda c: -c["net"])[:GUARD_TRIES]:
            check_cancel(cancel)
            if ssim0 is None:  # the references' MS-SSIM pyramids, once for the file, the probe and the candidates
                refs = [MsSsimTarget(f[3]) for f in frames]
                frames = [(*f[:3], r) for f, r in zip(frames, refs, strict=True)]
                ssim0 = unrestored_scores(frames)[1]
                slope_s = 0.0
                if probe_frames and pbytes > file_bytes:
                    probe_frames = [(*f[:3], r) for f, r in zip(probe_frames, refs, strict=True)]
                    s_probe = unrestored_scores(probe_frames)[1]
                    slope_s = max(0.0, (s_probe - ssim0) / (pbytes - file_bytes))
                    info["probe"].update(view_msssim=round(s_probe, 5), file_view_msssim=round(ssim0, 5))
                info["retention_msssim_per_kb"] = round(slope_s * 1000, 6)
            sg = head_gain(c["head"], frames, (base[0], ssim0))["ssim_gain"]
            net_s = sg - slope_s * c["bytes"]
            c["row"]["check_msssim_gain"], c["row"]["net_msssim"] = round(sg, 5), round(net_s, 5)
            if net_s >= 0:
                chosen = c
                break
    info["kept"] = chosen is not None
    if chosen is not None:
        info.update(chosen["head"].describe(), bytes=chosen["bytes"], check_gain_db=round(chosen["gain"], 4))
    elif not cands:
        info["why"] = f"no head fits the {max_bytes} bytes left under the target"
    else:
        info["why"] = "no candidate gains more PSNR and MS-SSIM on the check views than its bytes buy as retention"
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return (None if chosen is None else chosen["head"]), info
