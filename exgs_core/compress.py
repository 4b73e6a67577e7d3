"""The compression API the CLI and the Blender add-on call: scene -> .exgs bytes + a report, and back.

``compress`` reads as: sanitise (reported) -> views -> significance -> voxel sampling -> amplification ->
SH split -> quantise + entropy code (:mod:`exgs_core.exgs_format`). Progress is reported as
``progress(fraction in [0, 1], stage)``; ``cancel`` (a callable returning True, or a ``threading.Event``) stops
the work between steps by raising :class:`exgs_core.ugc.Cancelled`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import ugc
from .camera import Camera
from .errors import CameraError, ExgsError
from .scene import GaussianScene


COMPENSATIONS = ("auto", "pairwise", "pairwise-kl", "merge", "amplify", "none")
SH_KEEP_CANDIDATES = (0.1, 0.3, 1.0)
#: The first coarser quantisation ``compress`` tries on a pruned scene (rotations 8 bits per smallest-three
#: component, 1.0 deg max; log-scales and DC colours 7 bits over the scene's range). On pruned scenes its error hides
#: under the pruning error (measured: -0.00 to -0.03 dB on 9 of 10 scene/ratio pairs) for 8-9 % fewer bytes, which
#: buy 8-9 % more Gaussians at equal bytes. Not always: a 1,180-Gaussian crop at 45.5 dB lost 1.9 dB.
COMPACT_CODEC = dict(rotation_bits=8, scale_bits=7, color_bits=7, position_bits_below_auto=2)
#: A coarser step still (rotations 7 bits, 2.0 deg max; log-scales and colours 6 bits; opacity 7 bits): tried after
#: the compact codec, on scenes where that one cost nothing.
COARSE_CODEC = dict(rotation_bits=7, scale_bits=6, color_bits=6, opacity_bits=7, position_bits_below_auto=4)
#: The quantisation steps ``compress`` walks down, finest first.
CODEC_LADDER = {"default": {}, "compact": COMPACT_CODEC, "coarse": COARSE_CODEC}
#: dB of view PSNR that halving the bytes costs, as ``compress`` assumes when it weighs a coarser codec step's
#: saving against its loss (our measured slopes: 1.5-12 dB per doubling of the Gaussians; 3 is conservative).
CODEC_DB_PER_DOUBLING = 3.0
CODEC_CHOICES = ("auto", *CODEC_LADDER)
#: Coarsest position quantisation a ladder step uses (bits per axis of the bounds).
POSITION_BITS_MIN = 12


def codec_options(name: str, means: np.ndarray):
    """:class:`~exgs_core.exgs_format.CodecOptions` of the ladder step ``name`` for a pruned scene's centres
    ``means`` [N, 3]. ``position_bits_below_auto`` = k resolves to ``auto_position_bits(means) - k`` (at least
    :data:`POSITION_BITS_MIN`): after pruning, Gaussians are large against a 16-bit grid (biker at 0.1: 14 % fewer
    bytes at 12 bits for -0.002 dB on held-out views; at 0.5: -0.1 dB for 15 %)."""
    from .exgs_format import CodecOptions, auto_position_bits

    kw = dict(CODEC_LADDER[name])
    drop = kw.pop("position_bits_below_auto", 0)
    if drop:
        kw["position_bits"] = max(POSITION_BITS_MIN, auto_position_bits(means) - drop)
    return CodecOptions(**kw)


# the two hierarchical (pairwise) compensations, as ugc.pairwise_merge keyword arguments
PAIRWISE = {
    # Ward cost on centres + DC colour, mass = opacity x projected area, merged opacity never below the members'
    # (opaque surfaces stay opaque): best on solid objects (guitar, biker, flowers at rho 0.25)
    "pairwise": dict(cost="ward", mass="projected", opacity_floor=1.0, color="dc"),
    # KL cost of the merged Gaussian against the pair's mixture + colour over all SH, scaled by the pair's
    # significance (the barely visible merge first, nothing is dropped), mass = opacity x ellipsoid surface, pure
    # mass conservation: best on fuzzy/thin content (plant, tarot cards, statues, street)
    "pairwise-kl": dict(cost="kl", mass="surface", opacity_floor=0.0, color="all", drop_score_fraction=0.0,
                        visibility_weight=True),
}
# what "auto" tries: both rules, and the KL rule after the Ward rule's 2 % drop as well
AUTO_RULES = {**PAIRWISE, "pairwise-kl+drop": {**PAIRWISE["pairwise-kl"], "drop_score_fraction": 0.02}}


@dataclass(frozen=True)
class CompressOptions:
    """Everything that decides the output bytes (all serialised into the .exgs header).

    Attributes:
        ratio: retention rho in (0, 1] (ignored when ``target_bytes`` is set).
        target_bytes: pick rho so the file is at most this many bytes (bisection on real encodes).
        sh_keep: fraction of the survivors that keep their higher SH (the rest are DC-only).
        sh_keep_auto: with ``target_bytes`` on a scene with SH: also choose ``sh_keep`` among
            :data:`SH_KEEP_CANDIDATES` (and ``sh_keep``), each with its own rho that fits, keeping the file whose
            decoded renders of the check views (:func:`check_cameras`) are closest to the full scene (PSNR).
            More SH and fewer Gaussians, or the reverse: which wins depends on the scene (measured in BENCHMARKS.md).
        score: ``"exgs"`` (transmittance-weighted), ``"lightgaussian"`` or ``"opacity"``.
        voxel_sampling: voxel-based sampling (else global top-k by score).
        compensation: closed-form adaptive amplification of the survivors. ``"pairwise"``: drop the Gaussians
            that carry the last 2 % of the significance, then greedy pairwise moment matching of neighbours down
            to the budget (no voxel sampling), Ward cost, opaque merges; ``"pairwise-kl"``: nothing dropped,
            a KL cost scaled by the pair's significance (invisible Gaussians merge first) and mass-conserving
            opacity (see :data:`PAIRWISE`); ``"auto"`` (default): try :data:`AUTO_RULES` (both, and
            ``pairwise-kl`` after the 2 % drop) and keep the one whose renders of the check views
            (:func:`check_cameras`), after the SH cut, are closest to the full scene's (PSNR);
            ``"merge"`` (voxel sampling, then every removed
            Gaussian is moment-matched into its nearest survivor), ``"amplify"`` (voxel sampling, per-voxel
            opacity/scale gain only) or ``"none"``. Measured in BENCHMARKS.md.
        amplify_strength: exponent of the per-voxel coverage gain of ``"amplify"`` (0 = off, 1 = full mass).
        fold_sh: fold the cut SH bands' mean colour over the views into DC.
        views: number of automatic scoring views (when no cameras are given).
        view_size: scoring image size (square, pixels) for automatic views; given cameras are rescaled so their
            longer side is this.
        codec: quantisation: ``"auto"`` (default: a step of :data:`CODEC_LADDER` judged on the check views, see
            :func:`compress`) or one of its steps by name (``"default"``, ``"compact"``, ``"coarse"``: no judging
            renders, faster on huge scenes).
    """

    ratio: float = 0.1
    target_bytes: int | None = None
    sh_keep: float = 0.1
    sh_keep_auto: bool = False
    score: str = "exgs"
    voxel_sampling: bool = True
    compensation: str = "auto"
    amplify_strength: float = 0.5
    fold_sh: bool = True
    views: int = 24
    view_size: int = 256
    codec: str = "auto"

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if not 0 <= self.sh_keep <= 1:
            raise ValueError(f"sh_keep must be in [0, 1], got {self.sh_keep}")
        if self.score not in ugc.SCORES:
            raise ValueError(f"score must be one of {ugc.SCORES}, got {self.score!r}")
        if self.codec not in CODEC_CHOICES:
            raise ValueError(f"codec must be one of {CODEC_CHOICES}, got {self.codec!r}")
        if self.compensation not in COMPENSATIONS:
            raise ValueError(f"compensation must be one of {COMPENSATIONS}, got {self.compensation!r}")
        if self.target_bytes is not None and self.target_bytes <= 0:
            raise ValueError(f"target_bytes must be positive, got {self.target_bytes}")


@dataclass
class CompressReport:
    """What ``compress`` did and measured."""

    gaussians_in: int = 0
    gaussians_out: int = 0
    ratio: float = 0.0
    sh_full: int = 0
    bytes_out: int = 0
    bytes_sh3_ply: int = 0
    seconds: dict = field(default_factory=dict)
    sanitize_actions: list = field(default_factory=list)
    sampling: dict = field(default_factory=dict)
    amplification: dict = field(default_factory=dict)
    views: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def scene_sha256(scene: GaussianScene) -> str:
    """sha256 of the scene's five arrays (order-sensitive): identifies the source in the .exgs header."""
    h = hashlib.sha256()
    for a in (scene.means, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def scoring_cameras(scene: GaussianScene, options: CompressOptions, cameras: list[Camera] | None) -> list[Camera]:
    """The views compression decides on: given cameras rescaled to ``view_size``, else automatic train views."""
    from .views import auto_views

    if cameras:
        return _fit(cameras, options.view_size)
    return auto_views(scene, options.views, options.view_size, options.view_size, split="train")


def _fit(cameras: list[Camera], size: int) -> list[Camera]:
    """``cameras`` scaled down (never up) so their longer side is ``size`` pixels."""
    out = []
    for c in cameras:
        s = size / max(c.width, c.height)
        out.append(c.resized(max(1, round(c.width * s)), max(1, round(c.height * s))) if s < 1 else c)
    return out


def prune(scene: GaussianScene, options: CompressOptions, *, cameras: list[Camera] | None = None,
          acc: ugc.Accumulation | None = None, progress=None, cancel=None, report: CompressReport | None = None
          ) -> tuple[GaussianScene, np.ndarray, ugc.Accumulation | None]:
    """UGC without coding: returns (pruned + amplified + SH-split scene, sh_full bool [M], accumulation).

    ``acc`` from an earlier call can be passed back to skip re-scoring (e.g. when searching rho)."""
    report = report or CompressReport()
    t = time.perf_counter()
    cams = scoring_cameras(scene, options, cameras)
    if acc is None and options.score != "opacity":
        acc = ugc.accumulate(scene, cams, counts=options.score == "lightgaussian",
                             progress=(lambda f, s: progress(0.6 * f, s)) if progress else None, cancel=cancel)
    score = ugc.significance(scene, acc, options.score)
    if cameras and acc is not None and scene.n and not (acc.weight > 0).any():
        # every score is 0: the pruning would be arbitrary. With the user's own views this is nearly always a
        # file for another scene or another axis convention, so say so instead of writing a meaningless file.
        raise CameraError(f"none of the {len(cams)} given camera(s) sees any of the scene's {scene.n:,} Gaussians; "
                          f"check that the cameras belong to this scene and use its axes (docs/CONVENTIONS.md)")
    report.seconds["score"] = round(report.seconds.get("score", 0.0) + time.perf_counter() - t, 3)
    report.views = len(cams)
    ugc._check_cancel(cancel)
    t = time.perf_counter()
    fold = np.array([c.position for c in cams]) if options.fold_sh else None
    if options.compensation in ("auto", "pairwise", "pairwise-kl"):
        target = ugc.keep_count(scene.n, options.ratio)

        def cut_sh(merged):  # SH split of a merged set, ranked by its mass x visibility proxy (opacity x area)
            return ugc.split_sh(merged, ugc.coverage_mass(merged), options.sh_keep, fold_dirs=fold)

        if options.compensation != "auto":
            out, report.amplification = ugc.pairwise_merge(scene, score, target, **PAIRWISE[options.compensation])
            report.sampling = {"method": options.compensation}
            out, sh_full = cut_sh(out)
        else:  # candidates are compared after the SH cut, as they will be stored
            check = _references(scene, options, cameras, acc) if target < scene.n else None
            (out, sh_full), report.amplification, report.sampling = _pairwise_auto(
                scene, score, target, check, cancel, finish=cut_sh)
        report.seconds["prune"] = round(report.seconds.get("prune", 0.0) + time.perf_counter() - t, 3)
        if progress:
            progress(0.7, "pruned")
        return out, sh_full, acc
    if options.voxel_sampling:
        sr = ugc.voxel_sample(scene.means, score, options.ratio)
        keep, vox = sr.keep, sr.voxel
        report.sampling = {"voxel_size": sr.voxel_size, "kept_by_quota": sr.kept_by_quota,
                           "kept_min_one": sr.kept_min_one, "kept_by_budget": sr.kept_by_budget}
    else:
        keep = ugc.top_k(score, options.ratio)
        vox = ugc.voxel_keys(scene.means, ugc.auto_voxel_size(scene.means, max(8.0, 4.0 / options.ratio))) \
            if options.compensation == "amplify" and scene.n else np.zeros(scene.n, np.int64)
    if options.compensation == "amplify" and options.ratio < 1:
        out, report.amplification = ugc.amplify(scene, keep, vox, strength=options.amplify_strength)
    elif options.compensation == "merge" and options.ratio < 1:
        out, report.amplification = ugc.merge_into_survivors(scene, keep)
    else:
        out = scene.subset(keep)
    out, sh_full = ugc.split_sh(out, score[keep], options.sh_keep, fold_dirs=fold)
    report.seconds["prune"] = round(report.seconds.get("prune", 0.0) + time.perf_counter() - t, 3)
    if progress:
        progress(0.7, "pruned")
    return out, sh_full, acc


CHECK_VIEWS = 8


def check_cameras(scene: GaussianScene, options: CompressOptions, cameras: list[Camera] | None) -> list[Camera]:
    """The views compression judges its own choices on (merge rule, codec, SH share): :data:`CHECK_VIEWS`
    automatic ``check`` views (never scored on, never the ``eval`` views) at twice the scoring size, or, with given
    cameras, 8 of them evenly spread, rescaled so their longer side is twice ``view_size``.

    Twice the scoring size because the choice depends on it: at 256² the opaque Ward rule looked best on the tarot
    cards, the biker at 0.05 and the flowers at 0.1, while at 512² (and on the benchmark's held-out 384² views) the
    KL rule is 0.7-1.2 dB better there; on the guitar both sizes keep Ward, which is right."""
    from .views import auto_views

    size = 2 * options.view_size
    if not cameras:
        return auto_views(scene, CHECK_VIEWS, size, size, split="check")
    return _fit(list(cameras)[:: max(1, len(cameras) // CHECK_VIEWS)][:CHECK_VIEWS], size)


def _references(scene: GaussianScene, options: CompressOptions, cameras: list[Camera] | None,
                acc: ugc.Accumulation | None) -> tuple[list, list]:
    """(check cameras, full-scene renders float32 [H, W, 3] of them), rendered once per accumulation (cached in
    ``acc.cache["check"]``)."""
    from .render import prepare, render

    if acc is not None and "check" in acc.cache:
        return acc.cache["check"]
    cams = check_cameras(scene, options, cameras)
    prep = prepare(scene)
    out = (cams, [render(scene, c, prepared=prep).rgb for c in cams])
    if acc is not None:
        acc.cache["check"] = out
    return out


def _view_psnr(candidate: GaussianScene, cams: list[Camera], refs: list) -> float:
    """Mean PSNR (dB) of ``candidate``'s renders of ``cams`` against the reference renders ``refs``."""
    from .metrics import psnr
    from .render import prepare, render

    prep = prepare(candidate)
    return float(np.mean([psnr(render(candidate, c, prepared=prep).rgb, r) for c, r in zip(cams, refs)]))


def _pairwise_auto(scene: GaussianScene, score: np.ndarray, target: int, check: tuple, cancel, finish
                   ) -> tuple[tuple[GaussianScene, np.ndarray], dict, dict]:
    """Run every rule of :data:`AUTO_RULES` and keep the one whose renders of the check views have the higher
    mean PSNR against the full scene's renders (an encoder-side choice: no optimisation, the decoder does not need
    to know). ``check``: (cameras, full-scene renders) from :func:`_references`. ``finish``: the SH cut,
    ``merged scene -> (scene, sh_full)``, applied before judging; returns the chosen ``(scene, sh_full)``, the
    merge stats and the sampling report."""
    if target >= scene.n:
        return finish(scene.copy()), {"dropped": 0, "rounds": 0}, {"method": "auto", "chosen": "none"}
    pick, refs = check
    best = None
    tried = {}
    for name, kw in AUTO_RULES.items():
        ugc._check_cancel(cancel)
        merged, stats = ugc.pairwise_merge(scene, score, target, **kw)
        out = finish(merged)
        p = _view_psnr(out[0], pick, refs)
        tried[name] = round(p, 3)
        if best is None or p > best[0]:
            best = (p, name, out, stats)
    return best[2], best[3], {"method": "auto", "chosen": best[1], "view_psnr": tried}


def _sub(progress, lo: float, hi: float):
    """Map a child's progress in [0, 1] to [lo, hi] of the parent's."""
    if progress is None:
        return None
    return lambda f, s: progress(lo + (hi - lo) * f, s)


def compress(scene: GaussianScene, options: CompressOptions = CompressOptions(), *, codec=None,
             cameras: list[Camera] | None = None, source_sha256: str | None = None, progress=None, cancel=None
             ) -> tuple[bytes, CompressReport]:
    """Compress ``scene`` into the bytes of an .exgs file.

    Args:
        scene: N Gaussians in any state: NaN/Inf and zero rotations are sanitised first and reported
            (``report.sanitize_actions``); the caller's scene is never modified.
        options: pruning options (and ``target_bytes`` to choose rho).
        codec: :class:`exgs_core.exgs_format.CodecOptions` (overrides ``options.codec``); None (default) with
            ``options.codec == "auto"`` = walk :data:`CODEC_LADDER` on the first pruned encode (size searches keep
            the choice for their later trials), see :func:`_choose_codec`. The choice is in
            ``report.sampling["codec"]``.
        cameras: the views to decide on (e.g. from a cameras.json); automatic train views when None.
        source_sha256: hex digest of the source file for the header (default: :func:`scene_sha256`).
        progress: ``progress(fraction, stage)``.
        cancel: callable returning True, or an object with ``is_set()``; checked between steps.

    Returns:
        (the .exgs bytes, :class:`CompressReport`).
    """
    from . import exgs_format

    fixed_codec = codec
    decided: dict = {}  # the codec choice, made on the first pruned encode and kept for the rest of this call
    report = CompressReport(gaussians_in=scene.n, bytes_sh3_ply=scene.ply_size_bytes(3))
    t0 = time.perf_counter()
    if not scene.validate().ok:
        scene, rep = scene.sanitize()
        report.sanitize_actions = list(rep.actions)
    src = source_sha256 or scene_sha256(scene)
    ugc._check_cancel(cancel)

    def encode_at(opts: CompressOptions, acc, prog_lo: float, prog_hi: float):
        pruned, sh_full, acc = prune(scene, opts, cameras=cameras, acc=acc, progress=_sub(progress, prog_lo, prog_hi * 0.8 + prog_lo * 0.2),
                                     cancel=cancel, report=report)
        ugc._check_cancel(cancel)

        def enc_progress(f, s):
            ugc._check_cancel(cancel)
            if progress:
                progress(prog_lo + (prog_hi - prog_lo) * (0.8 + 0.2 * f), s)

        t = time.perf_counter()
        header = {"ugc": {k: v for k, v in asdict(opts).items()}, "gaussians_source": scene.n,
                  "scene_meta": {k: scene.meta[k] for k in ("up", "antialiased", "coordinate_system")
                                 if k in scene.meta}}

        def enc(copts):
            return exgs_format.encode(pruned, sh_full=sh_full, options=copts, source_sha256=src,
                                      extra_header=header, progress=enc_progress)

        if fixed_codec is not None:
            data = enc(fixed_codec)
        elif options.codec != "auto":
            data = enc(codec_options(options.codec, pruned.means))
        elif "codec" in decided:  # size searches re-encode: decide once, on the first pruned encode
            data = enc(codec_options(decided["codec"], pruned.means))
            report.sampling["codec"] = dict(decided["info"], reused=True)
        else:
            data = _choose_codec(scene, opts, pruned, enc, acc, cameras, report)
            info = report.sampling["codec"]
            if "tried" in info:
                decided.update(info=info, codec=info["chosen"])
        report.seconds["encode"] = round(report.seconds.get("encode", 0.0) + time.perf_counter() - t, 3)
        return data, pruned, sh_full, acc

    if options.target_bytes is None:
        data, pruned, sh_full, _ = encode_at(options, None, 0.0, 1.0)
    elif not options.sh_keep_auto or scene.sh_degree == 0:
        data, pruned, sh_full = _search_ratio(scene, options, encode_at, report)
    else:
        data, pruned, sh_full = _search_sh_keep(scene, options, encode_at, report, cameras, cancel)
    report.gaussians_out = pruned.n
    report.ratio = pruned.n / max(scene.n, 1)
    report.sh_full = int(np.count_nonzero(sh_full))
    report.bytes_out = len(data)
    report.seconds["total"] = round(time.perf_counter() - t0, 3)
    if progress:
        progress(1.0, "done")
    return data, report


def _choose_codec(scene, opts: CompressOptions, pruned: GaussianScene, enc, acc, cameras, report) -> bytes:
    """Walk down :data:`CODEC_LADDER` on a pruned scene: each coarser step is kept while its view-PSNR loss
    against the step kept so far is no larger than its byte saving is worth (:data:`CODEC_DB_PER_DOUBLING` x
    log2 of the size ratio); the walk stops at the first step that is not worth it."""
    import math

    from .exgs_format import CodecOptions, decode

    data = enc(CodecOptions())
    if pruned.n >= scene.n:  # nothing pruned: the quantisation error is all the error there is
        report.sampling["codec"] = {"chosen": "default", "why": "not pruned"}
        return data
    pick, refs = _references(scene, opts, cameras, acc)
    chosen, p_kept = "default", _view_psnr(decode(data, max_gaussians=0), pick, refs)
    tried = [{"codec": "default", "bytes": len(data), "view_psnr": round(p_kept, 3)}]
    for name in list(CODEC_LADDER)[1:]:
        cand = enc(codec_options(name, pruned.means))
        p = _view_psnr(decode(cand, max_gaussians=0), pick, refs)
        worth = CODEC_DB_PER_DOUBLING * math.log2(len(data) / max(len(cand), 1))
        tried.append({"codec": name, "bytes": len(cand), "view_psnr": round(p, 3), "saving_worth_db": round(worth, 3)})
        if p_kept - p > worth:
            break
        chosen, data, p_kept = name, cand, p
    report.sampling["codec"] = {"chosen": chosen, "tried": tried}
    return data


def _search_sh_keep(scene, options: CompressOptions, encode_at, report: CompressReport, cameras, cancel):
    """``sh_keep_auto``: one :func:`_search_ratio` per SH-keep candidate, keep the best decoded file on the
    check views (:func:`check_cameras`)."""
    from dataclasses import replace

    from .exgs_format import decode

    cands = sorted({float(options.sh_keep), *SH_KEEP_CANDIDATES})
    pick = refs = None
    acc, best, tried = None, None, []
    for i, shk in enumerate(cands):
        ugc._check_cancel(cancel)
        lo, hi = i / len(cands), (i + 1) / len(cands)
        try:
            (data, pruned, sh_full), acc = _search_ratio(scene, replace(options, sh_keep=shk), encode_at, report,
                                                         acc=acc, span=(lo, hi), with_acc=True)
        except ExgsError:  # this SH share cannot fit the budget at all; the others may
            continue
        if refs is None:
            pick, refs = _references(scene, options, cameras, acc)
        p = _view_psnr(decode(data, max_gaussians=0), pick, refs)
        tried.append({"sh_keep": shk, "gaussians": pruned.n, "bytes": len(data), "view_psnr": round(p, 3)})
        if best is None or p > best[0]:  # the report describes the chosen file
            best = (p, (data, pruned, sh_full), dict(report.sampling), dict(report.amplification))
    if best is None:
        raise ExgsError(f"cannot reach {options.target_bytes:,} bytes with any SH keep fraction {cands}")
    report.sampling, report.amplification = best[2], best[3]
    report.sampling["sh_keep_search"] = tried
    return best[1]


def _search_ratio(scene, options: CompressOptions, encode_at, report: CompressReport, *, acc=None,
                  span: tuple[float, float] = (0.0, 1.0), with_acc: bool = False):
    """Largest rho whose file fits ``options.target_bytes``: a secant search on real encodes (bytes grow about
    linearly with rho), at most 6 encodes, scoring done once and reused (``acc``). ``span``: the part of the
    progress bar this search fills. Returns ``(data, pruned, sh_full)`` (and the accumulation if ``with_acc``)."""
    from dataclasses import replace

    target = options.target_bytes
    tried: list[tuple[float, int, tuple]] = []
    rho = 1.0
    lo, hi = span
    for it in range(6):
        opts = replace(options, ratio=rho, target_bytes=None)
        data, pruned, sh_full, acc = encode_at(opts, acc, lo + (hi - lo) * it / 6, lo + (hi - lo) * (it + 1) / 6)
        tried.append((rho, len(data), (data, pruned, sh_full)))
        fits = [t for t in tried if t[1] <= target]
        if fits and max(fits)[1] >= 0.97 * target:
            break
        # secant through the two closest points (or the origin-anchored line at first)
        pts = sorted(tried, key=lambda t: abs(t[1] - target))[:2]
        if len(pts) == 2 and pts[0][1] != pts[1][1]:
            (r0, b0, _), (r1, b1, _) = pts
            rho_new = r0 + (target - b0) * (r1 - r0) / (b1 - b0)
        else:
            rho_new = rho * target / len(data)
        rho_new = float(np.clip(rho_new * 0.99, 1.0 / max(scene.n, 1), 1.0))
        if any(abs(rho_new - t[0]) < 1e-4 for t in tried):
            break
        rho = rho_new
    fits = [t for t in tried if t[1] <= target]
    if not fits:
        smallest = min(t[1] for t in tried)
        raise ExgsError(f"cannot reach {target:,} bytes: the smallest file tried was {smallest:,} bytes "
                        f"(retention {min(t[0] for t in tried):.4f})")
    best = max(fits, key=lambda t: t[1])
    report.sampling["target_search"] = [{"ratio": round(t[0], 5), "bytes": t[1]} for t in tried]
    return (best[2], acc) if with_acc else best[2]


def decompress(data: bytes, *, path=None, max_gaussians: int | None = None) -> GaussianScene:
    """Decode .exgs bytes back to a scene (Gaussians in the stored Morton order). ``max_gaussians``: the most
    Gaussians accepted (0 = no limit; default: :mod:`exgs_core.limits`, 50 M); pass 0 for bytes you just
    compressed yourself."""
    from .exgs_format import decode

    return decode(data, path=path, max_gaussians=max_gaussians)
