"""Brute-force reference rasterizer (NumPy, float64): the test oracle for ``exgs_core.render``.

Written independently of :mod:`exgs_core.render.cpu` and kept plain: every visible Gaussian is evaluated at every
pixel, Gaussians are blended in depth order, no tiles, no bounding boxes, no numba. It implements the same
gsplat 1.5.3 conventions (see the ``exgs_core.render.cpu`` docstring); SH uses the 3DGS (Inria) form of the basis
with the constants of :mod:`exgs_core.conventions`, a different arrangement of the arithmetic than the renderer's
Sloan form. Only for small images and a few hundred Gaussians: cost is O(N * H * W).
"""

from __future__ import annotations

import numpy as np

from exgs_core.conventions import SH_C0, SH_C1, SH_C2, SH_C3

EPS2D = 0.3
ALPHA_THRESHOLD = np.float32(1.0 / 255.0).item()
ALPHA_MAX = 0.999
T_STOP = 1e-4


def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 3] rotation matrices from quaternions [N, 4] (w, x, y, z; normalised here)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def sh_color_inria(sh: np.ndarray, dirs: np.ndarray, degree: int) -> np.ndarray:
    """float64 [N, 3]: max(SH(dirs) + 0.5, 0) in the 3DGS formulation; sh [N, K, 3], dirs [N, 3] (any length)."""
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    res = SH_C0 * sh[:, 0]
    if degree > 0:
        res = res - SH_C1 * y * sh[:, 1] + SH_C1 * z * sh[:, 2] - SH_C1 * x * sh[:, 3]
    if degree > 1:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        res = (
            res
            + SH_C2[0] * xy * sh[:, 4]
            + SH_C2[1] * yz * sh[:, 5]
            + SH_C2[2] * (2 * zz - xx - yy) * sh[:, 6]
            + SH_C2[3] * xz * sh[:, 7]
            + SH_C2[4] * (xx - yy) * sh[:, 8]
        )
    if degree > 2:
        res = (
            res
            + SH_C3[0] * y * (3 * xx - yy) * sh[:, 9]
            + SH_C3[1] * xy * z * sh[:, 10]
            + SH_C3[2] * y * (4 * zz - xx - yy) * sh[:, 11]
            + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * sh[:, 12]
            + SH_C3[4] * x * (4 * zz - xx - yy) * sh[:, 13]
            + SH_C3[5] * z * (xx - yy) * sh[:, 14]
            + SH_C3[6] * x * (xx - 3 * yy) * sh[:, 15]
        )
    return np.maximum(res + 0.5, 0.0)


