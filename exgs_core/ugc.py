"""UGC, Universal Gaussian Compression, the pruning half (no re-optimisation): score, sample, amplify, cut SH.

Pipeline (each step a pure function, arrays in, new arrays out):

1. :func:`significance` — every Gaussian's global significance over M views. ``"exgs"`` (the paper's GS_j):
   ``sum over the pixels of all views of alpha_j(p) * T_j(p)``, divided by ``M * H * W``; the blend weight
   alpha * T is what the rasteriser accumulates (on CUDA it is the gradient of the summed render with respect
   to a per-Gaussian scalar colour). ``"lightgaussian"`` (for comparison): LightGaussian's
   ``count_j * sigma_j * (V_j / V_ref) ** 0.1`` with V the ellipsoid volume and V_ref the 90 % largest volume.
   ``"opacity"``: plain sigmoid opacity (a baseline without views).
2. :func:`voxel_sample` — voxel-based sampling with retention ratio rho: in every occupied voxel V keep the top
   ``floor(|V| * rho)`` by score; a voxel whose total score reaches the global keep threshold keeps at least one
   (thin structure survives); then the global budget ``round(rho * N)`` is met exactly: unfilled places go to the
   highest-scoring unkept Gaussians anywhere, an overshoot drops the lowest-scoring extra keeps.
3. Adaptive amplification, closed-form, no optimisation; three variants:
   :func:`merge_into_survivors` — every removed Gaussian is moment-matched into its nearest survivor: the
   survivor takes the group's mass-weighted centre, covariance (spread included) and colour, and the opacity
   that conserves the group's coverage mass (opacity x projected area). Measured at rho = 0.1: +0.7 dB (guitar)
   and +2.6 dB (biker) over the per-voxel gain below.
   :func:`amplify` — per voxel, the kept Gaussians take over a share of the removed ones' coverage mass:
   ``g = (M_all / M_kept) ** strength``, applied to opacity first (up to 0.99), the rest to the scale.
   :func:`pairwise_merge` (the compressor's default, replacing steps 2-3) — the significance score removes the
   Gaussians that carry the last 2 % of it (occluded, nearly transparent), then neighbour pairs are merged
   greedily by the same moment matching, cheapest first, until the budget is met. Two cost/opacity variants:
   Ward cost with opaque merges after the drop (solid objects) and, without any drop, a significance-weighted
   KL cost with mass-conserving opacity (fuzzy, thin content); the compressor's ``"auto"`` tries both (and the
   KL rule after the drop) and keeps the best on check views that were not scored on. Measured in BENCHMARKS.md.
4. :func:`split_sh` — the ``sh_keep`` fraction of survivors with the highest score keep full SH; the rest become
   DC-only, optionally with the removed bands' mean colour over the scoring views folded into DC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .camera import Camera
from .conventions import SH_C0, logit, sigmoid
from .errors import ExgsError
from .scene import GaussianScene

SCORES = ("exgs", "lightgaussian", "opacity")


class Cancelled(ExgsError):
    """The caller's cancel callback asked to stop."""


Progress = Callable[[float, str], None]


def _check_cancel(cancel) -> None:
    if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()):
        raise Cancelled("cancelled")


@dataclass(frozen=True)
class Accumulation:
    """What the scoring pass gathers over M views of H x W pixels.

    Attributes:
        weight: float64 [N], sum of alpha * T over every pixel of every view.
        count: float64 [N], number of pixels where the Gaussian contributed (alpha >= 1/255, pixel not terminated).
        pixels: M * H * W.
        views: M.
        cache: derived data kept with the accumulation for reuse (``compress`` keeps its check views' full-scene
            renders here, so a size search renders them once).
    """

    weight: np.ndarray
    count: np.ndarray
    pixels: int
    views: int
    cache: dict = field(default_factory=dict)


def accumulate(scene: GaussianScene, cameras: Sequence[Camera], *, backend: str = "auto", counts: bool = False,
               progress: Progress | None = None, cancel=None) -> Accumulation:
    """Render ``scene`` from every camera with per-Gaussian accumulation and sum the results
    (``counts`` also gathers hit counts, which the LightGaussian score needs)."""
    from .render import prepare, render

    prep = prepare(scene, backend)  # converted / uploaded once for all views
    w = np.zeros(scene.n, np.float64)
    c = np.zeros(scene.n, np.float64)
    pixels = 0
    for i, cam in enumerate(cameras):
        _check_cancel(cancel)
        r = render(scene, cam, backend=backend, return_weights=True, prepared=prep,
                   **({"return_counts": True} if counts else {}))
        w += r.weights
        if counts:
            c += r.counts
        pixels += cam.width * cam.height
        if progress:
            progress((i + 1) / len(cameras), f"scoring view {i + 1}/{len(cameras)}")
    return Accumulation(w, c, pixels, len(cameras))


