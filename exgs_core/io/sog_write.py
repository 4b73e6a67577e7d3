"""Writer for PlayCanvas SOG version 2 (Spatially Ordered Gaussians), the layout splat-transform 3.10.2 writes.

A ``.sog`` bundle is a zip archive (stored, not deflated: the textures are lossless WebP already) holding the
textures below and ``meta.json`` (written last). :mod:`exgs_core.io.sog` documents the layout it decodes; this
module writes the same layout, texel for texel. Gaussian i is texel i (row-major) of every per-Gaussian texture;
the textures are ``W x H`` with ``W = 4 ceil(sqrt(N) / 4)`` and ``H = 4 ceil(N / W / 4)`` (as splat-transform), the
texels past N are (0, 0, 0, 0).

Gaussians are written in Morton (Z-curve) order of their centres (21 bits per axis over the scene's bounding
box; splat-transform uses 10 bits and refines buckets of more than 256): neighbouring texels hold neighbouring
Gaussians, which is what makes the textures compress. The order of the Gaussians is therefore not kept.

Quantisation (N Gaussians, K = (d + 1)^2 SH coefficients per channel, P palette entries)
---------------------------------------------------------------------------------------

================== ===================================== ======================= ====================================
attribute          stored as                             bits per Gaussian       error bound (decoded vs written)
================== ===================================== ======================= ====================================
means [N, 3]       l = sign(x) ln(1 + |x|) per axis,     48 (``means_l`` low and ``|l' - l| <= (max l - min l) / 131070``;
                   16-bit unorm over [min l, max l]      ``means_u`` high bytes) ``|x' - x| <= (1 + |x|) (exp(that) - 1)``
                   (``means.mins`` / ``maxs``), rounded                          (relative ~ span / 131070 far from 0)
quats [N, 4]       the three smaller components of the   32 (r, g, b = 8 bits    the three stored components within
                   unit quaternion (sign chosen so the   each, a = 252 +         d = 1 / (255 sqrt 2) = 0.0028 (half
                   largest is >= 0) times sqrt 2, as     index of the largest)   a step), the recomputed largest
                   unorm bytes, rounded                                          within 3 d; rotation angle <= 1.1
                                                                                 degrees (measured max 1.03 over
                                                                                 5 x 10^6 rotations, near-ties too);
                                                                                 the byte grid has no 0: a zero
                                                                                 component decodes as +-0.0028
log_scales [N, 3]  labels into one 256-entry codebook    24                      the distance to the nearest codebook
                   (``scales.codebook``, shared by x, y,                         entry: 0 when the values hold <= 256
                   z), fitted by :func:`quantize_1d`                             distinct numbers (SPZ / SOG
                   with the entries spread over the                              sources); else RMS 0.09-0.11 % and
                   occupied range                                                max 0.4-0.5 % of the value span
                                                                                 (measured on 4 real scenes)
sh DC [N, 3]       labels into one 256-entry codebook    24                      as log_scales: 0 for <= 256 distinct
                   (``sh0.codebook``, shared by r, g,                            values, else RMS 0.03-0.08 % and
                   b), :func:`quantize_1d` fitted to                             max 0.6-2.1 % of the span (the
                   squared error                                                 largest on rare bright outliers)
opacity [N]        ``round(255 sigmoid(logit))``, the    8                       ``|sigmoid' - sigmoid| <= 1 / 510``;
                   ``sh0`` alpha                                                 decoded logits lie in +-13.8155
                                                                                 (``logit(1 - 1e-6)``): logits beyond
                                                                                 are counted as clamped
                                                                                 (``report.clamped["opacity_logits"]``)
SH rest            a palette of P vectors of 3 (K - 1)   16 (label: r + 256 g)   the k-means error of the palette
[N, K - 1, 3]      coefficients (k-means,                + palette, 8 per        (data-dependent: none when P >= N)
(degree >= 1)      :func:`exgs_core.codec.palette.       coefficient, shared     plus the distance to the nearest
                   kmeans_palette`); each palette        by all Gaussians        ``shN.codebook`` entry (256 entries
                   coefficient a label into one                                  over all palette coefficients,
                   256-entry codebook                                            :func:`quantize_1d`)
================== ===================================== ======================= ====================================

Rounding: the bytes are rounded to nearest (splat-transform truncates means, quaternion and opacity bytes; the
decode is the same, so our files decode with half its worst-case error). No other field can fall outside what SOG
holds: the means grid and the codebooks are fitted to the data, so ``report.clamped`` only ever counts opacity
logits.

Palette size: P = min(65536, 2^floor(log2 N)), the size splat-transform picks
(``min(64, 2^floor(log2(N / 1024))) * 1024``); ``palette_size=`` overrides it (1..65536).

Axes: SOG stores the axes of a 3DGS PLY (splat-transform bakes its sources to PLY space before writing, and its
SOG reader returns them unchanged), so a scene in PLY axes is written as is; a scene decoded from SPZ in SPZ's
stored right-up-back axes is turned first (:func:`exgs_core.io.spz.to_ply_axes`, noted in the report), as
:func:`exgs_core.io.encode_as` does for every format. splat-transform does not turn SPZ (it reads SPZ as PLY-space
data), so ``splat-transform in.spz out.sog`` and this writer differ by 180 degrees about x on SPZ input; from PLY
input both write the same axes (checked in tests/test_io_sog_write.py).

``meta.json`` holds exactly the fields splat-transform 3.10.2 writes, in its order: ``version`` (2), ``asset``
(``generator``: exgs), ``count``, ``model`` (only ``"antialiased"``, from ``scene.antialiased``), ``means``
(``mins``, ``maxs``, ``files``), ``scales`` (``codebook``, ``files``), ``quats`` (``files``), ``sh0``
(``codebook``, ``files``) and, for SH degree >= 1, ``shN`` (``count``, ``bands``, ``codebook``, ``files``).

Determinism: the same scene and options give the same bytes (seeded k-means, fixed zip timestamps
1980-01-01 00:00, fixed member order and attributes, Pillow's lossless WebP encoder is deterministic).
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..conventions import sh_coeff_count
from ..errors import SceneError
from ..scene import GaussianScene
from .writing import WriteReport, prepare

__all__ = [
    "encode_sog",
    "encode_sog_members",
    "write_sog",
    "quantize_1d",
    "default_palette_size",
    "sog_texture_shape",
    "sog_order",
    "OPACITY_LOGIT_MAX",
]

#: WebP's largest image side.
MAX_TEXTURE_SIDE = 16383
#: The largest palette SOG's 16-bit labels address.
MAX_PALETTE = 65536
#: Decoded opacity logits lie in [-this, this]: the reader turns bytes 0 and 255 into logit(1e-6), logit(1 - 1e-6).
OPACITY_LOGIT_MAX = math.log((1.0 - 1e-6) / 1e-6)
#: Zip timestamp of every member (the earliest a zip can hold), for deterministic bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
# Components stored in r, g, b for each index of the largest component (w, x, y, z order), as the reader expects.
_QUAT_SLOTS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
_MORTON_BITS = 21
#: Threads encoding textures while the rest of the bundle is computed.
_WEBP_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Histogram bins the 1-D codebook fit works on.
_CODEBOOK_BINS = 4096
#: :func:`quantize_1d` options per codebook, (rank_blend, alpha). Scales and SH rest: entries spread evenly over the
#: occupied range (the few largest Gaussians and strongest SH matter most on screen); DC: squared error on half
#: rank-placed bins (bright outliers clip at white anyway). Chosen by render PSNR per attribute and bundle size on
#: five scenes (four real, one synthetic; scripts/bench_sog_write.py and the issue notes).
_CODEBOOK_FIT = {"scales": (0.05, 0.0), "sh0": (0.5, 1.0), "shN": (0.05, 0.0)}
#: Values the 1-D codebook fit sorts at most (a seeded subsample beyond).
_CODEBOOK_SAMPLE = 1 << 20


# ============================================================================================= sizes and options
def sog_texture_shape(n: int) -> tuple[int, int]:
    """(width, height) of the per-Gaussian textures for ``n`` Gaussians, as splat-transform sizes them: width
    ``4 ceil(sqrt(n) / 4)``, height ``4 ceil(n / width / 4)`` (at least 4 x 4)."""
    w = max(4, int(math.ceil(math.sqrt(n) / 4)) * 4)
    h = max(4, -(-n // (w * 4)) * 4)
    return w, h


def default_palette_size(n: int) -> int:
    """The shN palette size splat-transform 3.10.2 picks for ``n`` Gaussians: ``min(64, 2^floor(log2(n / 1024)))
    * 1024``, i.e. the largest power of two <= n, at most 65536 (0 for n = 0)."""
    if n <= 0:
        return 0
    return min(MAX_PALETTE, 1 << (int(n).bit_length() - 1))


# ============================================================================================= 1-D codebooks
def quantize_1d(
    values: np.ndarray,
    k: int = 256,
    *,
    alpha: float = 0.0,
    rank_blend: float = 0.05,
    seed: int = 0,
    iterations: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """A ``k``-entry codebook for the 1-D ``values`` and each value's label (nearest entry).

    When the values hold at most ``k`` distinct numbers the codebook is exactly those (lossless). Otherwise the
    sorted values (a seeded subsample of 2^20 when there are more) are put into 4096 histogram bins placed by value
    and, with weight ``rank_blend``, by rank (a little rank weight keeps a few wild outliers from squeezing the bulk
    into one bin); each occupied bin, weighted by count^``alpha``, is a point of a weighted squared-error fit:
    greedy splitting (the cell whose exact best split lowers the error most, until ``k`` cells: sparse tails with a
    wide spread get their entries) polished by Lloyd passes. Every entry is then replaced by the mean of the values
    it labels and the labels are assigned again (nearest entry).

    ``alpha`` = 0 spreads the entries evenly over the occupied range, so the tails keep as much precision as the
    bulk; ``alpha`` = 1 with ``rank_blend`` = 0.5 is close to a plain squared-error fit.

    Args:
        values: finite float [M] (any shape; flattened).
        k: codebook size, 1..256.
        alpha: bin weight exponent in [0, 1] (0 = every occupied bin alike, 1 = the bin's count).
        rank_blend: weight of the rank against the value in placing the bins, in [0, 1].
        seed: seed of the subsample (only used when M > 2^20).
        iterations: at most this many Lloyd passes on the histogram.

    Returns:
        (codebook float32 [k] ascending, padded with its last entry when fewer are needed; labels uint8 [M]).
    """
    if not 1 <= k <= 256:
        raise ValueError(f"codebook size must be 1..256, got {k}")
    v = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    m = v.size
    if m == 0:
        return np.zeros(k, np.float32), np.zeros(0, np.uint8)
    sampled = m > _CODEBOOK_SAMPLE
    s = np.sort(v[np.random.default_rng(seed).integers(0, m, _CODEBOOK_SAMPLE)] if sampled else v)
    step = np.flatnonzero(s[1:] != s[:-1])
    lab = None
    if step.size + 1 <= k:  # few distinct values: the codebook is those values
        cb = np.concatenate([s[step], s[-1:]]).astype(np.float32)
        lab = _nearest(cb, v)
        if sampled and not np.array_equal(cb[lab], v):  # the subsample missed a value: fit instead
            lab = None
    if lab is None:
        cb = _fit_1d(s.astype(np.float64), k, alpha, rank_blend, iterations).astype(np.float32)
        # entries = the mean of the values they label (the squared-error optimum for those cells), labels again
        lab = _nearest(cb, v)
        cnt = np.bincount(lab, minlength=cb.size)
        tot = np.bincount(lab, weights=v, minlength=cb.size)
        used = cnt > 0
        cb = np.unique((tot[used] / cnt[used]).astype(np.float32))
        lab = _nearest(cb, v)
    out = np.full(k, cb[-1], np.float32)
    out[: cb.size] = cb
    return out, lab.astype(np.uint8)


def _codebook(which: str, values: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    blend, alpha = _CODEBOOK_FIT[which]
    return quantize_1d(values, 256, alpha=alpha, rank_blend=blend, seed=seed)


#: Cells of the lookup grid :func:`_nearest` labels most values with.
_LUT_CELLS = 1 << 16


def _nearest(cb: np.ndarray, v: np.ndarray) -> np.ndarray:
    """int64 [M]: index of the nearest entry of the ascending ``cb`` [k] for each of the float32 ``v`` [M] (ties: the
    lower; float64 comparisons). A grid of 65536 cells over [min v, max v] gives the label of every value whose cell
    and its two neighbours hold no decision boundary; the values near a boundary are binary-searched."""
    if cb.size == 1:
        return np.zeros(v.size, np.int64)
    c = cb.astype(np.float64)
    mids = (c[:-1] + c[1:]) * 0.5
    lo, hi = float(v.min()), float(v.max())
    if not hi > lo or v.size < 4 * _LUT_CELLS:
        return np.searchsorted(mids, v.astype(np.float64), side="left")
    g = _LUT_CELLS
    scale = g / (hi - lo)
    at_edge = np.searchsorted(mids, lo + np.arange(g + 1, dtype=np.float64) / scale, side="left")
    # float32 cell index: off by far less than one cell, hence the one-cell margin on either side
    cell = np.clip(((v - np.float32(lo)) * np.float32(scale)).astype(np.int64), 0, g - 1)
    lab = at_edge[np.maximum(cell - 1, 0)]
    near = np.flatnonzero(lab != at_edge[np.minimum(cell + 2, g)])
    lab[near] = np.searchsorted(mids, v[near].astype(np.float64), side="left")
    return lab


def _fit_1d(s: np.ndarray, k: int, alpha: float, rank_blend: float, iterations: int) -> np.ndarray:
    """Ascending codebook (<= k entries, float64) for the sorted float64 sample ``s``: histogram bins, then the
    weighted squared error of the bin centres minimised by greedy splitting (each step splits the cell whose best
    split lowers the error most, exact per cell via prefix sums; sparse tails with large spread get entries), then
    Lloyd passes."""
    import heapq

    n = s.size
    lo, hi = s[0], s[-1]
    h = min(_CODEBOOK_BINS, n)
    pos = rank_blend * (np.arange(n) / n) + (1.0 - rank_blend) * ((s - lo) / (hi - lo))
    b = np.minimum((pos * h).astype(np.int64), h - 1)
    cnt = np.bincount(b, minlength=h)
    tot = np.bincount(b, weights=s, minlength=h)
    keep = cnt > 0
    x = tot[keep] / cnt[keep]  # bin centres, ascending
    if x.size <= k:
        return np.unique(x)
    w = cnt[keep].astype(np.float64) ** alpha
    mu = float(x.mean())
    x = x - mu  # centred: the prefix sums of w x^2 stay well conditioned
    pw = np.concatenate([[0.0], np.cumsum(w)])
    px = np.concatenate([[0.0], np.cumsum(w * x)])
    pxx = np.concatenate([[0.0], np.cumsum(w * x * x)])

    def cost(a, e):  # weighted SSE of the bins a .. e - 1 about their weighted mean (arrays or ints)
        sw = pw[e] - pw[a]
        sx = px[e] - px[a]
        return (pxx[e] - pxx[a]) - sx * sx / np.where(sw > 0, sw, 1.0)

    def best_split(a, e):  # (gain, split point) of the cell [a, e)
        if e - a < 2:
            return 0.0, a
        t = np.arange(a + 1, e)
        gains = cost(a, e) - cost(a, t) - cost(t, e)
        j = int(np.argmax(gains))
        return float(gains[j]), int(t[j])

    heap = []
    g, t = best_split(0, x.size)
    heap.append((-g, 0, x.size, t))
    cells = 1
    while cells < k and heap and heap[0][0] < 0:
        _, a, e, t = heapq.heappop(heap)
        for aa, ee in ((a, t), (t, e)):
            g, tt = best_split(aa, ee)
            heapq.heappush(heap, (-g, aa, ee, tt))
        cells += 1
    bounds = sorted([(a, e) for _, a, e, _ in heap])
    starts = np.array([a for a, _ in bounds])
    ends = np.array([e for _, e in bounds])
    c = (px[ends] - px[starts]) / (pw[ends] - pw[starts])
    for _ in range(iterations):  # Lloyd polish: never raises the error, stops when entries would merge
        lab = np.searchsorted((c[:-1] + c[1:]) * 0.5, x, side="left")
        ws = np.bincount(lab, weights=w, minlength=c.size)
        if (ws <= 0).any():
            break
        new = np.bincount(lab, weights=w * x, minlength=c.size) / ws
        if np.array_equal(new, c):
            break
        c = new
    return np.unique(c + mu)


# ============================================================================================= textures
def sog_order(scene: GaussianScene) -> np.ndarray:
    """int64 [N]: the order :func:`encode_sog` writes the Gaussians in (texel i holds Gaussian ``order[i]``): Morton
    order of the centres (in PLY axes, :func:`exgs_core.io.spz.to_ply_axes`) over their bounding box, 21 bits per
    axis, ties in input order."""
    from .spz import to_ply_axes

    return _morton_order(to_ply_axes(scene).means) if scene.n else np.zeros(0, np.int64)


def _morton_order(means: np.ndarray) -> np.ndarray:
    """int64 [N] permutation putting the centres [N, 3] in Morton order over their bounding box (stable)."""
    from ..codec import morton

    m = means.astype(np.float64)
    lo = m.min(axis=0)
    span = m.max(axis=0) - lo
    scale = np.where(span > 0, ((1 << _MORTON_BITS) - 1) / np.where(span > 0, span, 1.0), 0.0)
    q = np.minimum(((m - lo) * scale).astype(np.uint32), (1 << _MORTON_BITS) - 1)
    return morton.order(morton.encode(q))


def _encode_means(means: np.ndarray) -> tuple[np.ndarray, list[float], list[float]]:
    """(uint16 [N, 3] grid values, mins [3], maxs [3]) of the log-transformed centres."""
    m = means.astype(np.float64)
    ln = np.sign(m) * np.log1p(np.abs(m))
    mins = ln.min(axis=0)
    maxs = ln.max(axis=0)
    span = maxs - mins
    u = (ln - mins) * (65535.0 / np.where(span > 0, span, 1.0))
    u = np.clip(np.rint(u), 0, 65535).astype(np.uint16)
    return u, [float(x) for x in mins], [float(x) for x in maxs]


def _encode_quats(quats: np.ndarray) -> np.ndarray:
    """uint8 [N, 4]: the three smaller components of the unit quaternion (w, x, y, z), sign chosen so the largest is
    >= 0, times sqrt 2, as rounded unorm bytes; alpha = 252 + index of the largest."""
    q = quats.astype(np.float64)
    largest = np.argmax(np.abs(q), axis=1)
    big = np.take_along_axis(q, largest[:, None], axis=1)[:, 0]
    # scale: 1 / norm, sign of the largest, sqrt 2 (the smaller components of a unit quaternion are <= 1 / sqrt 2)
    f = np.copysign(math.sqrt(2.0) / np.sqrt(np.einsum("ij,ij->i", q, q)), big)
    small = np.take_along_axis(q, _QUAT_SLOTS[largest], axis=1) * f[:, None]  # [N, 3] in [-1, 1]
    out = np.empty((q.shape[0], 4), np.uint8)
    out[:, :3] = np.clip(np.rint(small * 127.5 + 127.5), 0, 255)
    out[:, 3] = 252 + largest
    return out


def _opacity_bytes(logits: np.ndarray) -> np.ndarray:
    """uint8 [N] = round(255 sigmoid(logit))."""
    x = logits.astype(np.float64)
    p = 0.5 * (1.0 + np.tanh(0.5 * x))  # sigmoid without overflow
    return np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)


def _webp(rgba: np.ndarray, quality: int, method: int) -> bytes:
    """Lossless WebP of the uint8 [H, W, 4] image; ``exact`` keeps the colour of transparent texels (the sh0 alpha is
    the opacity, and a fully transparent texel still holds codebook labels)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        buf, format="WEBP", lossless=True, quality=quality, method=method, exact=True
    )
    return buf.getvalue()


