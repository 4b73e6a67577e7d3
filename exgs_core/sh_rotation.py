"""Rotating spherical-harmonic colour, and applying a 4x4 object transform to a whole scene.

SH bands do not mix under rotation: band l (2l+1 coefficients per channel) maps through one
(2l+1) x (2l+1) matrix ``D_l(R)``. We get ``D_l`` exactly (up to float64 rounding) by least squares on the basis
evaluated at 64 fixed directions: with ``B[m] = Y_l(d_m)`` and ``B_r[m] = Y_l(R^T d_m)``, ``B_r = B X`` has an
exact solution ``X``, and the rotated coefficients are ``c' = X c`` (:func:`sh_rotation_matrices`). The basis is
the real SH basis of 3DGS / gsplat (constants in :mod:`exgs_core.conventions`), so the rotated scene renders from
a rotated camera exactly like the original one (tested against :func:`exgs_core.render.sh.sh_to_color`).

>>> import numpy as np
>>> sh = np.zeros((1, 4, 3), np.float32); sh[0, 3, 0] = 1.0          # red varies with -x
>>> R = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]])               # 90 deg about +z: x -> y
>>> np.round(rotate_sh(sh, R)[0, :, 0], 6).tolist()                   # now red varies with -y
[0.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

import numpy as np

from .conventions import SH_C1, SH_C2, SH_C3, sh_degree_from_count
from .scene import GaussianScene

_N_DIRS = 64


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """Real SH basis (3DGS/gsplat signs and order) at unit directions, without the DC term.

    Args:
        dirs: float [M, 3] unit directions.
        degree: 1..3.

    Returns:
        float64 [M, (degree+1)^2 - 1]: columns 0..2 band 1, 3..7 band 2, 8..14 band 3.
    """
    d = np.asarray(dirs, np.float64)
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    cols = [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        cols += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return np.stack(cols, axis=1)


def sh_rotation_matrices(R: np.ndarray, degree: int) -> list[np.ndarray]:
    """Per-band matrices ``X_l`` [(2l+1), (2l+1)] (l = 1..degree) with ``c'_l = X_l @ c_l``.

    ``c'`` are the coefficients of the function ``f'(d) = f(R^T d)``: the colour a Gaussian shows towards ``d``
    after the rotation equals what it showed towards ``R^T d`` before. ``R`` is any orthogonal 3x3 matrix
    (reflections included).
    """
    R = np.asarray(R, np.float64)
    if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-5):
        raise ValueError(f"R: expected an orthogonal 3x3 matrix, got {np.asarray(R).tolist()}")
    dirs = _fibonacci(_N_DIRS)
    B = sh_basis(dirs, degree)  # [M, K-1]
    Br = sh_basis(dirs @ R, degree)  # rows are R^T d_m
    out = []
    lo = 0
    for band in range(1, degree + 1):
        hi = lo + 2 * band + 1
        # Y_l(R^T d) = M Y_l(d)  =>  Br = B M^T ; c' = M^T c.
        mt, *_ = np.linalg.lstsq(B[:, lo:hi], Br[:, lo:hi], rcond=None)
        out.append(mt)
        lo = hi
    return out


def rotate_sh(sh: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotate SH colour coefficients with the rotation ``R`` (3x3, orthogonal; world axes).

    Args:
        sh: float [N, K, 3], K in (1, 4, 9, 16), ``sh[:, 0]`` = DC (unchanged by rotations).
        R: float [3, 3] orthogonal matrix, applied to directions as ``d' = R d``.

    Returns:
        float32 [N, K, 3], a new array (the input is never modified).
    """
    sh = np.asarray(sh)
    if sh.ndim != 3 or sh.shape[2] != 3:
        raise ValueError(f"sh: expected float [N, K, 3], got shape {sh.shape}")
    degree = sh_degree_from_count(sh.shape[1])
    out = np.array(sh, dtype=np.float32, copy=True)
    if degree == 0:
        return out
    lo = 1
    for mt in sh_rotation_matrices(R, degree):
        hi = lo + mt.shape[0]
        out[:, lo:hi, :] = np.einsum("ij,njc->nic", mt, sh[:, lo:hi, :].astype(np.float64)).astype(np.float32)
        lo = hi
    return out