def significance(scene: GaussianScene, acc: Accumulation | None, method: str = "exgs") -> np.ndarray:
    """float64 [N] significance score (higher = more important) by ``method`` (see module docstring)."""
    if method not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {method!r}")
    if method == "opacity":
        return scene.opacities.astype(np.float64)
    if acc is None:
        raise ValueError(f"score {method!r} needs the views' accumulation")
    if method == "exgs":
        return acc.weight / max(acc.pixels, 1)
    # LightGaussian: imp_j = sum over hit pixels of sigma_j, times (V_j / V_ref) ** 0.1
    vol = np.exp(scene.log_scales.astype(np.float64).sum(axis=1))
    v_ref = np.sort(vol)[::-1][int(math.floor(0.9 * (len(vol) - 1)))] if len(vol) else 1.0
    return acc.count * scene.opacities.astype(np.float64) * np.power(vol / max(v_ref, 1e-30), 0.1)


# ----------------------------------------------------------------------------- voxel sampling
def voxel_keys(means: np.ndarray, voxel: float) -> np.ndarray:
    """int64 [N] voxel id of each centre for a grid of edge ``voxel`` (world units), origin at the minimum."""
    lo = means.min(axis=0)
    ijk = np.floor((means - lo) / voxel).astype(np.int64)
    ijk = np.clip(ijk, 0, (1 << 20) - 1)
    return (ijk[:, 0] << 40) | (ijk[:, 1] << 20) | ijk[:, 2]


def auto_voxel_size(means: np.ndarray, per_voxel: float) -> float:
    """Edge length giving about ``per_voxel`` Gaussians per occupied voxel on average (3 refinement steps)."""
    n = len(means)
    lo, hi = np.quantile(means, 0.01, axis=0), np.quantile(means, 0.99, axis=0)
    ext = float(np.max(hi - lo)) or 1.0
    v = ext / max(2.0, (n / per_voxel) ** (1 / 3))
    for _ in range(4):
        occ = np.unique(voxel_keys(means, v)).size
        mean = n / max(occ, 1)
        if 0.8 < mean / per_voxel < 1.25:
            break
        v *= (per_voxel / mean) ** 0.5  # occupancy of surface-like scenes grows ~ v^2
    return float(v)


@dataclass(frozen=True)
class SampleResult:
    """Output of :func:`voxel_sample`: ``keep`` bool [N], ``voxel`` int64 [N] ids, the voxel edge length,
    and counts of how each kept Gaussian earned its place."""

    keep: np.ndarray
    voxel: np.ndarray
    voxel_size: float
    kept_by_quota: int
    kept_min_one: int
    kept_by_budget: int


def keep_count(n: int, ratio: float) -> int:
    """The survivor budget for ``n`` Gaussians at retention ``ratio``: ``round(ratio * n)``, but at least 1 for a
    non-empty scene (a tiny scene at a small ratio keeps one Gaussian, never silently none)."""
    return max(1, int(round(ratio * n))) if n else 0