def _texture(n: int, w: int, h: int, cols: list[np.ndarray | int], alpha: np.ndarray | int) -> np.ndarray:
    """uint8 [h, w, 4] with texel i < n = (cols[0][i], cols[1][i], cols[2][i], alpha[i]); a constant in place of an
    array [n] fills that channel. Texels past n stay (0, 0, 0, 0)."""
    t = np.zeros((h * w, 4), np.uint8)
    for c, col in enumerate(cols):
        t[:n, c] = col
    t[:n, 3] = alpha
    return t.reshape(h, w, 4)


# ============================================================================================= encoder
def _check_options(sh_degree, palette_size, iterations, webp_quality, webp_method):
    if sh_degree is not None and (isinstance(sh_degree, bool) or sh_degree not in (0, 1, 2, 3)):
        raise ValueError(f"sh_degree must be 0..3 or None, got {sh_degree!r}")
    if palette_size is not None and (isinstance(palette_size, bool) or not isinstance(palette_size, (int, np.integer))):
        raise ValueError(f"palette_size must be an integer 1..{MAX_PALETTE} or None, got {palette_size!r}")
    if palette_size is not None and not 1 <= palette_size <= MAX_PALETTE:
        raise ValueError(f"palette_size must be 1..{MAX_PALETTE} (16-bit labels), got {palette_size}")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    if not 0 <= webp_quality <= 100:
        raise ValueError(f"webp_quality must be 0..100, got {webp_quality!r}")
    if webp_method not in range(7):
        raise ValueError(f"webp_method must be 0..6, got {webp_method!r}")


