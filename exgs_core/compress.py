"""The compression API the CLI and the Blender add-on call: scene -> .exgs bytes + a report, and back.

:func:`compress` reads top to bottom: sanitise -> score (:func:`_score`: views, significance) -> one trial at the
requested retention (:func:`_trial`: :func:`_prune`, which chooses the merge rule with :func:`_choose_rule`, then
:func:`_encode`, which chooses the quantisation with :func:`_choose_codec`) -> report (:func:`_report`). With
``target_bytes`` the trials run inside a size search instead (:func:`_search_ratio`, or :func:`_search_sh_keep`
around it). Every stage returns a frozen result; the choices and searches return what they chose, and the
:class:`CompressReport` is assembled once, at the end.

Progress is reported as ``progress(fraction in [0, 1], stage)``; ``cancel`` (a callable returning True, or a
``threading.Event``) stops the work between steps by raising :class:`exgs_core.prune.Cancelled`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .camera import Camera
from .errors import CameraError, ExgsError
from .prune import (
    KL_MASS_CONSERVING,
    KL_MASS_CONSERVING_AFTER_DROP,
    SCORES,
    WARD_OPAQUE,
    Accumulation,
    Progress,
    accumulate,
    amplify,
    auto_voxel_size,
    check_cancel,
    coverage_mass,
    keep_count,
    merge_into_survivors,
    pairwise_merge,
    significance,
    split_sh,
    top_k,
    voxel_keys,
    voxel_sample,
)
from .prune.merge import MergeShared, MergeTail, merge_with_tail
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
CODEC_LADDER: dict[str, dict[str, int]] = {"default": {}, "compact": COMPACT_CODEC, "coarse": COARSE_CODEC}
#: dB of view PSNR that halving the bytes costs, as ``compress`` assumes when it weighs a coarser codec step's
#: saving against its loss (our measured slopes: 1.5-12 dB per doubling of the Gaussians; 3 is conservative).
CODEC_DB_PER_DOUBLING = 3.0
CODEC_CHOICES = ("auto", *CODEC_LADDER)

#: ``CompressOptions.head``: the scene head (:mod:`exgs_core.codec.head`) fitted after the Gaussians are chosen.
HEAD_CHOICES = ("auto", "off", "always")
#: Coarsest position quantisation a ladder step uses (bits per axis of the bounds).
POSITION_BITS_MIN = 12


#: The smaller palette of higher SH that the codec choice also tries on a scene with higher SH: the default palette
#: size (:func:`~exgs_core.codec.palette.default_palette_size`, every vector on small scenes) divided by this, at
#: least :data:`SH_PALETTE_MIN` entries. Judged like a ladder step. Measured at retention 0.1 (8 held-out 512² views,
#: PSNR at the default's bytes, interpolated): kacytran (SH3, 91 full-SH Gaussians) +1.7 dB with 17 % fewer bytes
#: (averaged SH generalises better there), fourth_st and flowers within 0.01-0.03 dB, the supersplat crop -0.8 dB
#: (its check views refuse it).
SH_PALETTE_DIVISOR = 4
SH_PALETTE_MIN = 16


def small_sh_palette(m: int) -> int | None:
    """The smaller palette size the codec choice tries for ``m`` full-SH Gaussians, or None when it would not be
    smaller than the default one."""
    from .codec.palette import default_palette_size

    full = default_palette_size(m)
    size = max(min(SH_PALETTE_MIN, m), full // SH_PALETTE_DIVISOR)
    return size if size < full else None


def codec_options(name: str, means: np.ndarray, sh_full: np.ndarray | None = None, small_palette: bool = False):
    """:class:`~exgs_core.exgs_format.CodecOptions` of the ladder step ``name`` for a pruned scene's centres
    ``means`` [N, 3]. ``position_bits_below_auto`` = k resolves to ``auto_position_bits(means) - k`` (at least
    :data:`POSITION_BITS_MIN`): after pruning, Gaussians are large against a 16-bit grid (biker at 0.1: 14 % fewer
    bytes at 12 bits for -0.002 dB on held-out views; at 0.5: -0.1 dB for 15 %). ``small_palette``: with the
    :func:`small_sh_palette` of the scene's full-SH Gaussians (``sh_full`` bool [N]) where it is smaller."""
    from .exgs_format import CodecOptions, auto_position_bits

    kw: dict[str, Any] = dict(CODEC_LADDER[name])
    drop = kw.pop("position_bits_below_auto", 0)
    if drop:
        kw["position_bits"] = max(POSITION_BITS_MIN, auto_position_bits(means) - drop)
    if small_palette and sh_full is not None:
        size = small_sh_palette(int(np.count_nonzero(sh_full)))
        if size is not None:
            kw["sh_palette_size"] = size
    return CodecOptions(**kw)


#: The two hierarchical (pairwise) compensations, by their ``CompressOptions.compensation`` name.
PAIRWISE = {"pairwise": WARD_OPAQUE, "pairwise-kl": KL_MASS_CONSERVING}
#: What ``"auto"`` tries, by the name the report gives it: both rules, and the KL rule after the Ward rule's 2 % drop.
AUTO_RULES = {**PAIRWISE, "pairwise-kl+drop": KL_MASS_CONSERVING_AFTER_DROP}