def voxel_sample(means: np.ndarray, score: np.ndarray, ratio: float, *, voxel_size: float | None = None,
                 per_voxel: float | None = None) -> SampleResult:
    """Choose the survivors by the voxel rule in the module docstring (exactly :func:`keep_count` of them).

    Args:
        means: float32 [N, 3] centres.
        score: float [N] significance (higher first).
        ratio: retention rho in (0, 1].
        voxel_size: grid edge in world units; default from ``per_voxel``.
        per_voxel: mean Gaussians per occupied voxel for the automatic size; default ``max(8, 4 / ratio)`` so a
            typical voxel's quota floor(|V| rho) is about 4.
    """
    n = len(means)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    budget = keep_count(n, ratio)
    if n == 0 or budget >= n:
        return SampleResult(np.ones(n, bool), np.zeros(n, np.int64), 0.0, n, 0, 0)
    if voxel_size is None:
        voxel_size = auto_voxel_size(means, per_voxel or max(8.0, 4.0 / ratio))
    vid = voxel_keys(means, voxel_size)
    order = np.lexsort((-score, vid))  # by voxel, then score descending
    v_sorted = vid[order]
    starts = np.flatnonzero(np.r_[True, v_sorted[1:] != v_sorted[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)  # rank within voxel, 0 = best
    quota = np.floor(sizes * ratio).astype(np.int64)
    keep_sorted = rank < np.repeat(quota, sizes)
    # voxels carrying enough score keep at least one: total >= the global keep threshold
    thresh = np.partition(score, n - budget)[n - budget]
    vsum = np.add.reduceat(score[order], starts)
    need_one = (quota == 0) & (vsum >= thresh) & (vsum > 0)
    min_one = np.zeros(n, bool)
    min_one[starts[need_one]] = True
    keep_sorted |= min_one
    keep = np.zeros(n, bool)
    keep[order] = keep_sorted
    mo = np.zeros(n, bool)
    mo[order] = min_one
    n_quota = int(keep.sum() - mo.sum())
    k = int(keep.sum())
    added = 0
    if k < budget:  # fill by global score
        cand = np.flatnonzero(~keep)
        top = cand[np.argsort(-score[cand], kind="stable")[: budget - k]]
        keep[top] = True
        added = len(top)
    elif k > budget:  # drop the lowest-scoring keeps, quota extras before min-one guarantees
        kept = np.flatnonzero(keep)
        pri = np.where(mo[kept], 1.0, 0.0)  # 0 = drop first
        drop = kept[np.lexsort((score[kept], pri))[: k - budget]]
        keep[drop] = False
    return SampleResult(keep, vid, float(voxel_size), n_quota, int((mo & keep).sum()), added)


def top_k(score: np.ndarray, ratio: float) -> np.ndarray:
    """bool [N]: the global top :func:`keep_count` by score (pruning without voxels, for the ablation)."""
    n = len(score)
    k = keep_count(n, ratio)
    keep = np.zeros(n, bool)
    keep[np.argsort(-score, kind="stable")[:k]] = True
    return keep


# ----------------------------------------------------------------------------- amplification
def coverage_mass(scene: GaussianScene) -> np.ndarray:
    """float64 [N] opacity x area of the two largest axes (pi * s_a * s_b): a view-independent coverage proxy."""
    s = np.sort(np.exp(scene.log_scales.astype(np.float64)), axis=1)
    return scene.opacities.astype(np.float64) * math.pi * s[:, 2] * s[:, 1]


def amplify(scene: GaussianScene, keep: np.ndarray, voxel: np.ndarray, *, strength: float = 0.5,
            max_opacity: float = 0.99, max_scale_gain: float = 1.5) -> tuple[GaussianScene, dict]:
    """Return the kept Gaussians with opacity/scale compensated for the removed ones in their voxel.

    Per voxel: ``g = (M_all / M_kept) ** strength`` (M = :func:`coverage_mass`), clipped to
    [1, max_scale_gain**2 / min(opacity)]. Each kept Gaussian's mass is multiplied by g: opacity first
    (``sigma' = min(sigma * g, max_opacity)``), the remaining factor ``g * sigma / sigma'`` as area via a
    uniform scale factor ``sqrt(.)`` capped at ``max_scale_gain``.

    Returns:
        (scene of the kept Gaussians, stats dict: mean/max gain, Gaussians changed).
    """
    m = coverage_mass(scene)
    uniq, inv = np.unique(voxel, return_inverse=True)
    m_all = np.bincount(inv, weights=m, minlength=len(uniq))
    m_kept = np.bincount(inv, weights=m * keep, minlength=len(uniq))
    with np.errstate(divide="ignore", invalid="ignore"):
        g_vox = np.where(m_kept > 0, m_all / m_kept, 1.0) ** strength
    g = np.clip(g_vox[inv][keep], 1.0, None)
    out = scene.subset(keep)
    sig = out.opacities.astype(np.float64)
    sig_new = np.minimum(sig * g, max_opacity)
    sig_new = np.maximum(sig_new, sig)
    rest = g * sig / np.maximum(sig_new, 1e-12)
    f = np.clip(np.sqrt(np.maximum(rest, 1.0)), 1.0, max_scale_gain)
    out.opacity_logits = logit(sig_new)
    out.log_scales = (out.log_scales + np.log(f)[:, None]).astype(np.float32)
    changed = (g > 1.0 + 1e-6)
    # keep the logit exact where nothing changed (logit(sigmoid(x)) is not bit-exact)
    out.opacity_logits[~changed] = scene.opacity_logits[keep][~changed]
    return out, {"gain_mean": float(g.mean()) if len(g) else 1.0, "gain_max": float(g.max()) if len(g) else 1.0,
                 "amplified": int(changed.sum())}


# ----------------------------------------------------------------------------- SH
def split_sh(scene: GaussianScene, score: np.ndarray, sh_keep: float, *, fold_dirs: np.ndarray | None = None
             ) -> tuple[GaussianScene, np.ndarray]:
    """Mark the top ``sh_keep`` fraction (by ``score`` [N]) as full-SH and make the rest DC-only.

    Args:
        fold_dirs: float [D, 3] unit view directions (camera -> Gaussian) of the scoring views, or None.
            When given, each DC-only Gaussian's DC absorbs the mean over these directions of its removed
            bands' colour (in the direction from each camera centre to that Gaussian, averaged).

    Returns:
        (scene with zeroed higher SH where cut, ``sh_full`` bool [N]).
    """
    n, k = scene.n, scene.sh.shape[1]
    if k == 1:
        return scene, np.zeros(n, bool)
    if not 0 <= sh_keep <= 1:
        raise ValueError(f"sh_keep must be in [0, 1], got {sh_keep}")
    full = top_k(score, sh_keep) if sh_keep < 1 else np.ones(n, bool)
    out = scene.copy()
    cut = ~full
    if fold_dirs is not None and cut.any():
        from .render.sh import sh_to_color

        idx = np.flatnonzero(cut)
        rest = out.sh[idx].copy()
        rest[:, 0] = 0.0
        acc = np.zeros((len(idx), 3), np.float64)
        for cam_pos in fold_dirs:  # camera centres [D, 3]
            d = out.means[idx].astype(np.float64) - cam_pos
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            acc += sh_to_color(rest, d.astype(np.float32), offset=False)
        out.sh[idx, 0] += (acc / len(fold_dirs) / SH_C0).astype(np.float32)
    out.sh[cut, 1:] = 0.0
    return out, full


# ----------------------------------------------------------------------------- merging (moment matching)
def merge_into_survivors(scene: GaussianScene, keep: np.ndarray, *, max_dist: float | None = None,
                         opacity_gain: float = 1.0) -> tuple[GaussianScene, dict]:
    """Closed-form compensation by moment matching: every removed Gaussian is merged into its nearest survivor.

    For survivor k and the removed Gaussians assigned to it (set A_k, nearest centre, within ``max_dist`` when
    given), with weights ``w_i = coverage_mass_i`` (opacity x pi x the two largest scales):

    - centre  ``mu = sum w_i mu_i / W``; covariance ``Sigma = sum w_i (Sigma_i + (mu_i - mu)(mu_i - mu)^T) / W``
      (rotation and scales from its eigen-decomposition);
    - colour  every SH coefficient ``sum w_i c_i / W``;
    - opacity mass-conserving: ``sigma = opacity_gain * sum m_i / (pi s_a s_b)`` of the merged shape, kept within
      [sigma_k, 0.99].

    Returns:
        (scene of the survivors, stats dict with the number merged and the mean group size).
    """
    from .knn import nearest
    from .sh_rotation import matrix_to_quat, quat_to_matrix

    kept_idx = np.flatnonzero(keep)
    rem_idx = np.flatnonzero(~keep)
    out = scene.subset(keep)
    if len(kept_idx) == 0 or len(rem_idx) == 0:
        return out, {"merged": 0, "group_mean": 1.0}
    # a removed Gaussian with a NaN/Inf centre (or no finite survivor) has no nearest survivor: dist inf, not merged
    dist, nn = nearest(scene.means[kept_idx].astype(np.float64), scene.means[rem_idx].astype(np.float64))
    ok = np.isfinite(dist)
    if max_dist is not None:
        ok &= dist <= max_dist
    rem_idx, nn = rem_idx[ok], nn[ok]
    members = np.concatenate([kept_idx, rem_idx])  # every Gaussian taking part
    group = np.concatenate([np.arange(len(kept_idx)), nn])  # its survivor
    m = coverage_mass(scene)[members]
    w = np.maximum(m, 1e-30)
    W = np.bincount(group, weights=w, minlength=len(kept_idx))
    mu_i = scene.means[members].astype(np.float64)
    mu = np.stack([np.bincount(group, weights=w * mu_i[:, a], minlength=len(kept_idx)) for a in range(3)], 1) / W[:, None]
    R = quat_to_matrix(scene.quats[members])
    s2 = np.exp(2.0 * scene.log_scales[members].astype(np.float64))
    cov_i = np.einsum("nij,nj,nkj->nik", R, s2, R)
    d = mu_i - mu[group]
    cov_i += d[:, :, None] * d[:, None, :]
    cov = np.zeros((len(kept_idx), 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = np.bincount(group, weights=w * cov_i[:, a, b], minlength=len(kept_idx)) / W
            cov[:, b, a] = cov[:, a, b]
    evals, evecs = np.linalg.eigh(cov)
    evecs[np.linalg.det(evecs) < 0, :, 0] *= -1  # proper rotation
    scales = np.sqrt(np.maximum(evals, 1e-20))
    sh = scene.sh[members].astype(np.float64)
    sh_new = np.stack([np.stack([np.bincount(group, weights=w * sh[:, k, c], minlength=len(kept_idx))
                                 for c in range(3)], -1) for k in range(sh.shape[1])], 1) / W[:, None, None]
    m_sum = np.bincount(group, weights=m, minlength=len(kept_idx))
    ss = np.sort(scales, axis=1)
    sig = opacity_gain * m_sum / (np.pi * ss[:, 2] * ss[:, 1])
    sig = np.clip(sig, scene.opacities[kept_idx].astype(np.float64), 0.99)
    single = np.bincount(group, minlength=len(kept_idx)) == 1  # nothing merged: keep bit-exact
    out.means = np.where(single[:, None], out.means, mu).astype(np.float32)
    out.quats = np.where(single[:, None], out.quats, matrix_to_quat(evecs)).astype(np.float32)
    out.log_scales = np.where(single[:, None], out.log_scales, np.log(scales)).astype(np.float32)
    out.sh = np.where(single[:, None, None], out.sh, sh_new).astype(np.float32)
    out.opacity_logits = np.where(single, out.opacity_logits, logit(sig)).astype(np.float32)
    return out, {"merged": int(len(rem_idx)), "group_mean": float(len(members) / len(kept_idx))}


def _greedy_pairs_py(order, ei, ej, n, max_pairs):
    used = np.zeros(n, np.bool_)
    pi = np.empty(max_pairs, np.int64)
    pj = np.empty(max_pairs, np.int64)
    k = 0
    for t in range(order.size):
        if k >= max_pairs:
            break
        e = order[t]
        a = ei[e]
        b = ej[e]
        if a == b or used[a] or used[b]:
            continue
        used[a] = True
        used[b] = True
        pi[k] = a
        pj[k] = b
        k += 1
    return pi[:k], pj[:k]


try:  # numba compiles the per-edge loops (~100x faster); the pure-Python bodies are the same algorithms
    from numba import njit as _njit
    from numba import prange as _prange
except ImportError:  # pragma: no cover
    _njit = None
    _prange = range


def _edge_sq_dist_py(x, ei, ej):
    """float64 [E]: squared Euclidean distance between rows ei[e] and ej[e] of x [N, D] (no [E, D] temporaries)."""
    m = ei.size
    out = np.empty(m, np.float64)
    d = x.shape[1]
    for e in _prange(m):
        i = ei[e]
        j = ej[e]
        acc = 0.0
        for t in range(d):
            v = x[i, t] - x[j, t]
            acc += v * v
        out[e] = acc
    return out


def _kl_costs_py(means, chol, logdet, mass, ei, ej, z):
    """float64 [E]: per edge (ei[e], ej[e]), KL(p || q) from the pair's mixture p (weights ~ mass) to its
    moment-matched Gaussian q, estimated with the fixed standard-normal draws z [S, 3] pushed through each
    member (common random numbers for log p and log q, so identical members cost exactly 0).
    means [N, 3], chol [N, 3, 3] lower Cholesky factors of the covariances, logdet [N], mass [N]."""
    m = ei.size
    out = np.empty(m, np.float64)
    ns = z.shape[0]
    c3 = 3.0 * math.log(2.0 * math.pi)
    for e in _prange(m):
        i = ei[e]
        j = ej[e]
        w = mass[i] + mass[j]
        pi = mass[i] / w if w > 0 else 0.5
        pi = min(max(pi, 1e-12), 1.0 - 1e-12)
        pj = 1.0 - pi
        mu0 = pi * means[i, 0] + pj * means[j, 0]
        mu1 = pi * means[i, 1] + pj * means[j, 1]
        mu2 = pi * means[i, 2] + pj * means[j, 2]
        # merged covariance = sum_k p_k (L_k L_k^T + d_k d_k^T), lower triangle only
        di0, di1, di2 = means[i, 0] - mu0, means[i, 1] - mu1, means[i, 2] - mu2
        dj0, dj1, dj2 = means[j, 0] - mu0, means[j, 1] - mu1, means[j, 2] - mu2
        ci = chol[i]
        cj = chol[j]
        s00 = pi * (ci[0, 0] * ci[0, 0] + di0 * di0) + pj * (cj[0, 0] * cj[0, 0] + dj0 * dj0)
        s10 = pi * (ci[1, 0] * ci[0, 0] + di1 * di0) + pj * (cj[1, 0] * cj[0, 0] + dj1 * dj0)
        s20 = pi * (ci[2, 0] * ci[0, 0] + di2 * di0) + pj * (cj[2, 0] * cj[0, 0] + dj2 * dj0)
        s11 = (pi * (ci[1, 0] * ci[1, 0] + ci[1, 1] * ci[1, 1] + di1 * di1)
               + pj * (cj[1, 0] * cj[1, 0] + cj[1, 1] * cj[1, 1] + dj1 * dj1))
        s21 = (pi * (ci[2, 0] * ci[1, 0] + ci[2, 1] * ci[1, 1] + di2 * di1)
               + pj * (cj[2, 0] * cj[1, 0] + cj[2, 1] * cj[1, 1] + dj2 * dj1))
        s22 = (pi * (ci[2, 0] * ci[2, 0] + ci[2, 1] * ci[2, 1] + ci[2, 2] * ci[2, 2] + di2 * di2)
               + pj * (cj[2, 0] * cj[2, 0] + cj[2, 1] * cj[2, 1] + cj[2, 2] * cj[2, 2] + dj2 * dj2))
        # Cholesky of the merged covariance (3x3, with a tiny ridge)
        l00 = math.sqrt(max(s00, 1e-30))
        l10 = s10 / l00
        l20 = s20 / l00
        l11 = math.sqrt(max(s11 - l10 * l10, 1e-30))
        l21 = (s21 - l20 * l10) / l11
        l22 = math.sqrt(max(s22 - l20 * l20 - l21 * l21, 1e-30))
        logdet_m = 2.0 * (math.log(l00) + math.log(l11) + math.log(l22))
        kl = 0.0
        for src in range(2):
            s_ = i if src == 0 else j
            ps = pi if src == 0 else pj
            acc = 0.0
            for t in range(ns):
                x0 = means[s_, 0] + chol[s_, 0, 0] * z[t, 0] + chol[s_, 0, 1] * z[t, 1] + chol[s_, 0, 2] * z[t, 2]
                x1 = means[s_, 1] + chol[s_, 1, 0] * z[t, 0] + chol[s_, 1, 1] * z[t, 1] + chol[s_, 1, 2] * z[t, 2]
                x2 = means[s_, 2] + chol[s_, 2, 0] * z[t, 0] + chol[s_, 2, 1] * z[t, 1] + chol[s_, 2, 2] * z[t, 2]
                lg0 = 0.0
                lg1 = 0.0
                for k in range(2):
                    g = i if k == 0 else j
                    r0 = x0 - means[g, 0]
                    r1 = x1 - means[g, 1]
                    r2 = x2 - means[g, 2]
                    y0 = r0 / chol[g, 0, 0]
                    y1 = (r1 - chol[g, 1, 0] * y0) / chol[g, 1, 1]
                    y2 = (r2 - chol[g, 2, 0] * y0 - chol[g, 2, 1] * y1) / chol[g, 2, 2]
                    v = -0.5 * (c3 + logdet[g] + y0 * y0 + y1 * y1 + y2 * y2) + math.log(pi if k == 0 else pj)
                    if k == 0:
                        lg0 = v
                    else:
                        lg1 = v
                hi = max(lg0, lg1)
                log_p = hi + math.log(math.exp(lg0 - hi) + math.exp(lg1 - hi))
                r0 = x0 - mu0
                r1 = x1 - mu1
                r2 = x2 - mu2
                y0 = r0 / l00
                y1 = (r1 - l10 * y0) / l11
                y2 = (r2 - l20 * y0 - l21 * y1) / l22
                log_q = -0.5 * (c3 + logdet_m + y0 * y0 + y1 * y1 + y2 * y2)
                acc += log_p - log_q
            kl += ps * acc / ns
        out[e] = kl
    return out


def _finish_kl_costs_py(kl, c2, color_weight, floor):
    """float64 [E]: max(kl, floor) + color_weight * c2, non-finite kl -> inf."""
    m = kl.size
    out = np.empty(m, np.float64)
    for e in _prange(m):
        k = kl[e]
        out[e] = max(k, floor) + color_weight * c2[e] if math.isfinite(k) else math.inf
    return out


def _scale_by_visibility_py(c, vis_w, ei, ej):
    """float64 [E]: c [E] x the harmonic mean of the endpoints' significance vis_w [N]."""
    m = c.size
    out = np.empty(m, np.float64)
    for e in _prange(m):
        a = vis_w[ei[e]]
        b = vis_w[ej[e]]
        out[e] = c[e] * (a * b / (a + b + 1e-300))
    return out


def _compiled(fn, **kw):
    if _njit is None:
        return fn
    from ._machine import guarded

    k = _njit(cache=True, nogil=True, **kw)(fn)
    return guarded(k) if kw.get("parallel") else k  # parallel kernels: safe from any thread (see _machine)


_greedy_pairs = _compiled(_greedy_pairs_py)
_kl_costs = _compiled(_kl_costs_py, parallel=True)
_edge_sq_dist = _compiled(_edge_sq_dist_py, parallel=True)
_finish_kl_costs = _compiled(_finish_kl_costs_py, parallel=True)
_scale_by_visibility = _compiled(_scale_by_visibility_py, parallel=True)


def _order_by_cost(c: np.ndarray) -> np.ndarray:
    """int64 [E]: edge indices by ascending cost c [E], ties (at float32 precision) by edge index.

    One sort of unique uint64 keys ``float32 bits << 32 | index`` (as the renderer orders depths): 2-3x faster than
    a stable argsort of float64, and the order does not depend on the sort algorithm numpy picks on this CPU."""
    if c.size >= 1 << 32:  # pragma: no cover - 4 billion candidate edges
        return np.argsort(c, kind="stable")
    c = np.where(np.isfinite(c), c, np.inf)
    lo = c.min() if c.size else 0.0
    with np.errstate(over="ignore"):  # costs beyond float32 (scenes at ~1e15 units) tie at inf, still monotonic
        bits = (c - lo).astype(np.float32).view(np.uint32).astype(np.uint64)  # >= 0, so the bits are monotonic
    keys = (bits << np.uint64(32)) | np.arange(c.size, dtype=np.uint64)
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _psd_cholesky(cov: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 3] lower Cholesky factors of covariances cov [N, 3, 3], with a tiny ridge; matrices that
    rounding made indefinite are first projected onto the PSD cone (eigenvalues floored at 1e-9 of the largest)."""
    ridge = 1e-12 * np.eye(3)
    try:
        return np.linalg.cholesky(cov + ridge)
    except np.linalg.LinAlgError:
        ev, evec = np.linalg.eigh(cov)
        ev = np.maximum(ev, 1e-9 * np.maximum(ev[:, -1:], 1e-30))
        return np.linalg.cholesky(np.einsum("nij,nj,nkj->nik", evec, ev, evec) + ridge)


def _ellipsoid_area(sd: np.ndarray) -> np.ndarray:
    """float64 [N] surface area of ellipsoids with semi-axes sd [N, 3] (Knud Thomsen, p = 1.6075)."""
    p = 1.6075
    a, b, c = sd[:, 0], sd[:, 1], sd[:, 2]
    return 4.0 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3.0) ** (1.0 / p)


def pairwise_merge(scene: GaussianScene, score: np.ndarray, target: int, *, drop_score_fraction: float = 0.02,
                   knn: int = 8, color_weight: float = 1.0, cost: str = "ward", mass: str = "projected",
                   opacity_floor: float = 1.0, color: str = "dc", samples: int = 1, visibility_weight: bool = False
                   ) -> tuple[GaussianScene, dict]:
    """UGC with hierarchical compensation: drop the invisible, then merge neighbour pairs until ``target`` remain.

    1. The least significant Gaussians that together carry ``drop_score_fraction`` of the total significance
       (occluded or nearly transparent ones: typically 30-40 % of a scene carries 2 %) are removed outright; they
       are never merged into visible surfaces.
    2. Rounds of greedy pairwise merging: candidate pairs are each Gaussian's ``knn`` nearest neighbours, the
       cheapest disjoint pairs are moment-matched (mass-weighted centre, covariance with spread, colour; the
       opacity conserves the pair's coverage mass) — at most half the Gaussians per round — until exactly
       ``target`` remain. Pair cost:
       ``"ward"``: ``w_i w_j / (w_i + w_j) * (|mu_i - mu_j|^2 + color_weight * |c_i - c_j|^2 * (A_i + A_j))``
       (Ward's criterion on centres plus a colour term; w = coverage mass, A = area);
       ``"kl"``: the KL divergence from the pair's mixture to the merged Gaussian (Monte-Carlo with ``samples``
       fixed draws; scale-free) plus ``color_weight * |c_i - c_j|^2``.
       ``color``: ``"dc"`` compares the DC coefficients only, ``"all"`` every SH coefficient.
       ``mass``: coverage mass is opacity x ``"projected"`` area (pi s_a s_b of the two largest axes) or x the
       ellipsoid ``"surface"`` area. ``visibility_weight``: the cost is multiplied by the pair's harmonic mean
       significance (score / its median; a merged Gaussian carries the sum), so pairs the views barely see merge
       first — with ``drop_score_fraction=0`` this replaces dropping them. ``opacity_floor``: a merged opacity
       never drops below this fraction of its members' largest (1: an opaque surface stays opaque however far the
       pair spreads; 0: pure mass conservation).

    Returns:
        (scene of ``target`` Gaussians, stats: dropped, rounds).
    """
    from .knn import knn as knn_search
    from .sh_rotation import matrix_to_quat, quat_to_matrix

    if cost not in ("ward", "kl") or mass not in ("projected", "surface") or color not in ("dc", "all"):
        raise ValueError(f"pairwise_merge: bad cost/mass/color {cost!r}/{mass!r}/{color!r}")
    n0 = scene.n
    if target >= n0:
        return scene.copy(), {"dropped": 0, "rounds": 0}
    if drop_score_fraction > 0:
        o = np.sort(score)
        cum = np.cumsum(o) / max(o.sum(), 1e-300)
        thr = o[min(int(np.searchsorted(cum, drop_score_fraction)), n0 - 1)]
        vis = score > thr
    else:
        vis = np.ones(n0, bool)
    if vis.sum() < target:  # never drop below the target: keep the best by score instead
        vis = top_k(score, target / n0)
    s = scene.subset(vis)
    means = s.means.astype(np.float64)
    cov = np.einsum("nij,nj,nkj->nik", quat_to_matrix(s.quats), np.exp(2.0 * s.log_scales.astype(np.float64)),
                    quat_to_matrix(s.quats))
    op = s.opacities.astype(np.float64)

    def area_of(sd_sorted):  # sd ascending [N, 3]
        return np.pi * sd_sorted[:, 2] * sd_sorted[:, 1] if mass == "projected" else _ellipsoid_area(sd_sorted)

    area = area_of(np.sort(np.exp(s.log_scales.astype(np.float64)), axis=1))
    w_mass = op * area
    sh = s.sh.astype(np.float64)
    vis_w = score[vis].astype(np.float64) / max(float(np.median(score[vis])), 1e-30)
    z = np.random.default_rng(0).standard_normal((max(1, samples), 3))
    n = s.n
    rounds = 0
    while n > target:
        rounds += 1
        k = min(knn + 1, n)
        _, nb = knn_search(means, k)  # column 0: the Gaussian itself
        ei = np.repeat(np.arange(n), k - 1)
        ej = nb[:, 1:].ravel()
        if not (ej < n).all():  # NaN/Inf centres have no neighbours (index n): no candidate pairs for them
            ei, ej = ei[ej < n], ej[ej < n]
        c2 = _edge_sq_dist(np.ascontiguousarray(sh[:, 0] if color == "dc" else sh.reshape(n, -1)), ei, ej)
        if cost == "ward":
            wi, wj = w_mass[ei], w_mass[ej]
            h = wi * wj / (wi + wj + 1e-300)
            c = h * (_edge_sq_dist(means, ei, ej) + color_weight * c2 * (area[ei] + area[ej]))
        else:
            chol = _psd_cholesky(cov)
            logdet = 2.0 * np.log(np.abs(np.diagonal(chol, axis1=1, axis2=2))).sum(1)
            kl = _kl_costs(means, chol, logdet, w_mass, ei, ej, z)
            # KL >= 0; the Monte-Carlo estimate can dip below: clamp to a small positive floor (from a 1/64
            # sample), so a pair that looks free still costs more than an invisible pair once scaled by significance
            sample = np.abs(kl[:: 64])
            sample = sample[np.isfinite(sample)]
            floor = 1e-3 * float(np.median(sample)) if sample.size else 1e-12
            c = _finish_kl_costs(kl, c2, float(color_weight), max(floor, 1e-300))
        if visibility_weight:  # pairs the views barely see merge first, whatever their shape
            c = _scale_by_visibility(c, vis_w, ei, ej)
        order = _order_by_cost(c)
        pi, pj = _greedy_pairs(order, ei, ej, n, min(n - target, n // 2 + 1))
        if len(pi) == 0:
            break
        w1, w2 = w_mass[pi], w_mass[pj]
        W = w1 + w2 + 1e-300
        mu = (w1[:, None] * means[pi] + w2[:, None] * means[pj]) / W[:, None]
        d1, d2 = means[pi] - mu, means[pj] - mu
        cm = (w1[:, None, None] * (cov[pi] + d1[:, :, None] * d1[:, None, :])
              + w2[:, None, None] * (cov[pj] + d2[:, :, None] * d2[:, None, :])) / W[:, None, None]
        ev = np.maximum(np.linalg.eigvalsh(cm), 1e-20)
        a_new = area_of(np.sqrt(ev))  # eigvalsh is ascending
        lo = float(opacity_floor) * np.maximum(op[pi], op[pj])
        op_new = np.clip((w1 + w2) / a_new, lo, 0.99)
        means[pi], cov[pi], op[pi], area[pi] = mu, cm, op_new, a_new
        sh[pi] = (w1[:, None, None] * sh[pi] + w2[:, None, None] * sh[pj]) / W[:, None, None]
        w_mass[pi] = op_new * a_new
        keep = np.ones(n, bool)
        keep[pj] = False
        vis_w[pi] = vis_w[pi] + vis_w[pj]
        means, cov, op, area, w_mass, sh = means[keep], cov[keep], op[keep], area[keep], w_mass[keep], sh[keep]
        vis_w = vis_w[keep]
        n = len(means)
    ev, evec = np.linalg.eigh(cov)
    evec[np.linalg.det(evec) < 0, :, 0] *= -1
    out = GaussianScene(means, matrix_to_quat(evec), 0.5 * np.log(np.maximum(ev, 1e-20)), logit(op), sh,
                        meta={**scene.meta, "notes": list(scene.meta.get("notes", []))})
    return out, {"dropped": int(n0 - vis.sum()), "rounds": rounds}