def encode_sog_members(
    scene: GaussianScene,
    *,
    sh_degree: int | None = None,
    palette_size: int | None = None,
    iterations: int = 6,
    seed: int = 0,
    webp_quality: int = 50,
    webp_method: int = 2,
    report: WriteReport | None = None,
) -> tuple[dict[str, bytes], WriteReport]:
    """The files of a SOG bundle, in the order they are written (textures, then ``meta.json``).

    Args:
        scene: the scene (N Gaussians; checked with :func:`exgs_core.io.writing.prepare`: NaN/Inf or zero rotations
            raise :class:`SceneError`).
        sh_degree: SH degree written, 0..the scene's (default: the scene's); lower cuts the higher bands.
        palette_size: shN palette entries (1..65536; default :func:`default_palette_size`, as splat-transform).
        iterations: Lloyd passes of the SH k-means on its training sample (:func:`exgs_core.codec.palette.
            kmeans_palette`; every Gaussian is then assigned once). splat-transform runs 10 passes over all Gaussians;
            here 10 instead of 6 lowered the SH RMS error of a 1M-Gaussian scene by 0.2 % for ~1.5x the k-means time.
        seed: seed of the k-means and the codebook subsamples (same scene + options -> same bytes).
        webp_quality, webp_method: Pillow's lossless WebP effort (0..100, 0..6). The defaults took 1.1-3.8x less
            CPU than libwebp's default lossless effort (quality 70, method 4: what splat-transform uses) on three
            scenes, for bundles within 0.5 % of its size (smaller on two).
        report: the :class:`WriteReport` to fill (default: a fresh one).

    Returns:
        (name -> bytes, ordered as written; the report with ``gaussians``, ``clamped``, ``notes``).

    Raises:
        SceneError: non-finite values or zero rotations (counts per field), or more Gaussians than a 16383 x 16383
            texture holds.
        ValueError: a bad option.
    """
    from .spz import to_ply_axes

    _check_options(sh_degree, palette_size, iterations, webp_quality, webp_method)
    if report is None:
        scene, report = prepare(scene, None, "sog")
    converted = to_ply_axes(scene)
    if converted is not scene:
        report.notes.append("converted from SPZ's right-up-back axes to 3DGS PLY's right-down-forward axes")
        scene = converted
    n = scene.n
    degree = scene.sh_degree if sh_degree is None else int(sh_degree)
    if degree > scene.sh_degree:
        raise ValueError(f"sh_degree={degree} is above the scene's SH degree {scene.sh_degree}")
    if degree < scene.sh_degree:
        report.notes.append(f"SH degree cut from {scene.sh_degree} to {degree}")
    w, h = sog_texture_shape(n)
    if w > MAX_TEXTURE_SIDE or h > MAX_TEXTURE_SIDE:
        raise SceneError(
            f"{n:,} Gaussians need {w}x{h} texels; a SOG texture holds at most {MAX_TEXTURE_SIDE}x{MAX_TEXTURE_SIDE}"
        )

    order = sog_order(scene)
    # Each texture is encoded in a worker thread as soon as it is ready (Pillow's WebP encoder releases the GIL), so
    # the encodes overlap the codebook fits and the SH k-means; the member order stays the submission order.
    with ThreadPoolExecutor(max_workers=_WEBP_THREADS, thread_name_prefix="exgs-sog-webp") as pool:
        jobs = {}

        def webp(name: str, img: np.ndarray) -> None:
            jobs[name] = pool.submit(_webp, img, webp_quality, webp_method)

        # means: log transform, 16 bits per axis split into a low and a high byte texture
        if n:
            u, mins, maxs = _encode_means(scene.means)
            u = u[order]
        else:
            u, mins, maxs = np.zeros((0, 3), np.uint16), [0.0] * 3, [0.0] * 3
        webp("means_l.webp", _texture(n, w, h, [(u[:, a] & 0xFF).astype(np.uint8) for a in range(3)], 255))
        webp("means_u.webp", _texture(n, w, h, [(u[:, a] >> 8).astype(np.uint8) for a in range(3)], 255))
        del u

        q = _encode_quats(scene.quats)[order] if n else np.zeros((0, 4), np.uint8)
        webp("quats.webp", _texture(n, w, h, [q[:, 0], q[:, 1], q[:, 2]], q[:, 3]))
        del q

        scb, slab = _codebook("scales", scene.log_scales.T, seed)  # x, y, z pooled (axis-major)
        slab = slab.reshape(3, n)[:, order]
        webp("scales.webp", _texture(n, w, h, [slab[0], slab[1], slab[2]], 255))
        del slab

        report.clamp("opacity_logits", scene.opacity_logits, -OPACITY_LOGIT_MAX, OPACITY_LOGIT_MAX)
        ccb, clab = _codebook("sh0", scene.sh[:, 0, :].T, seed)  # r, g, b pooled (channel-major)
        clab = clab.reshape(3, n)[:, order]
        opacity = _opacity_bytes(scene.opacity_logits)[order]
        webp("sh0.webp", _texture(n, w, h, [clab[0], clab[1], clab[2]], opacity))
        del clab, opacity

        shn = None
        if degree > 0 and n > 0:
            from ..codec.palette import kmeans_palette

            kc = sh_coeff_count(degree) - 1
            rest = np.ascontiguousarray(scene.sh[:, 1 : kc + 1, :]).reshape(n, 3 * kc)  # [N, (coefficient, channel)]
            p = default_palette_size(n) if palette_size is None else int(palette_size)
            palette, labels = kmeans_palette(rest, p, iterations=int(iterations), seed=seed)
            del rest
            count = palette.shape[0]
            ncb, nlab = _codebook("shN", palette, seed)
            rows = -(-count // 64)
            cen = np.zeros((rows * 64, kc, 4), np.uint8)
            cen[:count, :, :3] = nlab.reshape(count, kc, 3)
            cen[:count, :, 3] = 255
            webp("shN_centroids.webp", cen.reshape(rows, 64 * kc, 4))
            labels = labels.astype(np.uint32)[order]
            webp("shN_labels.webp", _texture(n, w, h, [labels & 0xFF, labels >> 8, 0], 255))
            del labels
            report.notes.append(f"SH bands 1..{degree}: a palette of {count:,} entries (k-means, {iterations} passes)")
            shn = {
                "count": int(count),
                "bands": degree,
                "codebook": [float(x) for x in ncb],
                "files": ["shN_centroids.webp", "shN_labels.webp"],
            }
        elif degree > 0:
            report.notes.append("no Gaussians: the SH bands are not written")
        files = {name: job.result() for name, job in jobs.items()}

    meta: dict = {"version": 2, "asset": {"generator": f"exgs v{_version()}"}, "count": n}
    if scene.antialiased:
        meta["model"] = "antialiased"
    meta["means"] = {"mins": mins, "maxs": maxs, "files": ["means_l.webp", "means_u.webp"]}
    meta["scales"] = {"codebook": [float(x) for x in scb], "files": ["scales.webp"]}
    meta["quats"] = {"files": ["quats.webp"]}
    meta["sh0"] = {"codebook": [float(x) for x in ccb], "files": ["sh0.webp"]}
    if shn is not None:
        meta["shN"] = shn
    files["meta.json"] = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if n > 1:
        report.notes.append("Gaussians reordered along a Morton curve (SOG's spatial order)")
    report.gaussians = n
    return files, report


def _version() -> str:
    from .. import __version__

    return __version__


def _zip(files: dict[str, bytes]) -> bytes:
    """A stored zip of ``files`` in their order with fixed timestamps and attributes (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # unix, whatever the platform (the byte would differ on Windows otherwise)
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def encode_sog(
    scene: GaussianScene,
    *,
    sh_degree: int | None = None,
    palette_size: int | None = None,
    iterations: int = 6,
    seed: int = 0,
    webp_quality: int = 50,
    webp_method: int = 2,
    bundle: bool = True,
) -> tuple[bytes, WriteReport]:
    """``scene`` as the bytes of a bundled ``.sog`` (zip of the textures and ``meta.json``).

    Options as :func:`encode_sog_members`. ``bundle`` must be True (an unbundled SOG is several files:
    :func:`write_sog` with ``bundle=False`` writes them).

    Returns:
        (zip bytes, :class:`WriteReport` with ``bytes``, ``gaussians``, ``clamped`` and ``notes``).

    Raises:
        SceneError: NaN/Inf or zero rotations (counts per field; sanitise first or use ``write_sog(sanitize=True)``),
            or too many Gaussians for one SOG.
        ValueError: a bad option.
    """
    if not bundle:
        raise ValueError("an unbundled SOG is several files; write it with write_sog(..., bundle=False)")
    files, report = encode_sog_members(
        scene,
        sh_degree=sh_degree,
        palette_size=palette_size,
        iterations=iterations,
        seed=seed,
        webp_quality=webp_quality,
        webp_method=webp_method,
    )
    data = _zip(files)
    report.bytes = len(data)
    return data, report


def write_sog(
    scene: GaussianScene,
    path: str | os.PathLike,
    *,
    sanitize: bool = False,
    sh_degree: int | None = None,
    palette_size: int | None = None,
    iterations: int = 6,
    seed: int = 0,
    webp_quality: int = 50,
    webp_method: int = 2,
    bundle: bool = True,
) -> WriteReport:
    """Write ``scene`` as SOG version 2.

    ``bundle=True`` (default): one ``.sog`` zip at ``path``, written atomically (temp file + rename). ``bundle=False``:
    ``path`` names the ``meta.json`` (any ``.json`` name) and the textures are written beside it under their fixed
    names (``means_l.webp``, ...), each atomically, ``meta.json`` last (a failed write leaves no new ``meta.json``).

    Args:
        sanitize: write a scene with NaN/Inf values or zero rotations after dropping those Gaussians / setting
            identity rotations (listed in the report's notes) instead of refusing it.
        others: as :func:`encode_sog_members`.

    Returns:
        :class:`WriteReport` (``bytes``: the bundle's size, or the sum of the files').

    Raises:
        SceneError: NaN/Inf or zero rotations and not ``sanitize``; too many Gaussians.
        OutputError: ``path`` cannot be written (nothing is left behind).
        ValueError: a bad option (an unbundled ``path`` not ending in ``.json``).
    """
    from .atomic import atomic_write, check_output_path

    path = Path(path)
    if not bundle and path.suffix.lower() != ".json":
        raise ValueError(f"an unbundled SOG is written as a meta.json and its textures; got {os.fspath(path)!r}")
    check_output_path(path)
    clean, report = prepare(scene, path, "sog", sanitize=sanitize)
    files, report = encode_sog_members(
        clean,
        sh_degree=sh_degree,
        palette_size=palette_size,
        iterations=iterations,
        seed=seed,
        webp_quality=webp_quality,
        webp_method=webp_method,
        report=report,
    )
    if bundle:
        data = _zip(files)
        with atomic_write(path) as f:
            f.write(data)
        report.bytes = len(data)
    else:
        meta = files.pop("meta.json")
        for name, data in files.items():
            with atomic_write(path.parent / name) as f:
                f.write(data)
        with atomic_write(path) as f:
            f.write(meta)
        report.bytes = sum(len(d) for d in files.values()) + len(meta)
    report.path = os.fspath(path)
    return report