# --------------------------------------------------------------------------- quaternions (w, x, y, z)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 3] rotation matrices from quaternions [N, 4] (w, x, y, z; normalised here)."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.divide(q, n, out=np.tile([1.0, 0, 0, 0], (len(q), 1)), where=n > 0)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """float64 [N, 4] unit quaternions (w, x, y, z; w >= 0) from proper rotation matrices [N, 3, 3]."""
    m = np.asarray(m, np.float64)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack(
        [
            np.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            np.stack(
                [
                    m[:, 2, 1] - m[:, 1, 2],
                    1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                    m[:, 0, 1] + m[:, 1, 0],
                    m[:, 0, 2] + m[:, 2, 0],
                ],
                -1,
            ),
            np.stack(
                [
                    m[:, 0, 2] - m[:, 2, 0],
                    m[:, 0, 1] + m[:, 1, 0],
                    1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                    m[:, 1, 2] + m[:, 2, 1],
                ],
                -1,
            ),
            np.stack(
                [
                    m[:, 1, 0] - m[:, 0, 1],
                    m[:, 0, 2] + m[:, 2, 0],
                    m[:, 1, 2] + m[:, 2, 1],
                    1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
                ],
                -1,
            ),
        ],
        axis=1,
    )  # [N, 4 candidates, 4]; candidate i has its largest component at index i
    diag = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], -1)
    best = np.argmax(diag, axis=1)
    q = cand[np.arange(len(m)), best]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of quaternions (w, x, y, z), broadcasting [.., 4]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


# --------------------------------------------------------------------------- whole-scene transform


def polar_rotation(a: np.ndarray) -> np.ndarray:
    """The orthogonal factor R of the polar decomposition ``a = R P`` (3x3; R is a reflection when det(a) < 0)."""
    u, _, vt = np.linalg.svd(np.asarray(a, np.float64))
    return u @ vt


def transform_scene(scene: GaussianScene, matrix: np.ndarray) -> GaussianScene:
    """``scene`` moved by an affine 4x4 ``matrix`` (e.g. a Blender object's ``matrix_world``), as a new scene.

    Means go through the full matrix, covariances become ``A Sigma A^T`` (A = upper-left 3x3, so non-uniform scale
    and shear are exact), and SH colour is rotated with the rotation part of A (its polar factor). Rotations with a
    uniform scale take a fast path (quaternion product, log-scale offset); anything else re-decomposes each
    covariance (eigh). Opacity is unchanged. The identity returns a copy.
    """
    m = np.asarray(matrix, np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        raise ValueError(f"matrix: expected a finite 4x4 matrix, got shape {m.shape}")
    out = scene.copy()
    if np.allclose(m, np.eye(4), atol=1e-12, rtol=0):
        return out
    a, t = m[:3, :3], m[:3, 3]
    if abs(np.linalg.det(a)) < 1e-20:
        raise ValueError("matrix: the 3x3 part is singular (a zero scale?)")
    out.means = (scene.means.astype(np.float64) @ a.T + t).astype(np.float32)
    rot = polar_rotation(a)
    p = rot.T @ a  # symmetric positive factor
    s = np.cbrt(abs(np.linalg.det(a)))
    if np.linalg.det(rot) > 0 and np.allclose(p, s * np.eye(3), atol=1e-6 * max(s, 1e-12)):
        qr = matrix_to_quat(rot[None])[0]
        q = scene.quats.astype(np.float64)
        out.quats = quat_multiply(qr, q).astype(np.float32)
        out.log_scales = (scene.log_scales.astype(np.float64) + np.log(s)).astype(np.float32)
    else:
        rq = quat_to_matrix(scene.quats)  # [N, 3, 3]
        sc = np.exp(scene.log_scales.astype(np.float64))  # [N, 3]
        ar = a @ rq  # [N, 3, 3] = A R_q
        cov = (ar * sc[:, None, :] ** 2) @ np.swapaxes(ar, 1, 2)  # A R S^2 R^T A^T
        w, v = np.linalg.eigh(cov)  # ascending eigenvalues, columns are axes
        v[np.linalg.det(v) < 0, :, 0] *= -1  # proper rotations only
        out.quats = matrix_to_quat(v).astype(np.float32)
        out.log_scales = (0.5 * np.log(np.maximum(w, 1e-30))).astype(np.float32)
    out.sh = rotate_sh(scene.sh, rot)
    return out


__all__ = [
    "matrix_to_quat",
    "polar_rotation",
    "quat_multiply",
    "quat_to_matrix",
    "rotate_sh",
    "sh_basis",
    "sh_rotation_matrices",
    "transform_scene",
]
