"""CPU tile rasterizer for 3D Gaussian splats (numba), following gsplat 1.5.3's conventions exactly.

What it matches in gsplat 1.5.3 (``rasterization(..., packed=True, rasterize_mode=...)`` with SH colours), checked
against ``gsplat/cuda/include/Utils.cuh``, ``csrc/ProjectionEWA3DGS{Fused,Packed}.cu``, ``csrc/IntersectTile.cu``,
``csrc/RasterizeToPixels3DGSFwd.cu``, ``csrc/SphericalHarmonicsCUDA.cu`` and ``rendering.py`` at tag v1.5.3:

Projection (per Gaussian)
    * camera point ``p = R m + t`` from the world-to-camera matrix; culled unless ``near <= p.z <= far``
      (defaults 0.01 and 1e10);
    * quaternion ``w, x, y, z`` normalised on use; 3-D covariance ``R_q S S^T R_q^T`` with ``S = diag(exp(log_scales))``,
      taken to camera axes as ``R Sigma R^T``;
    * EWA: ``Sigma_2d = J Sigma_c J^T`` with the pinhole Jacobian whose ``x/z`` and ``y/z`` are clamped to
      ``[-(cx/fx + 0.3 tan_fovx), (W - cx)/fx + 0.3 tan_fovx]`` (and the same in y), ``tan_fovx = W / (2 fx)``
      ("1.3 x the field of view", generalised to an off-centre principal point as gsplat does);
    * mean ``(fx x/z + cx, fy y/z + cy)`` in pixels, pixel centres at integer + 0.5;
    * dilation ``eps2d = 0.3`` added to the diagonal of ``Sigma_2d``; culled when the dilated determinant <= 0;
      ``rasterize_mode="antialiased"`` multiplies opacity by ``sqrt(max(0, det_orig / det_dilated))``;
    * culled when the (compensated) opacity ``< 1/255``;
    * **radius**: gsplat 1.5.3 uses per-axis, opacity-aware radii (not 3 sqrt(lambda_max)):
      ``extend = min(3.33, sqrt(2 ln(opacity * 255)))``, ``r_x = ceil(extend sqrt(Sigma_2d[0, 0]))``,
      ``r_y = ceil(extend sqrt(Sigma_2d[1, 1]))`` (dilated covariance). Culled when both radii are 0 or the box
      ``mean +- r`` lies outside the image (``mean.x + r_x <= 0 or mean.x - r_x >= W``, same in y). Because the box is
      the exact axis-aligned extent of the ``alpha = 1/255`` level set (rounded up), no pixel outside it can pass
      the alpha cut-off, so the rasterizer only visits pixels inside the box (same pixels, same result);
    * colour from SH in gsplat's basis with view direction ``normalize(mean - camera_position)``, then
      ``max(colour + 0.5, 0)`` (no upper clamp).

Binning
    Tiles of 16 x 16 pixels; a Gaussian covers tiles ``floor((mean - r) / 16) .. ceil((mean + r) / 16)`` (end
    exclusive, clamped to the image). Within a tile Gaussians are ordered front to back by float32 camera z,
    ties by Gaussian index (gsplat's stable radix sort of ``tile | depth-bits`` keys gives the same order). We get it
    with one stable argsort of the depths and a counting sort into tiles (no 64-bit key sort).

Blending (per pixel, front to back)
    ``sigma = 0.5 (A dx^2 + C dy^2) + B dx dy`` with ``d = mean - pixel_centre`` and conic ``(A, B, C)`` the inverse
    dilated covariance; ``alpha = min(0.999, opacity exp(-sigma))`` — **0.999** as gsplat 1.x, not the 0.99 of the
    Inria 3DGS code; skipped when ``sigma < 0`` or ``alpha < 1/255``; then ``next_T = T (1 - alpha)``: if
    ``next_T <= 1e-4`` the pixel stops *without* adding this Gaussian; otherwise colour += ``alpha T c`` and
    ``T = next_T``. Output ``rgb = sum + T bg``, ``alpha = 1 - T``, depth = ``sum(alpha T z) / max(1 - T, 1e-10)``.

Adjoint (for the colour refit, :mod:`exgs_core.prune.refit`)
    With the geometry fixed a view is linear in the per-Gaussian colours: ``rgb = A c + T bg`` with
    ``A[p, g] = alpha_g(p) T_g(p)``. :func:`view_geometry` projects, sorts and bins a view once;
    :func:`render_rows` applies ``A`` to other colours, :func:`adjoint_rows` applies ``A^T`` to images (per Gaussian,
    the sum over pixels of blend weight x image, in the forward pass's tile and depth order, reduced serially:
    deterministic) and :func:`normal_rows` does both per tile (``A^T A c``). ``keep_weights`` stores every blend
    weight of the view (5 bytes each), after which these are sparse products.

Deviations (documented, not in gsplat)
    Gaussians with any non-finite value used by the renderer (mean, rotation, scale, opacity, SH colour) or a zero
    quaternion are culled (gsplat culls NaN geometry through a zero radius but would let a NaN colour through).
    Arithmetic: projection in float64, blending in float32 (gsplat: float32 and ``__expf``), with ``exp(-sigma)``
    along each row of a tile by recurrence (two ``exp`` per row, then multiplies: at most 16 steps of rounding,
    ~1e-6 relative; 512² renders of the shared scenes 1.05-1.6x faster than with one exp per pixel, most where
    large Gaussians overlap) — differences are ~1e-6, far below 1/255, except where a weight
    straddles the 1/255 cut-off (a few pixels per view move by up to ~1/255).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from numba import get_num_threads, njit, prange

from .. import _machine
from .._machine import guarded
from .sh import eval_sh_channel

TILE_SIZE = 16
EPS2D = 0.3
ALPHA_THRESHOLD = float(np.float32(1.0 / 255.0))  # gsplat: the float literal 1.f / 255.f
ALPHA_MAX = 0.999
T_STOP = 1e-4
EXTEND_MAX = 3.33
NEAR_PLANE = 0.01
FAR_PLANE = 1e10

# fastmath on the blending kernel: see BENCHMARKS.md ("Rendering") for the measurement behind this choice.
_FASTMATH_RASTER = True

_F32_THRESHOLD = np.float32(ALPHA_THRESHOLD)


# --------------------------------------------------------------------------- projection


@guarded
@njit(parallel=True, cache=True, nogil=True)
def _project(
    means,
    quats,
    scales,
    opacities,
    sh,
    sh_degree,  # [N,3] [N,4] [N,3] [N] [N,K,3] f32, int
    viewmat,
    campos,  # f64 [4,4], f64 [3]
    fx,
    fy,
    cx,
    cy,
    width,
    height,
    near,
    far,
    eps2d,
    antialiased,
    xy,
    conic,
    opac,
    depth,
    color,
    radii,  # outputs: f32 [N,2] [N,3] [N] [N] [N,3], i32 [N,2]
):
    n = means.shape[0]
    r00, r01, r02, t0 = viewmat[0, 0], viewmat[0, 1], viewmat[0, 2], viewmat[0, 3]
    r10, r11, r12, t1 = viewmat[1, 0], viewmat[1, 1], viewmat[1, 2], viewmat[1, 3]
    r20, r21, r22, t2 = viewmat[2, 0], viewmat[2, 1], viewmat[2, 2], viewmat[2, 3]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    thr = np.float64(_F32_THRESHOLD)
    for i in prange(n):
        radii[i, 0] = 0
        radii[i, 1] = 0
        mx = np.float64(means[i, 0])
        my = np.float64(means[i, 1])
        mz = np.float64(means[i, 2])
        # camera space, OpenCV axes
        x = r00 * mx + r01 * my + r02 * mz + t0
        y = r10 * mx + r11 * my + r12 * mz + t1
        z = r20 * mx + r21 * my + r22 * mz + t2
        if not (z >= near and z <= far):  # NaN fails too
            continue
        qw = np.float64(quats[i, 0])
        qx = np.float64(quats[i, 1])
        qy = np.float64(quats[i, 2])
        qz = np.float64(quats[i, 3])
        qn = qw * qw + qx * qx + qy * qy + qz * qz
        if not (qn > 0.0 and qn < np.inf):
            continue
        inv = 1.0 / math.sqrt(qn)
        qw *= inv
        qx *= inv
        qy *= inv
        qz *= inv
        # rotation of the Gaussian (row-major q00..q22)
        q00 = 1.0 - 2.0 * (qy * qy + qz * qz)
        q01 = 2.0 * (qx * qy - qw * qz)
        q02 = 2.0 * (qx * qz + qw * qy)
        q10 = 2.0 * (qx * qy + qw * qz)
        q11 = 1.0 - 2.0 * (qx * qx + qz * qz)
        q12 = 2.0 * (qy * qz - qw * qx)
        q20 = 2.0 * (qx * qz - qw * qy)
        q21 = 2.0 * (qy * qz + qw * qx)
        q22 = 1.0 - 2.0 * (qx * qx + qy * qy)
        s0 = np.float64(scales[i, 0])
        s1 = np.float64(scales[i, 1])
        s2 = np.float64(scales[i, 2])
        # M = R_view @ R_q @ diag(s): camera-space covariance is M M^T
        m00 = (r00 * q00 + r01 * q10 + r02 * q20) * s0
        m01 = (r00 * q01 + r01 * q11 + r02 * q21) * s1
        m02 = (r00 * q02 + r01 * q12 + r02 * q22) * s2
        m10 = (r10 * q00 + r11 * q10 + r12 * q20) * s0
        m11 = (r10 * q01 + r11 * q11 + r12 * q21) * s1
        m12 = (r10 * q02 + r11 * q12 + r12 * q22) * s2
        m20 = (r20 * q00 + r21 * q10 + r22 * q20) * s0
        m21 = (r20 * q01 + r21 * q11 + r22 * q21) * s1
        m22 = (r20 * q02 + r21 * q12 + r22 * q22) * s2
        # Jacobian of the pinhole projection with the tangent clamp
        rz = 1.0 / z
        tx = z * min(lim_x_pos, max(-lim_x_neg, x * rz))
        ty = z * min(lim_y_pos, max(-lim_y_neg, y * rz))
        j00 = fx * rz
        j02 = -fx * tx * rz * rz
        j11 = fy * rz
        j12 = -fy * ty * rz * rz
        # JM = J @ M  (2 x 3); Sigma_2d = JM JM^T
        a0 = j00 * m00 + j02 * m20
        a1 = j00 * m01 + j02 * m21
        a2 = j00 * m02 + j02 * m22
        b0 = j11 * m10 + j12 * m20
        b1 = j11 * m11 + j12 * m21
        b2 = j11 * m12 + j12 * m22
        ca = a0 * a0 + a1 * a1 + a2 * a2
        cb = a0 * b0 + a1 * b1 + a2 * b2
        cc = b0 * b0 + b1 * b1 + b2 * b2
        det_orig = ca * cc - cb * cb
        ca += eps2d
        cc += eps2d
        det = ca * cc - cb * cb
        if not (det > 0.0 and det < np.inf):
            continue
        op = np.float64(opacities[i])
        if antialiased:
            op *= math.sqrt(max(0.0, det_orig / det))
        if not (op >= thr and op < np.inf):
            continue
        extend = min(EXTEND_MAX, math.sqrt(2.0 * math.log(op / thr)))
        rx = math.ceil(extend * math.sqrt(ca))
        ry = math.ceil(extend * math.sqrt(cc))
        if rx <= 0.0 and ry <= 0.0:
            continue
        u = fx * x * rz + cx
        v = fy * y * rz + cy
        if not (u + rx > 0.0 and u - rx < width and v + ry > 0.0 and v - ry < height):
            continue
        # view-dependent colour
        dx = 0.0
        dy = 0.0
        dz = 0.0
        if sh_degree > 0:
            dx = mx - campos[0]
            dy = my - campos[1]
            dz = mz - campos[2]
            dl = dx * dx + dy * dy + dz * dz
            if dl > 0.0:
                dl = 1.0 / math.sqrt(dl)
                dx *= dl
                dy *= dl
                dz *= dl
        c0 = max(eval_sh_channel(sh, i, 0, sh_degree, dx, dy, dz) + 0.5, 0.0)
        c1 = max(eval_sh_channel(sh, i, 1, sh_degree, dx, dy, dz) + 0.5, 0.0)
        c2 = max(eval_sh_channel(sh, i, 2, sh_degree, dx, dy, dz) + 0.5, 0.0)
        if not (c0 < np.inf and c1 < np.inf and c2 < np.inf):  # NaN or Inf colour: cull
            continue
        xy[i, 0] = u
        xy[i, 1] = v
        conic[i, 0] = cc / det
        conic[i, 1] = -cb / det
        conic[i, 2] = ca / det
        opac[i] = op
        depth[i] = z
        color[i, 0] = c0
        color[i, 1] = c1
        color[i, 2] = c2
        radii[i, 0] = np.int32(rx)
        radii[i, 1] = np.int32(ry)


# --------------------------------------------------------------------------- binning


def _visible_depth_order(radii: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """int32 [M]: indices of the Gaussians with radii > 0, sorted front to back by float32 depth, ties by index.

    A stable radix sort (:func:`_radix_order`) of the depths' bit patterns (positive float32 values order like their
    bits; every visible depth is >= near > 0) over the visible indices in increasing order, so ties keep index order:
    the order of sorting ``depth_bits << 32 | index`` keys, about 3x faster than numpy's sort of them (1M: 20 ms
    instead of 60 ms).
    """
    vis = np.flatnonzero((radii[:, 0] > 0) | (radii[:, 1] > 0))  # [M]
    return _radix_order(np.ascontiguousarray(depth[vis]).view(np.uint32), vis.astype(np.int32))


@njit(cache=True, nogil=True)
def _radix_order(keys, idx):
    """int32 [M]: ``idx`` [M] reordered by ``keys`` uint32 [M], stable (LSD radix sort, four 8-bit digits; one read
    pass counts every digit, and a digit all keys share is not sorted on)."""
    n = keys.shape[0]
    cnt = np.zeros((4, 257), np.int64)
    for i in range(n):
        k = keys[i]
        cnt[0, (k & np.uint32(255)) + 1] += 1
        cnt[1, ((k >> np.uint32(8)) & np.uint32(255)) + 1] += 1
        cnt[2, ((k >> np.uint32(16)) & np.uint32(255)) + 1] += 1
        cnt[3, (k >> np.uint32(24)) + 1] += 1
    k0, v0 = keys.copy(), idx.copy()
    k1, v1 = np.empty_like(keys), np.empty_like(idx)
    for p in range(4):
        c = cnt[p]
        if c.max() == n:  # one digit value for every key: this pass would move nothing
            continue
        for b in range(256):
            c[b + 1] += c[b]
        sh = np.uint32(8 * p)
        for i in range(n):
            d = (k0[i] >> sh) & np.uint32(255)
            q = c[d]
            k1[q] = k0[i]
            v1[q] = v0[i]
            c[d] = q + 1
        k0, k1 = k1, k0
        v0, v1 = v1, v0
    return v0


# Per-Gaussian record for the blending kernel, one 64-byte row per visible Gaussian in depth order.
_G_X, _G_Y, _G_A, _G_B, _G_C, _G_OP, _G_R, _G_G, _G_BL, _G_Z, _G_RX, _G_RY, _G_SIGCUT = range(13)
_G_WIDTH = 16


@guarded
@njit(parallel=True, cache=True, nogil=True)
def _gather(order, xy, conic, opac, depth, color, radii):
    """float32 [M, 16]: the blending inputs of the Gaussians in ``order`` (front to back), one cache line each.

    Columns: x, y (px), conic A, B, C, opacity, r, g, b, camera z, radius x, radius y (px), ``sigcut`` and padding.
    ``sigcut = ln(opacity * 255) + 1e-3``: any ``sigma`` above it gives ``alpha < 1/255`` (the margin keeps the test
    conservative; the exact ``alpha < 1/255`` test still follows), so each tile row visits only the columns where
    ``sigma <= sigcut`` (the roots of a quadratic).
    """
    m = order.shape[0]
    gd = np.zeros((m, _G_WIDTH), np.float32)
    thr = np.float64(_F32_THRESHOLD)
    for j in prange(m):
        g = order[j]
        gd[j, _G_X] = xy[g, 0]
        gd[j, _G_Y] = xy[g, 1]
        gd[j, _G_A] = conic[g, 0]
        gd[j, _G_B] = conic[g, 1]
        gd[j, _G_C] = conic[g, 2]
        gd[j, _G_OP] = opac[g]
        gd[j, _G_R] = color[g, 0]
        gd[j, _G_G] = color[g, 1]
        gd[j, _G_BL] = color[g, 2]
        gd[j, _G_Z] = depth[g]
        gd[j, _G_RX] = radii[g, 0]
        gd[j, _G_RY] = radii[g, 1]
        gd[j, _G_SIGCUT] = math.log(np.float64(opac[g]) / thr) + 1e-3
    return gd


@guarded
@njit(parallel=True, cache=True, nogil=True)
def _tile_counts(gd, tile_size, tile_w, tile_h, nchunks):
    """First pass of the tile binning: each visible Gaussian's tile rectangle and per-chunk tile counts.

    Args:
        gd: float32 [M, 16] records of the visible Gaussians, front to back (see :func:`_gather`).

    Returns:
        rect: int32 [M, 4] tile x0, x1, y0, y1 (end exclusive); counts: int64 [nchunks, n_tiles].
    """
    m = gd.shape[0]
    n_tiles = tile_w * tile_h
    rect = np.empty((m, 4), np.int32)
    ts = np.float32(tile_size)
    for j in prange(m):
        rx = gd[j, _G_RX] / ts
        ry = gd[j, _G_RY] / ts
        gx = gd[j, _G_X] / ts
        gy = gd[j, _G_Y] / ts
        rect[j, 0] = min(max(0, np.int32(math.floor(gx - rx))), tile_w)
        rect[j, 1] = min(max(0, np.int32(math.ceil(gx + rx))), tile_w)
        rect[j, 2] = min(max(0, np.int32(math.floor(gy - ry))), tile_h)
        rect[j, 3] = min(max(0, np.int32(math.ceil(gy + ry))), tile_h)
    chunk = (m + nchunks - 1) // nchunks
    counts = np.zeros((nchunks, n_tiles), np.int64)
    for c in prange(nchunks):
        for j in range(c * chunk, min(m, (c + 1) * chunk)):
            for ty in range(rect[j, 2], rect[j, 3]):
                for tx in range(rect[j, 0], rect[j, 1]):
                    counts[c, ty * tile_w + tx] += 1
    return rect, counts


@guarded
@njit(parallel=True, cache=True, nogil=True)
def _tile_fill(rect, counts, tile_w, n_isect):
    """Second pass: counting sort of (Gaussian, tile) pairs into per-tile lists, depth order kept within each
    tile. ``counts`` (from :func:`_tile_counts`) is consumed as the write cursors.

    Returns:
        tile_start: int64 [n_tiles + 1]; the list of tile t is ``ids[tile_start[t]:tile_start[t + 1]]``.
        ids: int32 [n_isect] row indices into ``gd`` (increasing within each tile).
    """
    m = rect.shape[0]
    nchunks, n_tiles = counts.shape
    chunk = (m + nchunks - 1) // nchunks
    tile_start = np.empty(n_tiles + 1, np.int64)
    run = 0
    for t in range(n_tiles):
        tile_start[t] = run
        for c in range(nchunks):
            k = counts[c, t]
            counts[c, t] = run  # becomes the write cursor of chunk c in tile t
            run += k
    tile_start[n_tiles] = run
    ids = np.empty(n_isect, np.int32)
    for c in prange(nchunks):
        for j in range(c * chunk, min(m, (c + 1) * chunk)):
            for ty in range(rect[j, 2], rect[j, 3]):
                for tx in range(rect[j, 0], rect[j, 1]):
                    t = ty * tile_w + tx
                    ids[counts[c, t]] = j
                    counts[c, t] += 1
    return tile_start, ids


def _bin_tiles(gd, tile_size, tile_w, tile_h, nchunks, bytes_per_isect: int = 4, where: str = ""):
    """(tile_start int64 [n_tiles + 1], ids int32 [n_isect]): :func:`_tile_counts` then :func:`_tile_fill`, with
    the memory the intersections need (``bytes_per_isect`` each) checked against the machine before it is
    allocated: a view whose Gaussians cover the screen many times over is a :class:`RenderError`, not an
    out-of-memory kill."""
    from ..errors import RenderError

    rect, counts = _tile_counts(gd, tile_size, tile_w, tile_h, nchunks)
    n_isect = int(counts.sum())
    need = n_isect * bytes_per_isect
    if need > _machine.memory_limit():
        raise RenderError(
            f"{where}{n_isect:,} (Gaussian, tile) intersections need {need / 2**30:.1f} GiB, more than "
            f"half this machine's memory; render at a lower resolution or from further away"
        )
    return _tile_fill(rect, counts, tile_w, n_isect)


# --------------------------------------------------------------------------- blending


@guarded
@njit(parallel=True, cache=True, nogil=True, fastmath=_FASTMATH_RASTER)
def _rasterize(
    tile_start,
    ids,
    gd,  # int64 [n_tiles+1], int32 [n_isect], f32 [M, 16]
    width,
    height,
    tile_size,
    tile_w,
    bg,  # bg: f32 [3]
    out_rgb,
    out_alpha,
    out_depth,  # f32 [H,W,3] [H,W] [H,W]
    want_w,
    isect_w,
    want_c,
    isect_c,  # bool, f32 [n_isect] (or [0]), bool, i32 [n_isect] (or [0])
):
    n_tiles = tile_start.shape[0] - 1
    thr = _F32_THRESHOLD
    amax = np.float32(ALPHA_MAX)
    tstop = np.float32(T_STOP)
    half = np.float32(0.5)
    one = np.float32(1.0)
    npix = tile_size * tile_size
    for t in prange(n_tiles):
        ty0 = (t // tile_w) * tile_size
        tx0 = (t % tile_w) * tile_size
        tx1 = min(tx0 + tile_size, width)
        ty1 = min(ty0 + tile_size, height)
        trans = np.ones(npix, np.float32)
        acc = np.zeros((npix, 4), np.float32)  # r, g, b, depth
        alive = np.zeros(npix, np.bool_)
        row_alive = np.zeros(tile_size, np.int64)  # live pixels per tile row: a row with none is skipped
        n_alive = 0
        for py in range(ty0, ty1):
            for px in range(tx0, tx1):
                alive[(py - ty0) * tile_size + (px - tx0)] = True
                n_alive += 1
            row_alive[py - ty0] = tx1 - tx0
        for k in range(tile_start[t], tile_start[t + 1]):
            if n_alive == 0:
                break
            j = ids[k]
            gx = gd[j, _G_X]
            gy = gd[j, _G_Y]
            rx = gd[j, _G_RX]
            ry = gd[j, _G_RY]
            # pixels whose centre lies inside the Gaussian's box (centre = p + 0.5)
            x0 = max(tx0, np.int64(math.ceil(gx - rx - half)))
            x1 = min(tx1, np.int64(math.floor(gx + rx - half)) + 1)
            y0 = max(ty0, np.int64(math.ceil(gy - ry - half)))
            y1 = min(ty1, np.int64(math.floor(gy + ry - half)) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            ca = gd[j, _G_A]
            cb = gd[j, _G_B]
            cc = gd[j, _G_C]
            op = gd[j, _G_OP]
            cr = gd[j, _G_R]
            cg = gd[j, _G_G]
            cbl = gd[j, _G_BL]
            z = gd[j, _G_Z]
            sigcut = gd[j, _G_SIGCUT]
            wsum = np.float32(0.0)
            hits = 0
            qa = half * ca
            inv2qa = half / qa
            qx = math.exp(-ca)  # ratio of consecutive column steps of exp(-sigma)
            for py in range(y0, y1):
                if row_alive[py - ty0] == 0:
                    continue
                ddy = gy - (np.float32(py) + half)
                # columns where sigma(dx) = qa dx^2 + qb dx + qc0 <= sigcut (roots of a quadratic in dx), widened
                # by 0.01 px so rounding cannot drop a pixel that the exact test below would accept
                qb = cb * ddy
                qc = half * cc * ddy * ddy - sigcut
                disc = qb * qb - 4.0 * qa * qc
                if disc < 0:
                    continue
                sq = math.sqrt(disc)
                lo = max(x0, np.int64(math.ceil(gx - half - (sq - qb) * inv2qa - 0.01)))
                hi = min(x1, np.int64(math.floor(gx - half + (sq + qb) * inv2qa + 0.01)) + 1)
                row = (py - ty0) * tile_size - tx0
                # exp(-sigma) along the row by recurrence (sigma is quadratic in px): two exps per row instead of
                # one per pixel, at most tile_size steps of float32 rounding (~1e-6 relative)
                d0 = gx - (np.float32(lo) + half)
                ex = math.exp(-(half * (ca * d0 * d0 + cc * ddy * ddy) + cb * d0 * ddy))
                step = math.exp(cb * ddy - half * ca * (one - np.float32(2.0) * d0))
                for px in range(lo, hi):
                    p = row + px
                    e_px = ex
                    ex *= step
                    step *= qx
                    if not alive[p]:
                        continue
                    ddx = gx - (np.float32(px) + half)
                    sigma = half * (ca * ddx * ddx + cc * ddy * ddy) + cb * ddx * ddy
                    if sigma < 0 or sigma > sigcut:
                        continue
                    alpha = min(amax, op * e_px)
                    if alpha < thr:
                        continue
                    tp = trans[p]
                    nt = tp * (one - alpha)
                    if nt <= tstop:
                        alive[p] = False
                        n_alive -= 1
                        row_alive[py - ty0] -= 1
                        continue
                    vis = alpha * tp
                    acc[p, 0] += cr * vis
                    acc[p, 1] += cg * vis
                    acc[p, 2] += cbl * vis
                    acc[p, 3] += z * vis
                    wsum += vis
                    hits += 1
                    trans[p] = nt
            if want_w:
                isect_w[k] = wsum
            if want_c:
                isect_c[k] = hits
        for py in range(ty0, ty1):
            for px in range(tx0, tx1):
                p = (py - ty0) * tile_size + (px - tx0)
                tp = trans[p]
                a = one - tp
                out_alpha[py, px] = a
                out_rgb[py, px, 0] = acc[p, 0] + tp * bg[0]
                out_rgb[py, px, 1] = acc[p, 1] + tp * bg[1]
                out_rgb[py, px, 2] = acc[p, 2] + tp * bg[2]
                out_depth[py, px] = acc[p, 3] / max(a, np.float32(1e-10))


@njit(cache=True, nogil=True)
def _reduce_per_gaussian(ids, per_isect, order, n):
    """float64 [n]: per-Gaussian sum of a per-intersection quantity (serial: no races).

    ``ids`` index ``order`` (rows of the depth-sorted records); ``order`` maps rows to Gaussian indices.
    """
    w = np.zeros(n, np.float64)
    for k in range(ids.shape[0]):
        w[order[ids[k]]] += per_isect[k]
    return w


# --------------------------------------------------------------------------- driver


class PreparedScene:
    """Scene arrays converted once for the CPU kernels (reused across cameras by ``render_many``).

    Attributes:
        means: float32 [N, 3] world units; quats: float32 [N, 4] w, x, y, z as stored (normalised in the kernel);
        scales: float32 [N, 3] linear (exp of log_scales); opacities: float32 [N] in (0, 1) (sigmoid of logits);
        sh: float32 [N, K, 3] C-contiguous; sh_degree: degree of ``sh``.
    """

    def __init__(self, scene):
        from ..conventions import sigmoid

        self.n = scene.n
        self.means = np.ascontiguousarray(scene.means, dtype=np.float32)
        self.quats = np.ascontiguousarray(scene.quats, dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            self.scales = np.ascontiguousarray(np.exp(scene.log_scales), dtype=np.float32)
            self.opacities = np.ascontiguousarray(sigmoid(scene.opacity_logits), dtype=np.float32)
        self.sh = np.ascontiguousarray(scene.sh, dtype=np.float32)
        self.sh_degree = scene.sh_degree


def render_cpu(
    prepared: PreparedScene,
    camera,
    *,
    background: np.ndarray,
    sh_degree: int,
    antialiased: bool,
    return_weights: bool,
    return_counts: bool = False,
    near: float,
    far: float,
):
    """Render one view on the CPU.

    Args:
        prepared: :class:`PreparedScene` of N Gaussians.
        camera: :class:`exgs_core.camera.Camera` (OpenCV axes, pixels).
        background: float32 [3] colour composited behind the splats.
        sh_degree: SH degree to evaluate, 0..scene degree.
        antialiased: gsplat's ``rasterize_mode="antialiased"`` opacity compensation.
        return_weights: also compute float32 [N] per-Gaussian blend weights (sum over pixels of alpha * T).
        return_counts: also compute int32 [N] per-Gaussian counts of the pixels it was blended into.
        near, far: camera-z clipping range (world units).

    Returns:
        dict with ``rgb`` f32 [H, W, 3], ``alpha`` f32 [H, W], ``depth`` f32 [H, W], ``weights`` f32 [N] or None,
        ``counts`` i32 [N] or None, ``n_rendered`` int, ``stats`` dict (``n_intersections``, seconds per stage).
    """
    t_start = time.perf_counter()
    n = prepared.n
    w, h = camera.width, camera.height
    viewmat = np.ascontiguousarray(camera.world_to_camera, dtype=np.float64)
    campos = np.ascontiguousarray(camera.position, dtype=np.float64)
    xy = np.zeros((n, 2), np.float32)
    conic = np.zeros((n, 3), np.float32)
    opac = np.zeros(n, np.float32)
    depth = np.zeros(n, np.float32)
    color = np.zeros((n, 3), np.float32)
    radii = np.zeros((n, 2), np.int32)
    if n:
        _project(
            prepared.means,
            prepared.quats,
            prepared.scales,
            prepared.opacities,
            prepared.sh,
            int(sh_degree),
            viewmat,
            campos,
            float(camera.fx),
            float(camera.fy),
            float(camera.cx),
            float(camera.cy),
            float(w),
            float(h),
            float(near),
            float(far),
            EPS2D,
            bool(antialiased),
            xy,
            conic,
            opac,
            depth,
            color,
            radii,
        )
    t_proj = time.perf_counter()
    order = _visible_depth_order(radii, depth)
    tile_w = (w + TILE_SIZE - 1) // TILE_SIZE
    tile_h = (h + TILE_SIZE - 1) // TILE_SIZE
    nchunks = max(1, 4 * get_num_threads())
    gd = _gather(order, xy, conic, opac, depth, color, radii)  # [M, 16]
    tile_start, ids = _bin_tiles(
        gd, TILE_SIZE, tile_w, tile_h, nchunks, 4 * (1 + bool(return_weights) + bool(return_counts)), f"{w}x{h} view: "
    )
    t_bin = time.perf_counter()
    out_rgb = np.empty((h, w, 3), np.float32)
    out_alpha = np.empty((h, w), np.float32)
    out_depth = np.empty((h, w), np.float32)
    isect_w = np.zeros(ids.shape[0] if return_weights else 0, np.float32)  # one slot per (tile, Gaussian)
    isect_c = np.zeros(ids.shape[0] if return_counts else 0, np.int32)
    bg = np.ascontiguousarray(background, dtype=np.float32)
    _rasterize(
        tile_start,
        ids,
        gd,
        w,
        h,
        TILE_SIZE,
        tile_w,
        bg,
        out_rgb,
        out_alpha,
        out_depth,
        bool(return_weights),
        isect_w,
        bool(return_counts),
        isect_c,
    )
    t_rast = time.perf_counter()
    weights = _reduce_per_gaussian(ids, isect_w, order, n).astype(np.float32) if return_weights else None
    counts = _reduce_per_gaussian(ids, isect_c, order, n).astype(np.int32) if return_counts else None
    t_end = time.perf_counter()
    return {
        "rgb": out_rgb,
        "alpha": out_alpha,
        "depth": out_depth,
        "weights": weights,
        "counts": counts,
        "n_rendered": int(order.shape[0]),
        "stats": {
            "n_intersections": int(ids.shape[0]),
            "t_project": t_proj - t_start,
            "t_sort_bin": t_bin - t_proj,
            "t_rasterize": t_rast - t_bin,
            "t_reduce": t_end - t_rast,
            "t_total": t_end - t_start,
        },
    }


# --------------------------------------------------------------------------- adjoint (colour refit)
#
# A view's render is linear in the per-Gaussian colours once the geometry is fixed: ``rgb = A c + T bg`` with
# ``A[p, g] = alpha_g(p) T_g(p)``, the blend weights. The functions below apply ``A`` and its transpose to colours
# that are not the scene's own (:func:`exgs_core.prune.refit.refit_colours` solves least squares with them).

#: Bytes per (Gaussian, tile) intersection that :func:`view_geometry` plans for: the tile list and the counts (int32
#: each) and the adjoint's four float64 sums.
_ADJOINT_BYTES_PER_ISECT = 4 + 4 + 32


#: Bytes per stored blend weight (:meth:`ViewGeometry.keep_weights`): the pixel within its tile (uint8) and the
#: weight (float32).
WEIGHT_BYTES = 5


@dataclass
class ViewGeometry:
    """One view's projected, depth-sorted and tile-binned Gaussians, to render it with other colours and take the
    adjoint (:func:`render_rows`, :func:`adjoint_rows`, :func:`normal_rows`): the linear map ``A`` from per-Gaussian
    colours to the image, with the blend weights ``alpha * T`` of the scene's own geometry and opacities.

    Attributes:
        order: int32 [M] the visible Gaussians, front to back (row j is Gaussian ``order[j]``).
        gd: float32 [M, 16] blending records (columns of :func:`_gather`; the colour columns are overwritten by each
            call that takes colours); None once the weights are stored (:attr:`weights`), which replace it.
        tile_start: int64 [n_tiles + 1]; ids: int32 [n_isect] rows per tile, front to back.
        counts: int32 [n_isect] pixels each (tile, Gaussian) intersection is blended into.
        weights: None, or (wstart int64 [n_isect + 1], wpix uint8 [E], wval float32 [E]): every blend weight of the
            view, per intersection, in the forward pass's order (pixel within the tile, weight). With them a render
            or an adjoint is a sparse product (no exp, no sorting), about ten times cheaper.
        width, height: image size (px); tile_w: tiles per image row.
        rgb, alpha: float32 [H, W, 3] and [H, W]: the view rendered with the scene's own colours and the
            background given to :func:`view_geometry` (``rgb`` is what :func:`render_cpu` returns).
    """

    order: np.ndarray
    gd: np.ndarray | None
    tile_start: np.ndarray
    ids: np.ndarray
    counts: np.ndarray
    width: int
    height: int
    tile_w: int
    rgb: np.ndarray
    alpha: np.ndarray
    weights: tuple | None = None

    @property
    def nbytes(self) -> int:
        """Bytes the arrays that later calls use hold (the two images excluded)."""
        n = self.order.nbytes + self.tile_start.nbytes + self.ids.nbytes + self.counts.nbytes
        if self.gd is not None:
            n += self.gd.nbytes
        if self.weights is not None:
            n += sum(a.nbytes for a in self.weights)
        return n

    def weights_nbytes(self) -> int:
        """Bytes :meth:`adjoint_rows` ``keep_weights=True`` would allocate to store every blend weight."""
        return WEIGHT_BYTES * int(self.counts.sum(dtype=np.int64)) + 8 * (self.ids.shape[0] + 1)


def view_geometry(
    prepared, camera, *, background: np.ndarray, sh_degree: int, antialiased: bool, near: float, far: float
) -> ViewGeometry:
    """Project, sort and bin ``prepared`` (a :class:`PreparedScene` of N Gaussians) for ``camera`` and render it
    once with its own colours over ``background`` (float32 [3]), exactly as :func:`render_cpu` does."""
    n = prepared.n
    w, h = camera.width, camera.height
    xy = np.zeros((n, 2), np.float32)
    conic = np.zeros((n, 3), np.float32)
    opac = np.zeros(n, np.float32)
    depth = np.zeros(n, np.float32)
    color = np.zeros((n, 3), np.float32)
    radii = np.zeros((n, 2), np.int32)
    if n:
        _project(
            prepared.means,
            prepared.quats,
            prepared.scales,
            prepared.opacities,
            prepared.sh,
            int(sh_degree),
            np.ascontiguousarray(camera.world_to_camera, dtype=np.float64),
            np.ascontiguousarray(camera.position, dtype=np.float64),
            float(camera.fx),
            float(camera.fy),
            float(camera.cx),
            float(camera.cy),
            float(w),
            float(h),
            float(near),
            float(far),
            EPS2D,
            bool(antialiased),
            xy,
            conic,
            opac,
            depth,
            color,
            radii,
        )
    order = _visible_depth_order(radii, depth)
    tile_w = (w + TILE_SIZE - 1) // TILE_SIZE
    tile_h = (h + TILE_SIZE - 1) // TILE_SIZE
    gd = _gather(order, xy, conic, opac, depth, color, radii)
    tile_start, ids = _bin_tiles(
        gd, TILE_SIZE, tile_w, tile_h, max(1, 4 * get_num_threads()), _ADJOINT_BYTES_PER_ISECT, f"{w}x{h} view: "
    )
    rgb = np.empty((h, w, 3), np.float32)
    alpha = np.empty((h, w), np.float32)
    counts = np.zeros(ids.shape[0], np.int32)
    bg = np.ascontiguousarray(background, dtype=np.float32)
    _rasterize(
        tile_start,
        ids,
        gd,
        w,
        h,
        TILE_SIZE,
        tile_w,
        bg,
        rgb,
        alpha,
        np.empty((h, w), np.float32),
        False,
        np.zeros(0, np.float32),
        True,
        counts,
    )
    return ViewGeometry(order, gd, tile_start, ids, counts, w, h, tile_w, rgb, alpha)


def _rows_f32(geom: ViewGeometry, colours: np.ndarray) -> np.ndarray:
    m = geom.order.shape[0]
    c = np.ascontiguousarray(colours, dtype=np.float32)
    if c.shape != (m, 3):
        raise ValueError(f"colours: expected float [M={m}, 3] (one row per visible Gaussian), got {c.shape}")
    return c


def _image_f32(geom: ViewGeometry, images: np.ndarray) -> np.ndarray:
    im = np.ascontiguousarray(images, dtype=np.float32)
    if im.ndim != 3 or im.shape[:2] != (geom.height, geom.width) or not 1 <= im.shape[2] <= 4:
        raise ValueError(f"images: expected float [H={geom.height}, W={geom.width}, C<=4], got {im.shape}")
    return im


_NO_IMAGE = np.zeros((1, 1, 4), np.float32)


def _blend(geom: ViewGeometry, colours, images, forward: bool, adjoint: bool, fill: bool = False):
    """Run the sparse kernel when the weights are stored, else the rasterising one; returns (image or None,
    per-row sums float64 [M, 4] or None)."""
    h, w = geom.height, geom.width
    q = np.empty((h, w, 3), np.float32) if forward else np.zeros((1, 1, 3), np.float32)
    acc = np.zeros((geom.ids.shape[0] if adjoint else 0, 4), np.float64)
    col = colours if colours is not None else np.zeros((geom.order.shape[0], 3), np.float32)
    im = images if images is not None else _NO_IMAGE
    if geom.weights is not None:
        wstart, wpix, wval = geom.weights
        _sparse_blend(
            geom.tile_start,
            geom.ids,
            wstart,
            wpix,
            wval,
            col,
            im,
            w,
            h,
            TILE_SIZE,
            geom.tile_w,
            forward,
            adjoint,
            q,
            acc,
        )
    else:
        gd = geom.gd
        assert gd is not None  # released only once the weights are stored
        gd[:, _G_R] = col[:, 0]
        gd[:, _G_G] = col[:, 1]
        gd[:, _G_BL] = col[:, 2]
        if fill:
            n_e = int(geom.counts.sum(dtype=np.int64))
            wstart = np.zeros(geom.ids.shape[0] + 1, np.int64)
            np.cumsum(geom.counts, out=wstart[1:])
            wpix = np.zeros(n_e, np.uint8)
            wval = np.zeros(n_e, np.float32)
        else:
            wstart, wpix, wval = np.zeros(1, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.float32)
        filled = np.zeros(geom.ids.shape[0] if fill else 0, np.int32)
        _rasterize_adjoint(
            geom.tile_start,
            geom.ids,
            gd,
            w,
            h,
            TILE_SIZE,
            geom.tile_w,
            im,
            forward,
            adjoint,
            q,
            acc,
            fill,
            wstart,
            wpix,
            wval,
            filled,
        )
        if fill and np.array_equal(filled, geom.counts):  # the weights of every intersection, as counted
            geom.weights = (wstart, wpix, wval)
            geom.gd = None
    rows = _reduce_rows(geom.ids, acc, geom.order.shape[0]) if adjoint else None
    return (q if forward else None), rows


def render_rows(geom: ViewGeometry, colours: np.ndarray) -> np.ndarray:
    """float32 [H, W, 3]: the view blended with ``colours`` (float [M, 3], row j for Gaussian ``geom.order[j]``,
    used as given: no clamp, no +0.5) over a black background: the linear map ``A c`` of the blend weights."""
    return _blend(geom, _rows_f32(geom, colours), None, True, False)[0]


def adjoint_rows(geom: ViewGeometry, images: np.ndarray, *, keep_weights: bool = False) -> np.ndarray:
    """float64 [M, C]: ``A^T`` of ``images`` (float [H, W, C], C <= 4: say a residual image [H, W, 3] and an extra
    channel such as the alpha image): per visible Gaussian (row j), the sum over the pixels of its blend weight
    ``alpha * T`` times each channel, accumulated in the forward pass's tile and depth order (deterministic).

    ``keep_weights``: also store every blend weight on ``geom`` (:attr:`ViewGeometry.weights`,
    :meth:`ViewGeometry.weights_nbytes` bytes; the caller checks its memory), which makes later calls sparse
    products."""
    im = _image_f32(geom, images)
    return _blend(geom, None, im, False, True, fill=keep_weights and geom.weights is None)[1][:, : im.shape[2]]


def normal_rows(geom: ViewGeometry, colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A^T A c`` in one pass: (float32 [H, W, 3] the image ``A c`` as :func:`render_rows` gives it, float64
    [M, 3] ``A^T`` of that image as :func:`adjoint_rows` gives it). Each tile blends its pixels, then walks its
    Gaussians again for the adjoint, so the image never leaves the tile in between."""
    q, rows = _blend(geom, _rows_f32(geom, colours), None, True, True)
    return q, rows[:, :3]