@dataclass(frozen=True)
class CompressOptions:
    """Everything that decides the output bytes (all serialised into the .exgs header).

    Attributes:
        ratio: retention rho in (0, 1] (ignored when ``target_bytes`` is set).
        target_bytes: pick rho so the file is at most this many bytes (a secant search on real encodes).
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
        head: the scene head (:mod:`exgs_core.codec.head`, the optional ``HEAD`` section, docs/FORMAT.md 4.2),
            fitted once the Gaussians are encoded: ``"auto"`` (default) ships it when, on the check views, it gains
            more PSNR and SSIM than its bytes buy as retention (a probe with 10 % more Gaussians measures that;
            :func:`exgs_core.prune.head.encoder_head`); ``"always"`` ships the candidate that gains most;
            ``"off"`` none (the bytes are then exactly those of a compressor without heads; with a head, the file
            is the head-off file plus the section). With ``target_bytes`` the one-class radius-1 head's 163 bytes
            are set aside when they are at most :data:`HEAD_MAX_SHARE` of the target. Reported in
            ``report.sampling["head"]``; not recorded in the header's ``ugc`` options.
        refit: after pruning, refit the survivors' colours (DC and kept SH) so their renders of the scoring views
            come closest to the full scene's (:func:`exgs_core.prune.refit_colours`: least squares by conjugate
            gradients, pulled toward the merged colours; never fitted on check or held-out views). Default on
            (measured +0.9 to +2.2 dB on held-out views at equal bytes, BENCHMARKS.md); reported in
            ``report.amplification["refit"]``.
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
    head: str = "auto"
    refit: bool = True

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if not 0 <= self.sh_keep <= 1:
            raise ValueError(f"sh_keep must be in [0, 1], got {self.sh_keep}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {self.score!r}")
        if self.head not in HEAD_CHOICES:
            raise ValueError(f"head must be one of {HEAD_CHOICES}, got {self.head!r}")
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


def compress(
    scene: GaussianScene,
    options: CompressOptions = CompressOptions(),
    *,
    codec=None,
    cameras: list[Camera] | None = None,
    source_sha256: str | None = None,
    progress=None,
    cancel=None,
    container: str = "exgs",
    container_options: dict | None = None,
) -> tuple[bytes, CompressReport]:
    """Compress ``scene`` into the bytes of an .exgs file (or of another container, ``container``).

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
        container: ``"exgs"`` (default) or another writable format of :mod:`exgs_core.io` (``"spz"``, ``"sog"``,
            ``"glb"``, ``"compressed_ply"``, ``"splat"``, ``"ply"``): the pruned scene is written with that
            format's writer instead of the .exgs codec (no codec ladder), and ``target_bytes`` counts that
            container's bytes. Gaussians whose SH was cut keep zero higher bands; with no full-SH Gaussian left
            the container is written at SH degree 0.
        container_options: options for that writer (e.g. ``{"version": 3}`` for SPZ).

    Returns:
        (the file's bytes, :class:`CompressReport`).
    """
    t0 = time.perf_counter()
    from .io import WRITE_FORMATS

    if container not in WRITE_FORMATS:
        raise ValueError(f"container must be one of {WRITE_FORMATS}, got {container!r}")
    clean, sanitize_actions = _sanitize(scene)
    call = _Call(
        clean,
        cameras,
        codec,
        source_sha256 or scene_sha256(clean),
        CheckViews(clean, options, cameras),
        progress,
        cancel,
        container,
        dict(container_options or {}),
    )
    check_cancel(cancel)
    scoring = _score(
        clean,
        options,
        cameras,
        cancel=cancel,
        progress=_sub(progress, 0.0, _SCORED * _first_trial_share(clean, options)),
    )
    searched = _head_reserved(options, container)  # target_bytes less the head's bytes
    if options.target_bytes is None:
        outcome = _single_trial(call, scoring, options)
    elif _searches_sh_keep(clean, options):
        outcome = _search_sh_keep(call, scoring, searched)
    else:
        outcome = _search_ratio(call, scoring, searched, decided=None, span=(0.0, 1.0)).outcome()
    data, head_info = _head(call, scoring, options, outcome)
    report = _report(scene, clean, sanitize_actions, scoring, outcome, time.perf_counter() - t0)
    if head_info is not None:
        report.sampling["head"] = head_info
        report.bytes_out = len(data)
    if progress:
        progress(1.0, "done")
    return data, report


# ------------------------------------------------------------------------------------------------ stage results
@dataclass(frozen=True)
class Scoring:
    """What :func:`_score` returns.

    Attributes:
        cameras: the C scoring views.
        accumulation: what rendering them gathered (None for the ``"opacity"`` score, which needs no views).
        score: float64 [N] significance of every Gaussian.
        seconds: wall time.
    """

    cameras: list[Camera]
    accumulation: Accumulation | None
    score: np.ndarray
    seconds: float
    #: the full scene's renders of ``cameras`` (float32 [H, W, 3] each), made on the first colour refit and kept
    #: for every later trial of the same compress call
    targets: list = field(default_factory=list, compare=False, repr=False)


@dataclass(frozen=True)
class Pruning:
    """What :func:`_prune` returns.

    Attributes:
        scene: the M pruned, compensated and SH-cut Gaussians.
        sh_full: bool [M], True where a Gaussian keeps its higher SH.
        sampling: how the survivors were chosen (the pruning's part of ``CompressReport.sampling``).
        amplification: the compensation's stats (``CompressReport.amplification``).
        seconds: wall time.
        judged: ``scene``'s PSNRs on the check views so far (None: not judged), for the codec choice.
        tail: the chosen merge's last round (:class:`~exgs_core.prune.merge.MergeTail`), from which the scene
            head's retention probe rebuilds the merge to a few more Gaussians without merging again; None when not
            kept (no head to fit, a merge in chunks, or a trial a size search passed over).
    """

    scene: GaussianScene
    sh_full: np.ndarray
    sampling: dict
    amplification: dict
    seconds: float
    judged: _Judged | None = None
    tail: MergeTail | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RuleChoice:
    """What :func:`_choose_rule` returns: the :data:`AUTO_RULES` entry kept (``"none"``: nothing to prune), its
    SH-cut result (``scene`` of M Gaussians, ``sh_full`` bool [M]), its merge stats, every rule's mean PSNR on
    the check views it was judged on and how many views that was (:func:`_race`; None when nothing was judged),
    and the kept scene's per-view PSNRs (``judged``, reused by the codec choice)."""

    name: str
    scene: GaussianScene
    sh_full: np.ndarray
    stats: dict
    view_psnr: dict | None
    judged_views: dict | None = None
    judged: _Judged | None = None
    tail: MergeTail | None = field(default=None, compare=False, repr=False)

    def sampling(self) -> dict:
        out = {"method": "auto", "chosen": self.name}
        if self.view_psnr is None:
            return out
        return {**out, "view_psnr": self.view_psnr, "judged_views": self.judged_views}


@dataclass(frozen=True)
class CodecChoice:
    """A step of :data:`CODEC_LADDER` chosen by judging renders (:func:`_choose_codec`); later trials of the same
    compress call reuse it. ``info``: what the report says about it (``{"chosen", "tried"}``)."""

    step: str
    info: dict

    @property
    def small_palette(self) -> bool:
        """The choice took the smaller SH palette (:func:`small_sh_palette`; its size follows each trial's scene)."""
        return bool(self.info.get("sh_palette_size"))

    def options(self, pruning: Pruning):
        """The codec options of this choice for ``pruning``'s scene."""
        return codec_options(self.step, pruning.scene.means, pruning.sh_full, self.small_palette)


@dataclass(frozen=True)
class Encoding:
    """What :func:`_encode` returns.

    Attributes:
        data: the .exgs bytes.
        codec_info: ``CompressReport.sampling["codec"]``; None when the codec was given (no choice to report).
        decided: the codec choice in force after this encode, for later trials (None: not decided yet).
        seconds: wall time.
    """

    data: bytes
    codec_info: dict | None
    decided: CodecChoice | None
    seconds: float


@dataclass(frozen=True)
class Trial:
    """One prune + encode at one retention (``options.ratio``) and SH share (``options.sh_keep``)."""

    options: CompressOptions
    pruning: Pruning
    encoding: Encoding

    @property
    def size(self) -> int:
        return len(self.encoding.data)


@dataclass(frozen=True)
class Outcome:
    """What a single trial or a size search produced.

    Attributes:
        kept: the trial whose bytes are the output.
        described: the trial whose sampling, merge stats and codec choice the report gives. A size search reports
            its last trial, which is nearly always the kept one (always, when the search stops on a fit within 3 %
            of the target).
        trials: every trial run (their times add up in the report).
        sampling: the searches' own ``CompressReport.sampling`` entries (``target_search``, ``sh_keep_search``).
    """

    kept: Trial
    described: Trial
    trials: tuple[Trial, ...]
    sampling: dict


@dataclass(frozen=True)
class _Call:
    """What every stage of one :func:`compress` call shares (the sanitised scene and the caller's arguments)."""

    scene: GaussianScene
    cameras: list[Camera] | None
    codec: object  # exgs_format.CodecOptions or None
    source_sha256: str
    check: CheckViews
    progress: Progress | None
    cancel: object
    container: str = "exgs"
    container_options: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ stages
def _sanitize(scene: GaussianScene) -> tuple[GaussianScene, list[str]]:
    """(``scene`` with NaN/Inf and zero rotations repaired, or itself when valid; what was done)."""
    if scene.validate().ok:
        return scene, []
    clean, rep = scene.sanitize()
    return clean, list(rep.actions)


def _score(
    scene: GaussianScene,
    options: CompressOptions,
    cameras: list[Camera] | None,
    *,
    acc: Accumulation | None = None,
    progress=None,
    cancel=None,
) -> Scoring:
    """Render the scoring views (unless ``acc`` from an earlier call is given) and score every Gaussian."""
    t = time.perf_counter()
    cams = scoring_cameras(scene, options, cameras)
    if acc is None and options.score != "opacity":
        acc = accumulate(
            scene,
            cams,
            counts=options.score == "lightgaussian",
            colours=options.refit,  # the refit's targets come with the scoring renders
            progress=progress,
            cancel=cancel,
        )
    score = significance(scene, acc, options.score)
    if cameras and acc is not None and scene.n and not (acc.weight > 0).any():
        # every score is 0: the pruning would be arbitrary. With the user's own views this is nearly always a
        # file for another scene or another axis convention, so say so instead of writing a meaningless file.
        raise CameraError(
            f"none of the {len(cams)} given camera(s) sees any of the scene's {scene.n:,} Gaussians; "
            f"check that the cameras belong to this scene and use its axes (docs/CONVENTIONS.md)"
        )
    targets = list(acc.images) if acc is not None and acc.images is not None else []
    return Scoring(cams, acc, score, time.perf_counter() - t, targets)


# One trial's share of the progress bar: scoring fills the first 48 % (on the first trial only: later trials reuse
# it), "pruned" is reported at 56 %, the encode fills the last 20 %.
_SCORED, _PRUNED, _ENCODE_FROM = 0.48, 0.56, 0.8


def _trial(
    call: _Call, scoring: Scoring, options: CompressOptions, decided: CodecChoice | None, span: tuple[float, float]
) -> Trial:
    """Prune at ``options.ratio`` / ``options.sh_keep`` and encode; ``span``: the trial's part of the progress bar."""
    lo, hi = span
    check_cancel(call.cancel)
    pruning = _prune(
        call.scene,
        options,
        scoring,
        call.check,
        call.cancel,
        _sub(call.progress, lo + (hi - lo) * _SCORED, lo + (hi - lo) * _PRUNED),
        keep_tail=options.head != "off" and call.container == "exgs",
    )
    if call.progress:
        call.progress(lo + (hi - lo) * _PRUNED, "pruned")
    check_cancel(call.cancel)
    encoding = _encode(call, options, pruning, decided, _encode_progress(call, lo + (hi - lo) * _ENCODE_FROM, hi))
    return Trial(options, pruning, encoding)


def _single_trial(call: _Call, scoring: Scoring, options: CompressOptions) -> Outcome:
    trial = _trial(call, scoring, options, decided=None, span=(0.0, 1.0))
    return Outcome(kept=trial, described=trial, trials=(trial,), sampling={})


def _prune(
    scene: GaussianScene,
    options: CompressOptions,
    scoring: Scoring,
    check: CheckViews,
    cancel,
    progress=None,
    keep_tail: bool = False,
) -> Pruning:
    """Choose the survivors, compensate them for the removed Gaussians and cut the SH (see :mod:`exgs_core.prune`);
    then refit their colours (``options.refit``). ``progress(fraction, stage)`` hears of the merges (the first
    60 % when refitting) and of the refit. ``keep_tail``: keep the ``auto`` merge's last round
    (:attr:`Pruning.tail`, for the scene head's retention probe)."""
    t = time.perf_counter()
    fold = np.array([c.position for c in scoring.cameras]) if options.fold_sh else None
    judged = None
    tail = None
    refits = options.refit and bool(scoring.cameras)
    progress, refit_progress = (_sub(progress, 0.0, 0.6), _sub(progress, 0.6, 1.0)) if refits else (progress, None)
    if options.compensation == "auto":  # candidates are compared after the SH cut, as they will be stored
        target = keep_count(scene.n, options.ratio)
        choice = _choose_rule(
            scene, scoring.score, target, options.sh_keep, fold, check, cancel, progress, keep_tail=keep_tail
        )
        out, sh_full, stats, sampling = choice.scene, choice.sh_full, choice.stats, choice.sampling()
        judged, tail = choice.judged, choice.tail
    elif options.compensation in PAIRWISE:
        target = keep_count(scene.n, options.ratio)
        merged, stats = pairwise_merge(
            scene, scoring.score, target, PAIRWISE[options.compensation], progress=_checked(progress, cancel)
        )
        out, sh_full = _cut_sh_by_mass(merged, options.sh_keep, fold)
        sampling = {"method": options.compensation}
    else:
        keep, voxel, sampling = _sample(scene, scoring.score, options)
        out, stats = _compensate(scene, keep, voxel, options)
        out, sh_full = split_sh(out, scoring.score[keep], options.sh_keep, fold_dirs=fold)
    if options.refit and out.n < scene.n:
        out, stats = _refit(scene, out, sh_full, stats, scoring, cancel, refit_progress)
        judged = None  # the check-view PSNRs were of the colours before the refit
    return Pruning(out, sh_full, sampling, stats, time.perf_counter() - t, judged, tail)


def _refit(
    scene: GaussianScene, out: GaussianScene, sh_full: np.ndarray, stats: dict, scoring: Scoring, cancel, progress=None
) -> tuple[GaussianScene, dict]:
    """``out`` (the M pruned Gaussians, ``sh_full`` bool [M]) with colours refitted against the full ``scene``'s
    renders of the scoring views (:func:`exgs_core.prune.refit_colours`), and ``stats`` with its report."""
    from .prune import refit_colours
    from .render import prepare, render

    if not scoring.cameras:  # the "opacity" score renders no views: nothing to fit on
        return out, {**stats, "refit": {"skipped": "no scoring views"}}
    t = time.perf_counter()
    if not scoring.targets:
        prep = prepare(scene)
        for c in scoring.cameras:
            check_cancel(cancel)
            scoring.targets.append(render(scene, c, prepared=prep).rgb)
    t_targets = time.perf_counter() - t
    refitted, rep = refit_colours(
        out,
        scene,
        scoring.cameras,
        sh_full=sh_full,
        targets=scoring.targets,
        cancel=cancel,
        progress=_checked(progress, cancel),
    )
    return refitted, {**stats, "refit": {**rep.as_dict(), "targets_s": round(t_targets, 3)}}


def _cut_sh_by_mass(merged: GaussianScene, sh_keep: float, fold) -> tuple[GaussianScene, np.ndarray]:
    """SH cut of a merged set, ranked by its mass x visibility proxy (opacity x area): merging leaves no score."""
    return split_sh(merged, coverage_mass(merged), sh_keep, fold_dirs=fold)


def _choose_rule(
    scene: GaussianScene,
    score: np.ndarray,
    target: int,
    sh_keep: float,
    fold,
    check: CheckViews,
    cancel,
    progress=None,
    keep_tail: bool = False,
) -> RuleChoice:
    """Run every rule of :data:`AUTO_RULES` (each followed by the SH cut) and keep the one whose renders of the
    check views have the highest mean PSNR against the full scene's (an encoder-side choice: no optimisation, the
    decoder does not need to know; ties keep the first), judged by :func:`_race`. The rules merge side by side
    (:func:`_parallel_merges`) or, on large scenes, one after the other; ``progress`` hears of each (and of each
    merge chunk, :data:`~exgs_core.prune.merge.MERGE_CHUNK`), always from this thread. ``keep_tail``: the kept
    rule's last merge round comes with the choice (:class:`~exgs_core.prune.merge.MergeTail`)."""
    if target >= scene.n:
        out, sh_full = _cut_sh_by_mass(scene.copy(), sh_keep, fold)
        return RuleChoice("none", out, sh_full, {"dropped": 0, "rounds": 0}, None)
    shared = MergeShared(scene)  # the rules share the covariances and their first neighbour search
    names = list(AUTO_RULES)
    first, _ = _halves(len(check.cameras))

    def merge(name: str, report=None) -> tuple[GaussianScene, np.ndarray, dict, MergeTail | None]:
        check_cancel(cancel)
        merged, stats, tail = merge_with_tail(
            scene, score, target, AUTO_RULES[name], shared=shared, progress=report, tail=keep_tail
        )
        return (*_cut_sh_by_mass(merged, sh_keep, fold), stats, tail)

    def told(f: float, stage: str) -> None:
        check_cancel(cancel)
        if progress:
            progress(f, stage)

    results, cands = [], []
    if _parallel_merges(scene.n):
        from concurrent.futures import ThreadPoolExecutor

        # the merges run side by side while this thread renders the check views: each result is judged on the
        # first half of them as soon as it is ready
        with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="exgs-merge") as pool:
            futures = [pool.submit(merge, name) for name in names]
            try:
                for i in first:
                    check_cancel(cancel)
                    check.reference(i)
                for name, f in zip(names, futures, strict=True):
                    results.append(f.result())
                    told(len(results) / (len(names) + 1), f"merged ({name})")
                    cands.append(_Judged(check, results[-1][0]))
                    cands[-1].mean(first)
            finally:
                for f in futures:
                    f.cancel()
    else:
        for i, name in enumerate(names):
            told(i / (len(names) + 1), f"merging ({name})")
            results.append(merge(name, _sub(told, i / (len(names) + 1), (i + 1) / (len(names) + 1))))
            cands.append(_Judged(check, results[-1][0]))
    told(len(names) / (len(names) + 1), "judging the merges")
    win, means, views = _race(cands)
    out, sh_full, stats, tail = results[win]
    view_psnr = {n: round(m, 3) for n, m in zip(names, means, strict=True)}
    judged_views = dict(zip(names, views, strict=True))
    return RuleChoice(names[win], out, sh_full, stats, view_psnr, judged_views, cands[win], tail)


#: The merge rules of ``auto`` run side by side, one thread each, on scenes of at most this many Gaussians (a merge
#: holds about 0.6 kB per Gaussian at its start; beyond this they run one after the other). The merges' numpy steps
#: are single-threaded: the other core renders the check views meanwhile.
PARALLEL_MERGES_MAX = 3_000_000


def _parallel_merges(n: int) -> bool:
    return PARALLEL_MERGES and n <= PARALLEL_MERGES_MAX


PARALLEL_MERGES = True


def _sample(scene: GaussianScene, score: np.ndarray, options: CompressOptions) -> tuple[np.ndarray, np.ndarray, dict]:
    """(keep bool [N], voxel ids int64 [N] for :func:`~exgs_core.prune.amplify`, the sampling report)."""
    if options.voxel_sampling:
        sr = voxel_sample(scene.means, score, options.ratio)
        return (
            sr.keep,
            sr.voxel,
            {
                "voxel_size": sr.voxel_size,
                "kept_by_quota": sr.kept_by_quota,
                "kept_min_one": sr.kept_min_one,
                "kept_by_budget": sr.kept_by_budget,
            },
        )
    keep = top_k(score, options.ratio)
    voxel = (
        voxel_keys(scene.means, auto_voxel_size(scene.means, max(8.0, 4.0 / options.ratio)))
        if options.compensation == "amplify" and scene.n
        else np.zeros(scene.n, np.int64)
    )
    return keep, voxel, {}


def _compensate(
    scene: GaussianScene, keep: np.ndarray, voxel: np.ndarray, options: CompressOptions
) -> tuple[GaussianScene, dict]:
    """The kept Gaussians, compensated by ``options.compensation`` (``"merge"``, ``"amplify"`` or ``"none"``)."""
    if options.compensation == "amplify" and options.ratio < 1:
        return amplify(scene, keep, voxel, strength=options.amplify_strength)
    if options.compensation == "merge" and options.ratio < 1:
        return merge_into_survivors(scene, keep)
    return scene.subset(keep), {}


def _encode(call: _Call, options: CompressOptions, pruning: Pruning, decided: CodecChoice | None, progress) -> Encoding:
    """Quantise and entropy-code ``pruning`` with the given codec, the ``options.codec`` step, the codec
    ``decided`` by an earlier trial, or (none of these) the step :func:`_choose_codec` picks."""
    t = time.perf_counter()
    info: dict | None = None
    if call.container != "exgs":
        data, info = _write_container(call, pruning), {"chosen": call.container, "why": "container"}
    elif call.codec is not None:
        data = _write(call, options, pruning, call.codec, progress)
    elif options.codec != "auto":
        data = _write(call, options, pruning, codec_options(options.codec, pruning.scene.means), progress)
    elif decided is not None:  # size searches re-encode: decided once, on the first pruned encode
        data = _write(call, options, pruning, decided.options(pruning), progress)
        info = {**decided.info, "reused": True}
    else:
        data, info = _choose_codec(call, options, pruning, progress)
        if "tried" in info:
            decided = CodecChoice(info["chosen"], info)
    return Encoding(data, info, decided, time.perf_counter() - t)


def _write(call: _Call, options: CompressOptions, pruning: Pruning, codec, progress) -> bytes:
    """The .exgs bytes of ``pruning`` with codec options ``codec``; the header records ``options``."""
    from .exgs_format import encode

    scene = call.scene
    scene_meta: dict = {}  # the source's axis facts, so automatic views of the decoded scene match the source's
    if scene.up is not None:
        scene_meta["up"] = list(scene.up)
    if scene.antialiased:
        scene_meta["antialiased"] = True
    if "coordinate_system" in scene.meta:
        scene_meta["coordinate_system"] = scene.meta["coordinate_system"]
    header = {
        "ugc": {k: v for k, v in asdict(options).items() if k != "head"},  # the head is its own section
        "gaussians_source": scene.n,  # "ugc": the format's key for these options
        "scene_meta": scene_meta,
    }
    return encode(
        pruning.scene,
        sh_full=pruning.sh_full,
        options=codec,
        source_sha256=call.source_sha256,
        extra_header=header,
        progress=progress,
    )


def _write_container(call: _Call, pruning: Pruning) -> bytes:
    """The bytes of ``pruning`` in ``call.container`` (a standard format's writer, :func:`exgs_core.io.encode_as`)."""
    from .io import encode_as

    opts = dict(call.container_options)
    if not pruning.sh_full.any():
        opts.setdefault("sh_degree", 0)  # every Gaussian's higher bands were cut: do not store zeros
    data, _ = encode_as(pruning.scene, call.container, **opts)
    return data


def _choose_codec(call: _Call, options: CompressOptions, pruning: Pruning, progress) -> tuple[bytes, dict]:
    """Walk down :data:`CODEC_LADDER` on a pruned scene: each coarser step is kept while its view-PSNR loss
    against the step kept so far is no larger than its byte saving is worth (:data:`CODEC_DB_PER_DOUBLING` x
    log2 of the size ratio); the walk stops at the first step that is not worth it. Returns the bytes and the
    report entry (``{"chosen", "tried"}``, or ``{"chosen": "default", "why": "not pruned"}``).

    The finest step is judged by the pruned scene itself, before quantisation (its PSNRs come with the merge
    rule's choice; the default precision's own loss is hundredths of a dB, so this only makes the first step
    stricter); each coarser step on every other check view, and on all of them when its loss there is within
    :data:`JUDGE_MARGIN_DB` of what its saving is worth. ``tried[i]``: the step's bytes, its mean PSNR on the
    ``views`` it was judged on, and (coarser steps) its ``loss_db`` there against the step kept before it.

    On a scene with higher SH the chosen step is then tried with the smaller SH palette (:func:`small_sh_palette`),
    judged by the same rule; when it is kept the report says ``sh_palette_size`` (later trials of a size search use
    the smaller palette of their own scene)."""
    from .exgs_format import CodecOptions, decode

    data = _write(call, options, pruning, CodecOptions(), progress)
    if pruning.scene.n >= call.scene.n:  # nothing pruned: the quantisation error is all the error there is
        return data, {"chosen": "default", "why": "not pruned"}
    kept = pruning.judged if pruning.judged is not None else _Judged(call.check, pruning.scene)
    first, every = _halves(len(call.check.cameras))
    chosen = "default"
    tried = [{"codec": "default", "bytes": len(data), "view_psnr": round(kept.mean(first), 3), "views": len(first)}]

    def judge(label: str, cand: bytes) -> tuple[_Judged, bool]:
        """Judge the encoding ``cand`` against ``kept`` (the rule above), add its row to ``tried``: (its judged
        scene, whether it is kept)."""
        step = _Judged(call.check, decode(cand, max_gaussians=0))
        worth = CODEC_DB_PER_DOUBLING * math.log2(len(data) / max(len(cand), 1))
        views = every if abs(kept.mean(first) - step.mean(first) - worth) <= JUDGE_MARGIN_DB else first
        loss = kept.mean(views) - step.mean(views)
        tried.append(
            {
                "codec": label,
                "bytes": len(cand),
                "view_psnr": round(step.mean(views), 3),
                "views": len(views),
                "loss_db": round(loss, 3),
                "saving_worth_db": round(worth, 3),
            }
        )
        return step, loss <= worth

    for name in list(CODEC_LADDER)[1:]:
        cand = _write(call, options, pruning, codec_options(name, pruning.scene.means), progress)
        step, keep = judge(name, cand)
        if not keep:
            break
        chosen, data, kept = name, cand, step
    info: dict = {"chosen": chosen, "tried": tried}
    if pruning.scene.sh.shape[1] > 1:  # the smaller SH palette, judged alike
        small = codec_options(chosen, pruning.scene.means, pruning.sh_full, True)
        if small.sh_palette_size is not None:
            cand = _write(call, options, pruning, small, progress)
            if len(cand) < len(data) and judge(f"{chosen}, SH palette {small.sh_palette_size}", cand)[1]:
                data, info["sh_palette_size"] = cand, small.sh_palette_size
    return data, info


# ------------------------------------------------------------------------------------------------ scene head
#: With ``target_bytes``, the head's bytes are set aside only when they are at most this share of the target.
HEAD_MAX_SHARE = 0.05


def _head_reserved(options: CompressOptions, container: str) -> CompressOptions:
    """``options`` with ``target_bytes`` lowered by the bytes of the one-class radius-1 int8 scene head (163), so
    that head and the smaller radius-0 ones fit the target (the rate rule of
    :func:`exgs_core.prune.head.encoder_head` then weighs them against those bytes); unchanged when that head would
    take more than :data:`HEAD_MAX_SHARE` of the target (no head then fits)."""
    if options.head == "off" or options.target_bytes is None or container != "exgs":
        return options
    from .codec.head import DEFAULT_FEATURES, DEFAULT_RADIUS, FEATURE_BITS, section_bytes

    reserve = section_bytes(DEFAULT_RADIUS, sum(FEATURE_BITS[f] for f in DEFAULT_FEATURES), 1, int8=True)
    if reserve > HEAD_MAX_SHARE * options.target_bytes:  # a small budget: every byte goes to the Gaussians
        return options
    return replace(options, target_bytes=options.target_bytes - reserve)


def _head(call: _Call, scoring: Scoring, options: CompressOptions, outcome: Outcome) -> tuple[bytes, dict | None]:
    """The kept file with its scene head (:func:`exgs_core.prune.head.encoder_head`: fitted on the training views
    at the check views' size, judged on the check views, kept by its rate rule), and the report entry."""
    data = outcome.kept.encoding.data
    if options.head == "off" or call.container != "exgs":
        return data, None
    if outcome.kept.pruning.scene.n >= call.scene.n:
        return data, {"kept": False, "why": "not pruned"}
    from .io.exgs import decode, with_head
    from .prune.head import FIT_VIEWS, encoder_head

    if call.progress:
        call.progress(0.99, "scene head")
    budget = None if options.target_bytes is None else options.target_bytes - len(data)
    head, info = encoder_head(
        call.scene,
        decode(data, max_gaussians=0),
        len(data),
        _head_cameras(call, options, FIT_VIEWS),
        call.check,
        mode=options.head,
        max_bytes=budget,
        probe=lambda extra: _retention_probe(call, scoring, outcome.kept, extra),
        cancel=call.cancel,
    )
    return (data if head is None else with_head(data, head)), info


def _head_cameras(call: _Call, options: CompressOptions, count: int) -> list[Camera]:
    """The views the head is fitted on: ``count`` automatic ``train`` views at the check views' size, or, with given
    cameras, up to ``count`` of those that are not check views, evenly spread, rescaled like the check views."""
    from .views import auto_views

    size = 2 * options.view_size
    if not call.cameras:
        return auto_views(call.scene, count, size, size, split="train")
    cams = list(call.cameras)
    step = max(1, len(cams) // CHECK_VIEWS)
    check = set(range(0, len(cams), step)[:CHECK_VIEWS])
    rest = [c for i, c in enumerate(cams) if i not in check]
    return _fit(rest[:: max(1, len(rest) // count)][:count], size)


def _retention_probe(call: _Call, scoring: Scoring, kept: Trial, extra: float) -> tuple[int, GaussianScene] | None:
    """The kept trial again with a fraction ``extra`` more Gaussians, pruned by the rule it chose and encoded with
    its codec: (bytes, decoded scene), what the head's bytes would buy as retention; None when nothing can be added."""
    from .exgs_format import decode

    opts = kept.options
    rho = min(1.0, opts.ratio * (1.0 + extra))
    target = keep_count(call.scene.n, rho)
    if target <= kept.pruning.scene.n:
        return None
    check_cancel(call.cancel)
    probe = replace(opts, ratio=rho, target_bytes=None)
    rule = kept.pruning.sampling.get("chosen")
    if opts.compensation == "auto" and rule in AUTO_RULES:  # the rule the kept trial chose, without judging again
        fold = np.array([c.position for c in scoring.cameras]) if opts.fold_sh else None
        tail = kept.pruning.tail  # the same merge's last round: the probe's merge without merging again
        rebuilt = tail.at(target) if tail is not None else None
        merged, stats = rebuilt or pairwise_merge(call.scene, scoring.score, target, AUTO_RULES[rule])
        out, sh_full = _cut_sh_by_mass(merged, opts.sh_keep, fold)
        if opts.refit:  # as the kept trial was
            out, stats = _refit(call.scene, out, sh_full, stats, scoring, call.cancel)
        pruning = Pruning(out, sh_full, {}, stats, 0.0)
    else:
        pruning = _prune(call.scene, probe, scoring, call.check, call.cancel)
    enc, decided = kept.encoding, kept.encoding.decided
    if decided is None and enc.codec_info and "chosen" in enc.codec_info:
        decided = CodecChoice(enc.codec_info["chosen"], enc.codec_info)
    data = _encode(call, probe, pruning, decided, None).data
    return len(data), decode(data, max_gaussians=0)


# ------------------------------------------------------------------------------------------------ size searches
#: Most encodes one retention search tries.
SEARCH_TRIALS = 6


@dataclass(frozen=True)
class SizeSearch:
    """What :func:`_search_ratio` returns.

    Attributes:
        target: the byte budget.
        trials: every trial, in order.
        best: the largest file within ``target`` (None: none fits, or a trial failed).
        decided: the codec choice in force after the search (the next search starts from it).
        failure: the error a trial raised, which ended the search (then ``best`` is None).
    """

    target: int
    trials: tuple[Trial, ...]
    best: Trial | None
    decided: CodecChoice | None
    failure: ExgsError | None = None

    def tried(self) -> list[dict]:
        return [{"ratio": round(t.options.ratio, 5), "bytes": t.size} for t in self.trials]

    def outcome(self) -> Outcome:
        """The best file, as an :class:`Outcome`; raises when there is none."""
        if self.failure is not None:
            raise self.failure
        if self.best is None:
            smallest = min(t.size for t in self.trials)
            raise ExgsError(
                f"cannot reach {self.target:,} bytes: the smallest file tried was {smallest:,} bytes "
                f"(retention {min(t.options.ratio for t in self.trials):.4f})"
            )
        return Outcome(
            kept=self.best, described=self.trials[-1], trials=self.trials, sampling={"target_search": self.tried()}
        )


def _search_ratio(
    call: _Call, scoring: Scoring, options: CompressOptions, decided: CodecChoice | None, span: tuple[float, float]
) -> SizeSearch:
    """Largest rho whose file fits ``options.target_bytes``: a secant search on real encodes (bytes grow about
    linearly with rho), at most :data:`SEARCH_TRIALS` of them, starting at rho = 1. ``decided``: the codec choice
    of an earlier search; ``span``: the part of the progress bar this search fills."""
    target = options.target_bytes
    assert target is not None
    trials: list[Trial] = []
    lo, hi = span
    rho = 1.0
    try:
        for it in range(SEARCH_TRIALS):
            trial = _trial(
                call,
                scoring,
                replace(options, ratio=rho, target_bytes=None),
                decided,
                (lo + (hi - lo) * it / SEARCH_TRIALS, lo + (hi - lo) * (it + 1) / SEARCH_TRIALS),
            )
            trials.append(trial)
            decided = trial.encoding.decided
            fits = [t for t in trials if t.size <= target]
            best = max(fits, key=lambda t: t.size) if fits else None
            trials = [t if t is best else _without_tail(t) for t in trials]  # only the best keeps its merge tail
            fits = [t for t in trials if t.size <= target]
            if fits and max(fits, key=lambda t: (t.options.ratio, t.size)).size >= 0.97 * target:
                break
            rho_new = _next_ratio(trials, target, call.scene.n)
            if any(abs(rho_new - t.options.ratio) < 1e-4 for t in trials):
                break
            rho = rho_new
    except ExgsError as e:  # cancelled, or a trial failed: the caller decides (an SH-share search tries the next)
        return SizeSearch(target, tuple(trials), None, decided, failure=e)
    fits = [t for t in trials if t.size <= target]
    return SizeSearch(target, tuple(trials), max(fits, key=lambda t: t.size) if fits else None, decided)


def _without_tail(trial: Trial) -> Trial:
    """``trial`` without its merge tail (:attr:`Pruning.tail`; its memory goes)."""
    return trial if trial.pruning.tail is None else replace(trial, pruning=replace(trial.pruning, tail=None))


def _next_ratio(trials: list[Trial], target: int, n: int) -> float:
    """The next rho to try: the secant through the two trials closest to ``target`` bytes, 1 % lower, within
    [1 / n, 1]. Bytes are not quite linear in rho (a container's palette size steps at powers of two), so the
    secant is kept within a factor 2 of the origin-anchored line through the closest trial, and inside the
    bracket of the largest trial that fits and the smallest that does not, when there are both."""
    pts = sorted(trials, key=lambda t: abs(t.size - target))[:2]
    prop = pts[0].options.ratio * target / max(pts[0].size, 1)
    rho = prop
    if len(pts) == 2 and pts[0].size != pts[1].size:
        (r0, b0), (r1, b1) = ((t.options.ratio, t.size) for t in pts)
        secant = r0 + (target - b0) * (r1 - r0) / (b1 - b0)
        if 0.5 * prop <= secant <= 2.0 * prop:
            rho = secant
    rho *= 0.99
    fit = [t.options.ratio for t in trials if t.size <= target]
    over = [t.options.ratio for t in trials if t.size > target]
    if fit and over and max(fit) < min(over) and not max(fit) < rho < min(over):
        rho = 0.5 * (max(fit) + min(over))
    return float(np.clip(rho, 1.0 / max(n, 1), 1.0))


def _searches_sh_keep(scene: GaussianScene, options: CompressOptions) -> bool:
    return options.target_bytes is not None and options.sh_keep_auto and scene.sh_degree > 0


def _sh_keep_candidates(options: CompressOptions) -> list[float]:
    return sorted({float(options.sh_keep), *SH_KEEP_CANDIDATES})


def _search_sh_keep(call: _Call, scoring: Scoring, options: CompressOptions) -> Outcome:
    """``sh_keep_auto``: one :func:`_search_ratio` per SH-keep candidate; keep the best decoded file on the check
    views (:func:`check_cameras`; ties keep the smaller SH share)."""
    cands = _sh_keep_candidates(options)
    decided: CodecChoice | None = None
    best: tuple[float, SizeSearch] | None = None
    tried: list[dict] = []
    trials: list[Trial] = []
    for i, shk in enumerate(cands):
        check_cancel(call.cancel)
        search = _search_ratio(
            call, scoring, replace(options, sh_keep=shk), decided, span=(i / len(cands), (i + 1) / len(cands))
        )
        decided = search.decided
        trials += search.trials
        if search.best is None:  # this SH share cannot fit the budget at all; the others may
            continue
        p = call.check.psnr(_decode_output(call, search.best.encoding.data))
        tried.append(
            {
                "sh_keep": shk,
                "gaussians": search.best.pruning.scene.n,
                "bytes": search.best.size,
                "view_psnr": round(p, 3),
            }
        )
        if best is None or p > best[0]:
            best = (p, search)
    if best is None:
        raise ExgsError(f"cannot reach {options.target_bytes:,} bytes with any SH keep fraction {cands}")
    chosen = best[1].outcome()
    return replace(chosen, trials=tuple(trials), sampling={**chosen.sampling, "sh_keep_search": tried})


def _decode_output(call: _Call, data: bytes) -> GaussianScene:
    """The scene the output bytes ``data`` decode to, in ``call.container``'s format (an .exgs in memory; another
    container through its reader, from a temporary file), in the axes the source scene has."""
    if call.container == "exgs":
        from .exgs_format import decode

        return decode(data, max_gaussians=0)
    import os
    import tempfile

    from .io import load
    from .io.spz import _CS_STORED, flip_yz

    fd, path = tempfile.mkstemp(suffix=f".{call.container}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        out = load(path, format=call.container, max_gaussians=None)
    finally:
        os.unlink(path)
    # the check views are in the source's axes: an SPZ decodes in its stored right-up-back axes, the other
    # containers in PLY's (io.encode_as turns an SPZ source into them); 180 degrees about x apart
    rub = lambda s: s.meta.get("coordinate_system") == _CS_STORED  # noqa: E731
    return flip_yz(out) if rub(out) != rub(call.scene) else out


def _first_trial_share(scene: GaussianScene, options: CompressOptions) -> float:
    """The first trial's part of the progress bar (scoring happens once, in its first :data:`_SCORED`)."""
    if options.target_bytes is None:
        return 1.0
    searches = len(_sh_keep_candidates(options)) if _searches_sh_keep(scene, options) else 1
    return 1.0 / searches / SEARCH_TRIALS


# ------------------------------------------------------------------------------------------------ report
def _report(
    scene: GaussianScene,
    clean: GaussianScene,
    sanitize_actions: list[str],
    scoring: Scoring,
    outcome: Outcome,
    seconds: float,
) -> CompressReport:
    """The report of a compress call: ``scene`` as given, ``clean`` as sanitised, what was kept and tried."""
    kept, described = outcome.kept, outcome.described
    codec = {} if described.encoding.codec_info is None else {"codec": described.encoding.codec_info}
    return CompressReport(
        gaussians_in=scene.n,
        gaussians_out=kept.pruning.scene.n,
        ratio=kept.pruning.scene.n / max(clean.n, 1),
        sh_full=int(np.count_nonzero(kept.pruning.sh_full)),
        bytes_out=kept.size,
        bytes_sh3_ply=scene.ply_size_bytes(3),
        seconds={
            "score": round(scoring.seconds, 3),
            "prune": round(sum(t.pruning.seconds for t in outcome.trials), 3),
            "encode": round(sum(t.encoding.seconds for t in outcome.trials), 3),
            "total": round(seconds, 3),
        },
        sanitize_actions=list(sanitize_actions),
        sampling={**described.pruning.sampling, **codec, **outcome.sampling},
        amplification=dict(described.pruning.amplification),
        views=len(scoring.cameras),
    )


# ------------------------------------------------------------------------------------------------ progress
def _encode_progress(call: _Call, lo: float, hi: float):
    """The encoder's ``progress`` callback: checks ``cancel``, maps [0, 1] to [lo, hi] of the caller's bar."""

    def report(f: float, stage: str) -> None:
        check_cancel(call.cancel)
        if call.progress:
            call.progress(lo + (hi - lo) * f, stage)

    return report


def _checked(progress, cancel):
    """``progress`` (or nothing) that first checks ``cancel``."""

    def report(f: float, stage: str) -> None:
        check_cancel(cancel)
        if progress:
            progress(f, stage)

    return report


def _sub(progress, lo: float, hi: float):
    """Map a child's progress in [0, 1] to [lo, hi] of the parent's."""
    if progress is None:
        return None
    return lambda f, s: progress(lo + (hi - lo) * f, s)


# ------------------------------------------------------------------------------------------------ source hash, views
def scene_sha256(scene: GaussianScene) -> str:
    """sha256 of the scene's five arrays (order-sensitive): identifies the source in the .exgs header."""
    h = hashlib.sha256()
    for a in (scene.means, scene.quats, scene.log_scales, scene.opacity_logits, scene.sh):
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8).data)  # .tobytes()' bytes, not copied
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


class CheckViews:
    """The views compression judges its own choices on (:func:`check_cameras`) and the full scene's renders of
    them, each rendered on first use and then kept: a compress call renders each view of the full scene at most
    once, however many merge rules, codec steps and SH shares it judges, not at all when it judges nothing, and only
    the views a decision needed (:func:`_race` judges on every other view first).

    Args:
        scene: the full (sanitised) scene.
        options, cameras: as given to :func:`compress`.
    """

    def __init__(self, scene: GaussianScene, options: CompressOptions, cameras: list[Camera] | None):
        self._scene, self._options, self._cameras = scene, options, cameras
        self._refs: dict[int, np.ndarray] = {}  # view -> the full scene's render, float64 [H, W, 3] in [0, 1]
        self._prepared = None

    @functools.cached_property
    def cameras(self) -> list[Camera]:
        """The check cameras (:func:`check_cameras`)."""
        return check_cameras(self._scene, self._options, self._cameras)

    def reference(self, view: int) -> np.ndarray:
        """The full scene's render of check view ``view``, clipped to [0, 1]: float64 [H, W, 3]."""
        if view not in self._refs:
            from .render import prepare, render

            if self._prepared is None:
                self._prepared = prepare(self._scene)
            self._refs[view] = np.clip(
                render(self._scene, self.cameras[view], prepared=self._prepared).rgb.astype(np.float64), 0.0, 1.0
            )
            if len(self._refs) == len(self.cameras):
                self._prepared = None  # every view rendered: the converted copy of the full scene is not needed
        return self._refs[view]

    @functools.cached_property
    def references(self) -> tuple[list[Camera], list[np.ndarray]]:
        """(the check cameras, the full scene's renders float64 [H, W, 3] of them, clipped to [0, 1])."""
        return self.cameras, [self.reference(i) for i in range(len(self.cameras))]

    def view_psnrs(self, candidate: GaussianScene, views) -> np.ndarray:
        """float64 [len(views)]: PSNR (dB) of ``candidate``'s render of each check view in ``views`` (indices)
        against the full scene's (:func:`exgs_core.metrics.psnr`: both clipped to [0, 1])."""
        from .render import prepare, render

        prep = prepare(candidate)
        out = np.empty(len(views))
        for k, i in enumerate(views):
            ref = self.reference(i)
            img = np.clip(render(candidate, self.cameras[i], prepared=prep).rgb.astype(np.float64), 0.0, 1.0)
            mse = float(((ref - img) ** 2).mean())
            out[k] = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
        return out

    def psnr(self, candidate: GaussianScene) -> float:
        """Mean PSNR (dB) of ``candidate``'s renders of every check view against the full scene's."""
        return float(np.mean(self.view_psnrs(candidate, range(len(self.cameras)))))


#: A decision judged on every other check view first (:func:`_race`) is settled there when it is clearer than this
#: (dB of mean view PSNR): a merge rule that far behind the best is out, a codec step whose loss is this far from
#: what its saving is worth is kept or refused; closer ones are judged on every check view. (Measured on the shared
#: scenes at rho 0.1 and 0.05: the rules' means on half the views and on all differ by under 0.15 dB.)
JUDGE_MARGIN_DB = 0.5


class _Judged:
    """A scene being judged on the check views, with its per-view PSNRs (rendered on demand, each view once)."""

    def __init__(self, check: CheckViews, scene: GaussianScene):
        self.check, self.scene = check, scene
        self._psnr: dict[int, float] = {}

    def mean(self, views) -> float:
        """Mean PSNR (dB) over the check views ``views`` (indices; summed in ascending view order)."""
        views = sorted(views)
        missing = [i for i in views if i not in self._psnr]
        if missing:
            self._psnr.update(zip(missing, self.check.view_psnrs(self.scene, missing).tolist(), strict=True))
        return float(np.mean([self._psnr[i] for i in views]))


def _halves(n: int) -> tuple[list[int], list[int]]:
    """(every other one of ``n`` check views, starting with the first; all of them)."""
    return list(range(0, n, 2)), list(range(n))


def _race(cands: list[_Judged]) -> tuple[int, list[float], list[int]]:
    """The candidate with the best mean PSNR on the check views, judged in two steps: every candidate on every
    other view; those within :data:`JUDGE_MARGIN_DB` of the best there, on every view. Returns (the winner's index:
    ties keep the first; each candidate's mean on the views it was judged on; how many views that was)."""
    first, every = _halves(len(cands[0].check.cameras))
    means = [c.mean(first) for c in cands]
    alive = [i for i, m in enumerate(means) if m >= max(means) - JUDGE_MARGIN_DB]
    views = [len(first)] * len(cands)
    if len(alive) > 1 and len(every) > len(first):
        for i in alive:
            means[i], views[i] = cands[i].mean(every), len(every)
    win = max(alive, key=lambda i: (means[i], -i))
    return win, means, views


def prune(
    scene: GaussianScene,
    options: CompressOptions,
    *,
    cameras: list[Camera] | None = None,
    acc: Accumulation | None = None,
    progress=None,
    cancel=None,
    report: CompressReport | None = None,
) -> tuple[GaussianScene, np.ndarray, Accumulation | None]:
    """UGC without coding: returns (pruned + amplified + SH-split scene, sh_full bool [M], accumulation).

    ``acc`` from an earlier call can be passed back to skip re-scoring (e.g. when searching rho). ``report``, when
    given, receives ``views``, ``sampling``, ``amplification`` and the ``"score"`` / ``"prune"`` seconds."""
    scoring = _score(scene, options, cameras, acc=acc, progress=_sub(progress, 0.0, 0.6), cancel=cancel)
    check_cancel(cancel)
    pruning = _prune(scene, options, scoring, CheckViews(scene, options, cameras), cancel)
    if report is not None:
        report.seconds["score"] = round(report.seconds.get("score", 0.0) + scoring.seconds, 3)
        report.seconds["prune"] = round(report.seconds.get("prune", 0.0) + pruning.seconds, 3)
        report.views = len(scoring.cameras)
        report.sampling, report.amplification = dict(pruning.sampling), dict(pruning.amplification)
    if progress:
        progress(0.7, "pruned")
    return pruning.scene, pruning.sh_full, scoring.accumulation


def decompress(data: bytes, *, path=None, max_gaussians: int | None = None) -> GaussianScene:
    """Decode .exgs bytes back to a scene (Gaussians in the stored Morton order). ``max_gaussians``: the most
    Gaussians accepted (0 = no limit; default: :mod:`exgs_core.limits`, 50 M); pass 0 for bytes you just
    compressed yourself."""
    from .exgs_format import decode

    return decode(data, path=path, max_gaussians=max_gaussians)
