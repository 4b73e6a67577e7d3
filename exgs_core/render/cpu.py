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

Deviations (documented, not in gsplat)
    Gaussians with any non-finite value used by the renderer (mean, rotation, scale, opacity, SH colour) or a zero
    quaternion are culled (gsplat culls NaN geometry through a zero radius but would let a NaN colour through).
    Arithmetic: projection in float64, blending in float32 (gsplat: float32 and ``__expf``) — differences are
    ~1e-6, far below 1/255.
"""

from __future__ import annotations

import math
import time

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

    One sort of uint64 keys ``depth_bits << 32 | index`` (unique, so the order is that of a stable sort; positive
    float32 values order like their bit patterns; every visible depth is >= near > 0).
    """
    vis = np.flatnonzero((radii[:, 0] > 0) | (radii[:, 1] > 0)).astype(np.uint64)  # [M]
    keys = depth[vis.astype(np.int64)].view(np.uint32).astype(np.uint64) << np.uint64(32)
    keys |= vis
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int32)


# Per-Gaussian record for the blending kernel, one 64-byte row per visible Gaussian in depth order.
_G_X, _G_Y, _G_A, _G_B, _G_C, _G_OP, _G_R, _G_G, _G_BL, _G_Z, _G_RX, _G_RY, _G_SIGCUT = range(13)
_G_WIDTH = 16


@guarded
@njit(parallel=True, cache=True, nogil=True)
def _gather(order, xy, conic, opac, depth, color, radii):
    """float32 [M, 16]: the blending inputs of the Gaussians in ``order`` (front to back), one cache line each.

    Columns: x, y (px), conic A, B, C, opacity, r, g, b, camera z, radius x, radius y (px), ``sigcut`` and padding.
    ``sigcut = ln(opacity * 255) + 1e-3``: any ``sigma`` above it gives ``alpha < 1/255`` (the margin keeps the test
    conservative; the exact ``alpha < 1/255`` test still follows), so ``exp`` is skipped there.
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
        n_alive = 0
        for py in range(ty0, ty1):
            for px in range(tx0, tx1):
                alive[(py - ty0) * tile_size + (px - tx0)] = True
                n_alive += 1
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
            for py in range(y0, y1):
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
                for px in range(lo, hi):
                    p = row + px
                    if not alive[p]:
                        continue
                    ddx = gx - (np.float32(px) + half)
                    sigma = half * (ca * ddx * ddx + cc * ddy * ddy) + cb * ddx * ddy
                    if sigma < 0 or sigma > sigcut:
                        continue
                    alpha = min(amax, op * math.exp(-sigma))
                    if alpha < thr:
                        continue
                    tp = trans[p]
                    nt = tp * (one - alpha)
                    if nt <= tstop:
                        alive[p] = False
                        n_alive -= 1
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
