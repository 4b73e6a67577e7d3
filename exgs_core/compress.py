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
from .scene import GaussianScene


@dataclass(frozen=True)
class CompressOptions:
    """Everything that decides the output bytes (all serialised into the .exgs header).

    Attributes:
        ratio: retention rho in (0, 1] (ignored when ``target_bytes`` is set).
        target_bytes: pick rho so the file is at most this many bytes (bisection on real encodes).
        sh_keep: fraction of the survivors that keep their higher SH (the rest are DC-only).
        score: ``"exgs"`` (transmittance-weighted), ``"lightgaussian"`` or ``"opacity"``.
        voxel_sampling: voxel-based sampling (else global top-k by score).
        amplify: closed-form compensation of the survivors.
        amplify_strength: exponent of the per-voxel coverage gain (0 = off, 1 = full mass).
        fold_sh: fold the cut SH bands' mean colour over the views into DC.
        views: number of automatic scoring views (when no cameras are given).
        view_size: scoring image size (square, pixels) for automatic views; given cameras are rescaled so their
            longer side is this.
    """

    ratio: float = 0.1
    target_bytes: int | None = None
    sh_keep: float = 0.1
    score: str = "exgs"
    voxel_sampling: bool = True
    amplify: bool = True
    amplify_strength: float = 0.5
    fold_sh: bool = True
    views: int = 24
    view_size: int = 256

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise ValueError(f"ratio must be in (0, 1], got {self.ratio}")
        if not 0 <= self.sh_keep <= 1:
            raise ValueError(f"sh_keep must be in [0, 1], got {self.sh_keep}")
        if self.score not in ugc.SCORES:
            raise ValueError(f"score must be one of {ugc.SCORES}, got {self.score!r}")
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
        out = []
        for c in cameras:
            s = options.view_size / max(c.width, c.height)
            out.append(c.resized(max(1, round(c.width * s)), max(1, round(c.height * s))) if s < 1 else c)
        return out
    return auto_views(scene, options.views, options.view_size, options.view_size, split="train")


def prune(scene: GaussianScene, options: CompressOptions, *, cameras: list[Camera] | None = None,
          acc: ugc.Accumulation | None = None, progress=None, cancel=None, report: CompressReport | None = None
          ) -> tuple[GaussianScene, np.ndarray, ugc.Accumulation | None]:
    """UGC without coding: returns (pruned + amplified + SH-split scene, sh_full bool [M], accumulation).

    ``acc`` from an earlier call can be passed back to skip re-scoring (e.g. when searching rho)."""
    report = report or CompressReport()
    t = time.perf_counter()
    cams = scoring_cameras(scene, options, cameras)
    if acc is None and options.score != "opacity":
        acc = ugc.accumulate(scene, cams, progress=(lambda f, s: progress(0.6 * f, s)) if progress else None,
                             cancel=cancel)
    score = ugc.significance(scene, acc, options.score)
    report.seconds["score"] = round(time.perf_counter() - t, 3)
    report.views = len(cams)
    ugc._check_cancel(cancel)
    t = time.perf_counter()
    if options.voxel_sampling:
        sr = ugc.voxel_sample(scene.means, score, options.ratio)
        keep, vox = sr.keep, sr.voxel
        report.sampling = {"voxel_size": sr.voxel_size, "kept_by_quota": sr.kept_by_quota,
                           "kept_min_one": sr.kept_min_one, "kept_by_budget": sr.kept_by_budget}
    else:
        keep = ugc.top_k(score, options.ratio)
        vox = ugc.voxel_keys(scene.means, ugc.auto_voxel_size(scene.means, max(8.0, 4.0 / options.ratio))) \
            if options.amplify and scene.n else np.zeros(scene.n, np.int64)
    if options.amplify and options.ratio < 1:
        out, report.amplification = ugc.amplify(scene, keep, vox, strength=options.amplify_strength)
    else:
        out = scene.subset(keep)
    fold = np.array([c.position for c in cams]) if options.fold_sh else None
    out, sh_full = ugc.split_sh(out, score[keep], options.sh_keep, fold_dirs=fold)
    report.seconds["prune"] = round(time.perf_counter() - t, 3)
    if progress:
        progress(0.7, "pruned")
    return out, sh_full, acc
