"""Vector quantisation of higher-order SH: a two-level k-means palette (numba), deterministic for a given seed.

Small problems (P <= 256 or M x P <= 2^26) use one flat k-means. Why two levels otherwise: a flat k-means with P centroids costs N x P distance evaluations per pass; the tree costs
N x (P1 + P/P1) with P1 ~ sqrt(P) coarse cells, so P = 16384 costs ~256 evaluations per vector instead of 16384.
Training runs on a seeded subsample (``sample_per_centroid`` vectors per centroid; the coarse level on
:data:`COARSE_SAMPLE` vectors per cell); every vector is then assigned
once (coarse cell, then the nearest centroid inside the ``probes`` nearest coarse cells) and the centroids are
re-estimated once from all their members.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(1000, 9)).astype(np.float32)
>>> pal, lab = kmeans_palette(x, 64)
>>> pal.shape, lab.shape, int(lab.max()) < 64
((64, 9), (1000,), True)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._machine import guarded

__all__ = ["kmeans_palette", "default_palette_size"]

#: Largest palette :func:`default_palette_size` picks.
DEFAULT_MAX_SIZE = 16384
#: Training rows per coarse cell for the coarse k-means.
COARSE_SAMPLE = 64
#: k-means++ seeding of a cell looks at no more than this many rows per centroid.
SEED_ROWS_PER_CENTROID = 4
#: Palettes up to this size, or problems with M x P up to FLAT_MAX_WORK, use one flat k-means.
FLAT_MAX_SIZE = 256
FLAT_MAX_WORK = 1 << 26


def default_palette_size(m: int) -> int:
    """Palette size for ``m`` full-SH vectors: the power of two nearest to m / 16, clamped to [256, 16384] and
    never above m (so a tiny scene stores its vectors nearly exactly). Larger palettes (up to 65536) are an
    option; they cost encode time (docs/FORMAT.md, BENCHMARKS.md)."""
    if m <= 0:
        return 0
    p = 2 ** int(round(math.log2(max(m / 16.0, 1.0))))
    return int(min(max(p, 256), DEFAULT_MAX_SIZE, m))


# ----------------------------------------------------------------------------------------------- kernels


@njit(cache=True, fastmath=True)
def _sqnorms(c):  # c [k, D] f32 -> [k] f32
    k, d = c.shape
    out = np.empty(k, np.float32)
    for j in range(k):
        s = np.float32(0.0)
        for t in range(d):
            s += c[j, t] * c[j, t]
        out[j] = s
    return out


@guarded
@njit(parallel=True, cache=True, fastmath=True)
def _assign(x, c, out):
    """out[i] = argmin_j |x_i - c_j|^2 (ties: lowest j). x [n, D], c [k, D] f32; out int32 [n]."""
    n, d = x.shape
    k = c.shape[0]
    cn = _sqnorms(c)
    for i in prange(n):
        best = np.inf
        bj = 0
        for j in range(k):
            s = np.float32(0.0)
            for t in range(d):
                s += x[i, t] * c[j, t]
            dd = cn[j] - 2.0 * s
            if dd < best:
                best = dd
                bj = j
        out[i] = bj


@guarded
@njit(parallel=True, cache=True, fastmath=True)
def _assign_top2(x, c, out1, out2):
    """The two nearest centroids of every row (out2 = out1 when k == 1)."""
    n, d = x.shape
    k = c.shape[0]
    cn = _sqnorms(c)
    for i in prange(n):
        b1 = np.inf
        b2 = np.inf
        j1 = 0
        j2 = 0
        for j in range(k):
            s = np.float32(0.0)
            for t in range(d):
                s += x[i, t] * c[j, t]
            dd = cn[j] - 2.0 * s
            if dd < b1:
                b2 = b1
                j2 = j1
                b1 = dd
                j1 = j
            elif dd < b2:
                b2 = dd
                j2 = j
        out1[i] = j1
        out2[i] = j2 if k > 1 else j1


@njit(cache=True)
def _update(x, lab, c):
    """Lloyd update in place: c[j] = mean of the rows labelled j; an empty centroid takes the row farthest from
    its centroid (deterministic: the first such row). Sequential float64 sums, so the result does not depend on
    the thread count."""
    n, d = x.shape
    k = c.shape[0]
    acc = np.zeros((k, d), np.float64)
    cnt = np.zeros(k, np.int64)
    for i in range(n):
        j = lab[i]
        cnt[j] += 1
        for t in range(d):
            acc[j, t] += x[i, t]
    empty = 0
    for j in range(k):
        if cnt[j] > 0:
            for t in range(d):
                c[j, t] = np.float32(acc[j, t] / cnt[j])
        else:
            empty += 1
    if empty > 0 and n > 0:
        # farthest rows, one per empty centroid
        err = np.empty(n, np.float32)
        for i in range(n):
            j = lab[i]
            s = np.float32(0.0)
            for t in range(d):
                diff = x[i, t] - c[j, t]
                s += diff * diff
            err[i] = s
        order = np.argsort(-err, kind="mergesort")
        r = 0
        for j in range(k):
            if cnt[j] == 0 and r < n:
                for t in range(d):
                    c[j, t] = x[order[r], t]
                r += 1


@njit(cache=True, fastmath=True)
def _assign_seq(x, c, out):
    n, d = x.shape
    k = c.shape[0]
    cn = _sqnorms(c)
    for i in range(n):
        best = np.inf
        bj = 0
        for j in range(k):
            s = np.float32(0.0)
            for t in range(d):
                s += x[i, t] * c[j, t]
            dd = cn[j] - 2.0 * s
            if dd < best:
                best = dd
                bj = j
        out[i] = bj


@njit(cache=True, fastmath=True)
def _kmeanspp(x, out, u):
    """k-means++ seeding (D^2 sampling) of out [k, D] from rows x [n, D] with the uniforms u [k] in [0, 1)
    (deterministic given u). The first centroid is row floor(u[0] n)."""
    n, d = x.shape
    k = out.shape[0]
    first = min(int(u[0] * n), n - 1)
    dist = np.empty(n, np.float64)
    for t in range(d):
        out[0, t] = x[first, t]
    for i in range(n):
        s = np.float32(0.0)
        for t in range(d):
            diff = x[i, t] - out[0, t]
            s += diff * diff
        dist[i] = s
    for j in range(1, k):
        total = 0.0
        for i in range(n):
            total += dist[i]
        pick = n - 1
        if total > 0.0:
            r = u[j] * total
            acc = 0.0
            for i in range(n):
                acc += dist[i]
                if acc > r:
                    pick = i
                    break
        else:
            pick = min(int(u[j] * n), n - 1)
        for t in range(d):
            out[j, t] = x[pick, t]
        for i in range(n):
            s = np.float32(0.0)
            for t in range(d):
                diff = x[i, t] - out[j, t]
                s += diff * diff
            if s < dist[i]:
                dist[i] = s


@guarded
@njit(parallel=True, cache=True)
def _cells_lloyd(xs, cell_start, k_start, iters, cent, u):
    """Per coarse cell c (rows xs[cell_start[c]:cell_start[c+1]], sorted by cell): k-means++ seeding of the
    centroids cent[k_start[c]:k_start[c+1]] with the uniforms u[k_start[c]:...], then ``iters`` Lloyd passes."""
    ncell = cell_start.shape[0] - 1
    for c in prange(ncell):
        a, b = cell_start[c], cell_start[c + 1]
        ka, kb = k_start[c], k_start[c + 1]
        if b <= a or kb <= ka:
            continue
        x = xs[a:b]
        cc = cent[ka:kb]
        # seed from at most SEED_ROWS_PER_CENTROID rows per centroid, evenly strided through the cell
        stride = max(1, (b - a) // (SEED_ROWS_PER_CENTROID * (kb - ka)))
        _kmeanspp(x[::stride], cc, u[ka:kb])
        lab = np.empty(b - a, np.int32)
        for _ in range(iters):
            _assign_seq(x, cc, lab)
            _update(x, lab, cc)


@njit(cache=True)
def _cell_sse(x, lab, c):
    """float64 [k]: sum of squared distances of the rows to their centroid, per centroid."""
    n, d = x.shape
    out = np.zeros(c.shape[0], np.float64)
    for i in range(n):
        j = lab[i]
        s = 0.0
        for t in range(d):
            diff = x[i, t] - c[j, t]
            s += diff * diff
        out[j] += s
    return out


@guarded
@njit(parallel=True, cache=True, fastmath=True)
def _assign_fine(x, cand, k_start, cent, out):
    """For every row i, the nearest centroid among the cells cand[i, :] (each cell c owns cent[k_start[c]:
    k_start[c+1]]); out int32 [n] global centroid index."""
    n, d = x.shape
    nc = cand.shape[1]
    cn = _sqnorms(cent)
    for i in prange(n):
        best = np.inf
        bj = 0
        for p in range(nc):
            c = cand[i, p]
            for j in range(k_start[c], k_start[c + 1]):
                s = np.float32(0.0)
                for t in range(d):
                    s += x[i, t] * cent[j, t]
                dd = cn[j] - 2.0 * s
                if dd < best:
                    best = dd
                    bj = j
        out[i] = bj


# ----------------------------------------------------------------------------------------------- driver


def _allocate(counts: np.ndarray, total: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Split ``total`` centroids over cells proportionally to ``weights`` (default ``counts``; largest
    remainder, ties by index), at least one per non-empty cell and never more than a cell's count;
    int64 [ncell]."""
    counts = counts.astype(np.int64)
    total = int(min(total, counts.sum()))
    if total == 0:
        return np.zeros_like(counts)
    w = counts.astype(np.float64) if weights is None else np.where(counts > 0, weights, 0.0).astype(np.float64)
    if not w.sum() > 0:
        w = counts.astype(np.float64)
    share = np.minimum(w * (total / w.sum()), counts)
    # capped cells free centroids: hand them to the others in proportion (a few rounds suffice)
    for _ in range(8):
        spare = total - share.sum()
        room = (share < counts) & (w > 0)
        if spare <= 1e-9 or not room.any():
            break
        share = np.minimum(share + spare * w * room / (w * room).sum(), counts)
    k = np.minimum(np.floor(share).astype(np.int64), counts)
    k = np.where((counts > 0) & (k == 0), 1, k)
    while k.sum() > total:  # the "at least one" rule overshot: take from the largest allocations
        j = int(np.argmax(k))
        k[j] -= 1
    rem = share - k
    order = np.lexsort((np.arange(len(k)), -rem))  # largest remainder first, then lowest index
    i = 0
    while k.sum() < total:
        j = order[i % len(order)]
        if k[j] < counts[j]:
            k[j] += 1
        i += 1
    return k


