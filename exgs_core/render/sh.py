"""Spherical-harmonic colour, in gsplat's real SH basis (degree 0..3).

gsplat evaluates SH with Sloan's "Efficient Spherical Harmonic Evaluation" (JCGT 2013) recurrences; the basis is
the same real SH basis as 3DGS (constants in :mod:`exgs_core.conventions`), only the arithmetic is arranged
differently. The view direction is ``normalize(mean - camera_position)`` in world axes; the degree-0 term needs
no direction. The renderer then adds 0.5 and clamps at 0 (no upper clamp), as ``gsplat.rendering`` does.

Two entry points:

* :func:`sh_to_color` — NumPy, vectorised over N, for callers outside the renderer.
* :func:`eval_sh_channel` — a numba kernel for one Gaussian and one channel, used by :mod:`.cpu`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..conventions import MAX_SH_DEGREE, sh_coeff_count

# Sloan-form constants (real SH, same basis as 3DGS).
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2_A = 1.0925484305920792  # xy, yz, xz terms
_C2_B = 0.9461746957575601  # 3 * 0.31539156525252005 (z^2 part of Y_2^0)
_C2_C = 0.31539156525252005
_C2_D = 0.5462742152960396  # x^2 - y^2 term
_C3_A = 0.5900435899266435
_C3_B = 1.445305721320277
_C3_C = 2.285228997322329  # 5 * 0.4570457994644658
_C3_D = 0.4570457994644658
_C3_E = 1.865881662950577  # 5 * 0.3731763325901154
_C3_F = 1.119528997770346  # 3 * 0.3731763325901154


@njit(cache=True, inline="always")
def eval_sh_channel(sh, i, c, degree, x, y, z):
    """SH value (without the +0.5 offset) of Gaussian ``i``, channel ``c``.

    Args:
        sh: float32 [N, K, 3] coefficients, K >= (degree + 1)^2.
        i, c: Gaussian index and channel (0..2).
        degree: SH degree to evaluate, 0..3.
        x, y, z: the **unit** view direction (world axes); ignored for degree 0.

    Returns:
        float64 scalar.
    """
    r = _C0 * sh[i, 0, c]
    if degree >= 1:
        r += _C1 * (-y * sh[i, 1, c] + z * sh[i, 2, c] - x * sh[i, 3, c])
        if degree >= 2:
            z2 = z * z
            f_tmp0b = -_C2_A * z
            f_c1 = x * x - y * y
            f_s1 = 2.0 * x * y
            r += (
                _C2_D * f_s1 * sh[i, 4, c]
                + f_tmp0b * y * sh[i, 5, c]
                + (_C2_B * z2 - _C2_C) * sh[i, 6, c]
                + f_tmp0b * x * sh[i, 7, c]
                + _C2_D * f_c1 * sh[i, 8, c]
            )
            if degree >= 3:
                f_tmp0c = -_C3_C * z2 + _C3_D
                f_tmp1b = _C3_B * z
                f_c2 = x * f_c1 - y * f_s1
                f_s2 = x * f_s1 + y * f_c1
                r += (
                    -_C3_A * f_s2 * sh[i, 9, c]
                    + f_tmp1b * f_s1 * sh[i, 10, c]
                    + f_tmp0c * y * sh[i, 11, c]
                    + z * (_C3_E * z2 - _C3_F) * sh[i, 12, c]
                    + f_tmp0c * x * sh[i, 13, c]
                    + f_tmp1b * f_c1 * sh[i, 14, c]
                    - _C3_A * f_c2 * sh[i, 15, c]
                )
    return r


def sh_to_color(sh: np.ndarray, dirs: np.ndarray, degree: int | None = None, *, offset: bool = True) -> np.ndarray:
    """Evaluate SH colour for N Gaussians (NumPy, float64 internally).

    Args:
        sh: float [N, K, 3] coefficients, ``sh[:, 0]`` = DC.
        dirs: float [N, 3] view directions ``mean - camera_position`` (world axes); need not be unit length.
            Zero-length directions give the degree-0 colour only (their higher terms are 0).
        degree: SH degree to use, 0..3 (default: the degree K implies). Must satisfy (degree+1)^2 <= K.
        offset: when True (default), return ``max(SH + 0.5, 0)``, the colour the rasterizer blends;
            when False, the raw SH sum.

    Returns:
        float32 [N, 3].
    """
    sh = np.asarray(sh, dtype=np.float64)
    if sh.ndim != 3 or sh.shape[2] != 3:
        raise ValueError(f"sh: expected float [N, K, 3], got shape {sh.shape}")
    k = sh.shape[1]
    if degree is None:
        degree = int(round(np.sqrt(k))) - 1
    if not 0 <= degree <= MAX_SH_DEGREE or sh_coeff_count(degree) > k:
        raise ValueError(f"sh degree {degree} needs {(degree + 1) ** 2} coefficients, scene has K={k}")
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    if d.shape[0] != sh.shape[0]:
        raise ValueError(f"dirs: expected [N={sh.shape[0]}, 3], got {d.shape}")
    n = np.linalg.norm(d, axis=1, keepdims=True)
    d = np.divide(d, n, out=np.zeros_like(d), where=n > 0)
    x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]  # [N, 1] each
    out = _C0 * sh[:, 0]  # [N, 3]
    if degree >= 1:
        out = out + _C1 * (-y * sh[:, 1] + z * sh[:, 2] - x * sh[:, 3])
    if degree >= 2:
        z2 = z * z
        c1, s1 = x * x - y * y, 2 * x * y
        out = out + (
            _C2_D * s1 * sh[:, 4]
            - _C2_A * z * y * sh[:, 5]
            + (_C2_B * z2 - _C2_C) * sh[:, 6]
            - _C2_A * z * x * sh[:, 7]
            + _C2_D * c1 * sh[:, 8]
        )
    if degree >= 3:
        t0 = -_C3_C * z2 + _C3_D
        t1 = _C3_B * z
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        out = out + (
            -_C3_A * s2 * sh[:, 9]
            + t1 * s1 * sh[:, 10]
            + t0 * y * sh[:, 11]
            + z * (_C3_E * z2 - _C3_F) * sh[:, 12]
            + t0 * x * sh[:, 13]
            + t1 * c1 * sh[:, 14]
            - _C3_A * c2 * sh[:, 15]
        )
    if offset:
        out = np.maximum(out + 0.5, 0.0)
    return out.astype(np.float32)