def project(scene, camera, *, sh_degree=None, antialiased=False, near=None, far=None) -> dict:
    """Per-Gaussian screen-space quantities, float64.

    Returns:
        dict with ``visible`` bool [N], ``mean2d`` [N, 2] px, ``conic`` [N, 3] (A, B, C of the inverse dilated
        2-D covariance), ``opacity`` [N] (compensated when antialiased), ``depth`` [N] camera z,
        ``color`` [N, 3], ``radius`` [N, 2] px.
    """
    near = camera.near if near is None else near
    far = camera.far if far is None else far
    deg = scene.sh_degree if sh_degree is None else sh_degree
    n = scene.n
    vm = camera.world_to_camera
    R, t = vm[:3, :3], vm[:3, 3]
    means = scene.means.astype(np.float64)
    pc = means @ R.T + t  # [N, 3]
    with np.errstate(all="ignore"):
        rq = quat_to_rotmat(scene.quats.astype(np.float64))  # [N, 3, 3]
        s2 = np.exp(2.0 * scene.log_scales.astype(np.float64))  # [N, 3] variances along the local axes
        cov_w = np.einsum("nij,nj,nkj->nik", rq, s2, rq)  # [N, 3, 3]
        cov_c = np.einsum("ij,njk,lk->nil", R, cov_w, R)  # [N, 3, 3]
        x, y, z = pc.T
        w_, h_ = camera.width, camera.height
        tfx, tfy = 0.5 * w_ / camera.fx, 0.5 * h_ / camera.fy
        u_clamped = np.clip(x / z, -(camera.cx / camera.fx + 0.3 * tfx), (w_ - camera.cx) / camera.fx + 0.3 * tfx)
        v_clamped = np.clip(y / z, -(camera.cy / camera.fy + 0.3 * tfy), (h_ - camera.cy) / camera.fy + 0.3 * tfy)
        J = np.zeros((n, 2, 3))
        J[:, 0, 0] = camera.fx / z
        J[:, 0, 2] = -camera.fx * u_clamped / z
        J[:, 1, 1] = camera.fy / z
        J[:, 1, 2] = -camera.fy * v_clamped / z
        cov2 = np.einsum("nij,njk,nlk->nil", J, cov_c, J)  # [N, 2, 2]
        det0 = cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2
        cov2[:, 0, 0] += EPS2D
        cov2[:, 1, 1] += EPS2D
        det = cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2
        conic = np.stack([cov2[:, 1, 1] / det, -cov2[:, 0, 1] / det, cov2[:, 0, 0] / det], -1)
        op = 1.0 / (1.0 + np.exp(-scene.opacity_logits.astype(np.float64)))
        if antialiased:
            op = op * np.sqrt(np.maximum(det0 / det, 0.0))
        ext = np.minimum(3.33, np.sqrt(2.0 * np.log(op / ALPHA_THRESHOLD)))
        rad = np.ceil(ext[:, None] * np.sqrt(np.stack([cov2[:, 0, 0], cov2[:, 1, 1]], -1)))  # [N, 2]
        mean2d = np.stack([camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy], -1)
        dirs = means - camera.position
        color = (
            sh_color_inria(scene.sh.astype(np.float64), dirs, deg)
            if deg > 0
            else np.maximum(SH_C0 * scene.sh[:, 0].astype(np.float64) + 0.5, 0.0)
        )
        vis = (z >= near) & (z <= far) & (det > 0) & (op >= ALPHA_THRESHOLD)
        vis &= (rad > 0).any(-1)
        vis &= (mean2d[:, 0] + rad[:, 0] > 0) & (mean2d[:, 0] - rad[:, 0] < w_)
        vis &= (mean2d[:, 1] + rad[:, 1] > 0) & (mean2d[:, 1] - rad[:, 1] < h_)
        finite = np.isfinite(np.concatenate([mean2d, conic, op[:, None], color, rad, z[:, None]], 1)).all(1)
        vis &= finite
    return {"visible": vis, "mean2d": mean2d, "conic": conic, "opacity": op, "depth": z, "color": color, "radius": rad}


def render_oracle(scene, camera, *, background=None, sh_degree=None, antialiased=False, near=None, far=None) -> dict:
    """Brute-force render.

    Returns:
        dict with ``rgb`` float64 [H, W, 3], ``alpha`` [H, W], ``depth`` [H, W] (expected z, 0 where alpha = 0),
        ``weights`` [N] (sum over pixels of alpha * T per Gaussian), ``counts`` int64 [N] (pixels each Gaussian
        was blended into), ``n_visible`` int.
    """
    pr = project(scene, camera, sh_degree=sh_degree, antialiased=antialiased, near=near, far=far)
    h, w = camera.height, camera.width
    bg = np.zeros(3) if background is None else np.broadcast_to(np.asarray(background, np.float64), (3,))
    py, px = np.mgrid[0:h, 0:w].astype(np.float64)
    px += 0.5
    py += 0.5
    T = np.ones((h, w))
    done = np.zeros((h, w), bool)
    rgb = np.zeros((h, w, 3))
    zsum = np.zeros((h, w))
    weights = np.zeros(scene.n)
    counts = np.zeros(scene.n, np.int64)
    idx = np.nonzero(pr["visible"])[0]
    order = idx[np.argsort(pr["depth"][idx].astype(np.float32), kind="stable")]
    for g in order:
        a_, b_, c_ = pr["conic"][g]
        dx = pr["mean2d"][g, 0] - px
        dy = pr["mean2d"][g, 1] - py
        sigma = 0.5 * (a_ * dx * dx + c_ * dy * dy) + b_ * dx * dy
        alpha = np.minimum(ALPHA_MAX, pr["opacity"][g] * np.exp(-sigma))
        use = (~done) & (sigma >= 0) & (alpha >= ALPHA_THRESHOLD)
        next_t = T * (1.0 - alpha)
        stop = use & (next_t <= T_STOP)
        done |= stop
        use &= ~stop
        vis = np.where(use, alpha * T, 0.0)
        rgb += vis[..., None] * pr["color"][g]
        zsum += vis * pr["depth"][g]
        weights[g] = vis.sum()
        counts[g] = use.sum()
        T = np.where(use, next_t, T)
    alpha_img = 1.0 - T
    return {
        "rgb": rgb + T[..., None] * bg,
        "alpha": alpha_img,
        "depth": zsum / np.maximum(alpha_img, 1e-10),
        "weights": weights,
        "counts": counts,
        "n_visible": int(len(idx)),
    }
