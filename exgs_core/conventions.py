"""The one place that pins exgs's conventions. Every module imports these instead of restating them.

Quaternions
    ``[w, x, y, z]`` (scalar first), as 3DGS PLY ``rot_0..3`` and gsplat. SPZ stores ``x, y, z, w``; its
    reader reorders. Scenes hold normalised quaternions after :meth:`GaussianScene.sanitize`; readers keep
    whatever the file stores (3DGS PLY stores them unnormalised) and renderers normalise on use.

Scales
    Stored as natural-log scales ``log_scales [N, 3]`` (3DGS PLY ``scale_*``). Linear scale = ``exp``.

Opacity
    Stored as logits ``opacity_logits [N]``; opacity = ``sigmoid(logit)`` in (0, 1).

Colour
    Spherical-harmonic coefficients ``sh [N, K, 3]`` with ``K = (degree + 1) ** 2``; ``sh[:, 0]`` is the DC
    term (PLY ``f_dc_*``). Colour = ``SH_C0 * dc + ... + 0.5``, clamped at 0 (gsplat, 3DGS). The resulting RGB is
    in the space the scene was trained in (display-referred sRGB for every capture we know of); renders are
    written to PNG as is, without another transfer function. PLY ``f_rest_*`` is channel-major: the first
    ``K - 1`` values are red coefficients 1..K-1, then green, then blue.

World and camera axes
    World coordinates are the scene's own (3DGS/COLMAP: usually y down). Cameras are OpenCV/COLMAP, as gsplat
    uses: +x right, +y down, +z forward (looking along +z). ``world_to_camera`` is the 4x4 "viewmat" of gsplat.
    Blender/OpenGL cameras look along -z with +y up; :mod:`exgs_core.camera` converts.

Images
    ``[H, W, 3]`` float32 RGB, >= 0 (gsplat clamps SH colour at 0, not at 1; PNG writers clip to [0, 1]),
    row 0 at the top, column 0 at the left. Pixel centres at integer + 0.5 (gsplat).
"""

from __future__ import annotations

import numpy as np

QUATERNION_ORDER = "wxyz"

#: SH basis constants (real SH, as in 3DGS/gsplat).
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

MAX_SH_DEGREE = 3


def sh_coeff_count(degree: int) -> int:
    """Number of SH coefficients per colour channel, K = (degree + 1)^2, for degree 0..3."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_degree_from_count(k: int) -> int:
    """Inverse of :func:`sh_coeff_count`; raises ValueError when k is not 1, 4, 9 or 16."""
    for d in range(MAX_SH_DEGREE + 1):
        if (d + 1) ** 2 == k:
            return d
    raise ValueError(f"SH coefficient count per channel must be 1, 4, 9 or 16, got {k}")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 in, float32 out (any shape)."""
    x = np.asarray(x, dtype=np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse sigmoid, with p clipped to [eps, 1 - eps] so 0 and 1 map to finite logits (any shape)."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).astype(np.float32)


def rgb_to_sh_dc(rgb: np.ndarray) -> np.ndarray:
    """Base colour in [0, 1] -> SH DC coefficient (any shape): (rgb - 0.5) / SH_C0."""
    return ((np.asarray(rgb, dtype=np.float32) - 0.5) / SH_C0).astype(np.float32)


def sh_dc_to_rgb(dc: np.ndarray) -> np.ndarray:
    """SH DC coefficient -> base colour (view-independent part), unclamped (any shape)."""
    return (np.asarray(dc, dtype=np.float32) * SH_C0 + 0.5).astype(np.float32)


def human_bytes(n: float) -> str:
    """A byte count as people read it, in decimal units: ``812 B``, ``3.26 MB``, ``1.20 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    raise AssertionError("unreachable")