@njit(cache=True, nogil=True)
def _reduce_rows(ids, acc, m):
    """float64 [m, C]: per-row sums of per-intersection values ``acc`` [n_isect, C] (serial, fixed order)."""
    out = np.zeros((m, acc.shape[1]), np.float64)
    for k in range(ids.shape[0]):
        j = ids[k]
        for c in range(acc.shape[1]):
            out[j, c] += acc[k, c]
    return out


@guarded
@njit(parallel=True, cache=True, nogil=True)
def _sparse_blend(
    tile_start, ids, wstart, wpix, wval, colours, images, width, height, tile_size, tile_w, forward, adjoint, q_out, acc
):
    """:func:`_rasterize_adjoint` from stored weights: ``forward`` blends ``colours`` (float32 [M, 3]) into
    ``q_out`` (float32 [H, W, 3], no background); ``adjoint`` sums weight x image per intersection into ``acc``
    (float64 [n_isect, 4]), the image being the forward result when both are set, else ``images`` [H, W, C]."""
    n_tiles = tile_start.shape[0] - 1
    nch = images.shape[2]
    npix = tile_size * tile_size
    for t in prange(n_tiles):
        ty0 = (t // tile_w) * tile_size
        tx0 = (t % tile_w) * tile_size
        tx1 = min(tx0 + tile_size, width)
        ty1 = min(ty0 + tile_size, height)
        img = np.zeros((npix, 4), np.float32)
        if forward:
            for k in range(tile_start[t], tile_start[t + 1]):
                j = ids[k]
                c0 = colours[j, 0]
                c1 = colours[j, 1]
                c2 = colours[j, 2]
                for e in range(wstart[k], wstart[k + 1]):
                    p = wpix[e]
                    v = wval[e]
                    img[p, 0] += c0 * v
                    img[p, 1] += c1 * v
                    img[p, 2] += c2 * v
            for py in range(ty0, ty1):
                for px in range(tx0, tx1):
                    p = (py - ty0) * tile_size + (px - tx0)
                    q_out[py, px, 0] = img[p, 0]
                    q_out[py, px, 1] = img[p, 1]
                    q_out[py, px, 2] = img[p, 2]
        elif adjoint:
            for py in range(ty0, ty1):
                for px in range(tx0, tx1):
                    p = (py - ty0) * tile_size + (px - tx0)
                    for c in range(nch):
                        img[p, c] = images[py, px, c]
        if adjoint:
            for k in range(tile_start[t], tile_start[t + 1]):
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                for e in range(wstart[k], wstart[k + 1]):
                    p = wpix[e]
                    v = wval[e]
                    s0 += v * img[p, 0]
                    s1 += v * img[p, 1]
                    s2 += v * img[p, 2]
                    s3 += v * img[p, 3]
                acc[k, 0] = s0
                acc[k, 1] = s1
                acc[k, 2] = s2
                acc[k, 3] = s3


@guarded
@njit(parallel=True, cache=True, nogil=True, fastmath=_FASTMATH_RASTER)
def _rasterize_adjoint(
    tile_start,
    ids,
    gd,  # int64 [n_tiles+1], int32 [n_isect], f32 [M, 16]
    width,
    height,
    tile_size,
    tile_w,
    images,  # f32 [H, W, C] (C <= 4), read when adjoint and not forward
    forward,  # bool: blend gd's colours (background 0) into q_out
    adjoint,  # bool: per intersection, sum weight x image (the forward result when forward, else images)
    q_out,  # f32 [H, W, 3] written when forward
    isect_acc,  # f64 [n_isect, 4] written when adjoint
    fill,  # bool: store every weight of the adjoint walk (wstart from the counts)
    wstart,  # i64 [n_isect + 1]
    wpix,  # u8 [E] pixel within the tile
    wval,  # f32 [E] weight
    filled,  # i32 [n_isect] weights stored per intersection (to check against the counts)
):
    """The adjoint of :func:`_rasterize`'s colour blend. The walk over each tile's pixels and Gaussians is
    :func:`_rasterize`'s, line for line (same box, row bounds, cut-offs and early stop), so the weights are the
    forward pass's. With ``forward`` and ``adjoint`` each tile blends ``gd``'s colours into its pixels, then walks
    its Gaussians again for the adjoint of that image (``A^T A c``) without the image leaving the tile."""
    n_tiles = tile_start.shape[0] - 1
    nch = images.shape[2]
    thr = _F32_THRESHOLD
    amax = np.float32(ALPHA_MAX)
    tstop = np.float32(T_STOP)
    half = np.float32(0.5)
    one = np.float32(1.0)
    npix = tile_size * tile_size
    for t in prange(n_tiles):
        ty0 = (t // tile_w) * tile_size
        tx0 = (t % tile_w) * tile_size
        tx1 = min(tx0 + tile_size, width)
        ty1 = min(ty0 + tile_size, height)
        trans = np.ones(npix, np.float32)
        alive = np.zeros(npix, np.bool_)
        row_alive = np.zeros(tile_size, np.int64)
        img = np.zeros((npix, 4), np.float32)  # the image this tile's adjoint reads
        if adjoint and not forward:
            for py in range(ty0, ty1):
                for px in range(tx0, tx1):
                    p = (py - ty0) * tile_size + (px - tx0)
                    for c in range(nch):
                        img[p, c] = images[py, px, c]
        n_phase = (1 if forward else 0) + (1 if adjoint else 0)
        for phase in range(n_phase):
            fwd = forward and phase == 0
            n_alive = 0
            for py in range(ty0, ty1):
                for px in range(tx0, tx1):
                    p = (py - ty0) * tile_size + (px - tx0)
                    alive[p] = True
                    trans[p] = one
                    n_alive += 1
                row_alive[py - ty0] = tx1 - tx0
            for k in range(tile_start[t], tile_start[t + 1]):
                if n_alive == 0:
                    break
                j = ids[k]
                gx = gd[j, _G_X]
                gy = gd[j, _G_Y]
                rx = gd[j, _G_RX]
                ry = gd[j, _G_RY]
                x0 = max(tx0, np.int64(math.ceil(gx - rx - half)))
                x1 = min(tx1, np.int64(math.floor(gx + rx - half)) + 1)
                y0 = max(ty0, np.int64(math.ceil(gy - ry - half)))
                y1 = min(ty1, np.int64(math.floor(gy + ry - half)) + 1)
                if x0 >= x1 or y0 >= y1:
                    continue
                ca = gd[j, _G_A]
                cb = gd[j, _G_B]
                cc = gd[j, _G_C]
                op = gd[j, _G_OP]
                cr = gd[j, _G_R]
                cg = gd[j, _G_G]
                cbl = gd[j, _G_BL]
                sigcut = gd[j, _G_SIGCUT]
                s0 = 0.0
                s1 = 0.0
                s2 = 0.0
                s3 = 0.0
                e = wstart[k] if fill else 0
                e_end = wstart[k + 1] if fill else 0
                qa = half * ca
                inv2qa = half / qa
                qx = math.exp(-ca)  # ratio of consecutive column steps of exp(-sigma)
                for py in range(y0, y1):
                    if row_alive[py - ty0] == 0:
                        continue
                    ddy = gy - (np.float32(py) + half)
                    qb = cb * ddy
                    qc = half * cc * ddy * ddy - sigcut
                    disc = qb * qb - 4.0 * qa * qc
                    if disc < 0:
                        continue
                    sq = math.sqrt(disc)
                    lo = max(x0, np.int64(math.ceil(gx - half - (sq - qb) * inv2qa - 0.01)))
                    hi = min(x1, np.int64(math.floor(gx - half + (sq + qb) * inv2qa + 0.01)) + 1)
                    row = (py - ty0) * tile_size - tx0
                    # exp(-sigma) by the forward pass's recurrence (same weights, so A^T is A's transpose)
                    d0 = gx - (np.float32(lo) + half)
                    ex = math.exp(-(half * (ca * d0 * d0 + cc * ddy * ddy) + cb * d0 * ddy))
                    step = math.exp(cb * ddy - half * ca * (one - np.float32(2.0) * d0))
                    for px in range(lo, hi):
                        p = row + px
                        e_px = ex
                        ex *= step
                        step *= qx
                        if not alive[p]:
                            continue
                        ddx = gx - (np.float32(px) + half)
                        sigma = half * (ca * ddx * ddx + cc * ddy * ddy) + cb * ddx * ddy
                        if sigma < 0 or sigma > sigcut:
                            continue
                        alpha = min(amax, op * e_px)
                        if alpha < thr:
                            continue
                        tp = trans[p]
                        nt = tp * (one - alpha)
                        if nt <= tstop:
                            alive[p] = False
                            n_alive -= 1
                            row_alive[py - ty0] -= 1
                            continue
                        vis = alpha * tp
                        if fwd:
                            img[p, 0] += cr * vis
                            img[p, 1] += cg * vis
                            img[p, 2] += cbl * vis
                        else:
                            s0 += vis * img[p, 0]
                            s1 += vis * img[p, 1]
                            s2 += vis * img[p, 2]
                            s3 += vis * img[p, 3]
                            if fill:
                                if e < e_end:
                                    wpix[e] = p
                                    wval[e] = vis
                                e += 1
                        trans[p] = nt
                if not fwd:
                    isect_acc[k, 0] = s0
                    isect_acc[k, 1] = s1
                    isect_acc[k, 2] = s2
                    isect_acc[k, 3] = s3
                    if fill:
                        filled[k] = e - wstart[k]
            if fwd:
                for py in range(ty0, ty1):
                    for px in range(tx0, tx1):
                        p = (py - ty0) * tile_size + (px - tx0)
                        q_out[py, px, 0] = img[p, 0]
                        q_out[py, px, 1] = img[p, 1]
                        q_out[py, px, 2] = img[p, 2]