def kmeans_palette(
    x: np.ndarray,
    size: int,
    *,
    iterations: int = 6,
    sample_per_centroid: int = 8,
    probes: int = 2,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of ``x`` into a palette of at most ``size`` centroids.

    Args:
        x: float32 [M, D] vectors (for SH: the 3(K-1) higher coefficients of each Gaussian).
        size: palette size P >= 1 (fewer centroids when M < P).
        iterations: Lloyd passes of the coarse and of the per-cell k-means (on the training sample).
        sample_per_centroid: training sample = min(M, P x this) rows, drawn with ``seed``.
        probes: coarse cells searched per vector in the final assignment (1 or 2).
        seed: seed of the subsample and initialisation (same input + seed -> same output).

    Returns:
        (palette float32 [P', D], labels int32 [M]) with P' <= min(P, M) and every label < P'. Rows that are
        exactly zero, when there are others too, share an exact zero entry 0.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    m, d = x.shape
    if size < 1:
        raise ValueError(f"palette size must be >= 1, got {size}")
    if m == 0:
        return np.zeros((0, d), np.float32), np.zeros(0, np.int32)
    if m <= size:
        return x.copy(), np.arange(m, dtype=np.int32)
    zero = ~x.any(axis=1)
    nz = int(zero.sum())
    if 0 < nz < m and size >= 2:
        # rows that are exactly zero (Gaussians whose higher SH was cut) get an exact entry 0 of their own: they
        # decode to zero, and the k-means runs on the other rows only (a cell mixing a mass of identical zero rows
        # with a few others took most of the centroids and cost seconds per call)
        pal, lab = kmeans_palette(
            x[~zero],
            size - 1,
            iterations=iterations,
            sample_per_centroid=sample_per_centroid,
            probes=probes,
            seed=seed,
        )
        labels = np.zeros(m, np.int32)
        labels[~zero] = lab + 1
        return np.concatenate([np.zeros((1, d), np.float32), pal]), labels
    p = int(size)
    rng = np.random.default_rng(seed)
    ns = int(min(m, max(p * sample_per_centroid, 4096)))
    sample_idx = np.sort(rng.choice(m, ns, replace=False)) if ns < m else np.arange(m)
    xs = x[sample_idx]

    if p <= FLAT_MAX_SIZE or m * p <= FLAT_MAX_WORK:
        # small problem: one flat k-means (k-means++ seeding, Lloyd on the sample, then all rows)
        cent = np.empty((p, d), np.float32)
        _kmeanspp(xs, cent, rng.random(p))
        lab = np.empty(ns, np.int32)
        for _ in range(iterations):
            _assign(xs, cent, lab)
            _update(xs, lab, cent)
        labels = np.empty(m, np.int32)
        _assign(x, cent, labels)
        _update(x, labels, cent)
        return cent, labels

    # coarse level: P1 ~ sqrt(P) cells, Lloyd on a smaller subsample (COARSE_SAMPLE rows per cell), then the
    # whole training sample is assigned to the cells once
    p1 = int(max(1, min(round(math.sqrt(p)), ns)))
    nc = int(min(ns, p1 * COARSE_SAMPLE))
    xc = xs[np.sort(rng.choice(ns, nc, replace=False))] if nc < ns else xs
    coarse = np.empty((p1, d), np.float32)
    _kmeanspp(xc, coarse, rng.random(p1))
    lab = np.empty(nc, np.int32)
    for _ in range(iterations):
        _assign(xc, coarse, lab)
        _update(xc, lab, coarse)
    lab = np.empty(ns, np.int32)
    _assign(xs, coarse, lab)

    # fine level: per cell, centroids in proportion to SSE^(D/(D+2)) (the high-rate optimal split of a
    # distortion budget), k-means++ seeded, Lloyd passes on the cell's share of the sample
    order = np.argsort(lab, kind="stable")
    xs_sorted = np.ascontiguousarray(xs[order])
    counts = np.bincount(lab, minlength=p1)
    sse = _cell_sse(xs, lab, coarse)
    kc = _allocate(counts, p, sse ** (d / (d + 2.0)))
    cell_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    k_start = np.concatenate([[0], np.cumsum(kc)]).astype(np.int64)
    cent = np.empty((int(k_start[-1]), d), np.float32)
    _cells_lloyd(xs_sorted, cell_start, k_start, iterations, cent, rng.random(int(k_start[-1])))

    # final: assign every row through its `probes` nearest coarse cells, then one update from all rows
    if probes >= 2 and p1 > 1:
        c1 = np.empty(m, np.int32)
        c2 = np.empty(m, np.int32)
        _assign_top2(x, coarse, c1, c2)
        cand = np.stack([c1, c2], axis=1)
    else:
        c1 = np.empty(m, np.int32)
        _assign(x, coarse, c1)
        cand = c1[:, None].copy()
    labels = np.empty(m, np.int32)
    _assign_fine(x, cand, k_start, cent, labels)
    _update(x, labels, cent)
    return cent, labels
