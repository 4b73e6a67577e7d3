"""Which Gaussians survive: the global top-k by score, or voxel-based sampling with a retention ratio rho.

:func:`voxel_sample`: in every occupied voxel V keep the top ``floor(|V| * rho)`` by score; a voxel whose total score
reaches the global keep threshold keeps at least one (thin structure survives); then the global budget
:func:`keep_count` is met exactly: unfilled places go to the highest-scoring unkept Gaussians anywhere, an overshoot
drops the lowest-scoring extra keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def keep_count(n: int, ratio: float) -> int:
    """The survivor budget for ``n`` Gaussians at retention ``ratio``: ``round(ratio * n)``, but at least 1 for a
    non-empty scene (a tiny scene at a small ratio keeps one Gaussian, never silently none)."""
    return max(1, int(round(ratio * n))) if n else 0


def top_k(score: np.ndarray, ratio: float) -> np.ndarray:
    """bool [N]: the global top :func:`keep_count` by ``score`` [N] (ties: lower index first)."""
    n = len(score)
    k = keep_count(n, ratio)
    keep = np.zeros(n, bool)
    keep[np.argsort(-score, kind="stable")[:k]] = True
    return keep


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


def voxel_sample(
    means: np.ndarray,
    score: np.ndarray,
    ratio: float,
    *,
    voxel_size: float | None = None,
    per_voxel: float | None = None,
) -> SampleResult:
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
