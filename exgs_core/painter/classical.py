"""Classical restoration of pruned-splat renders: coverage-aware hole fill + unsharp mask (no learning).

Renders are premultiplied (``rgb = sum c_i a_i T_i`` over a black background), so a pixel's colour is
``rgb / alpha`` and its coverage is ``alpha``. A pruned scene thins coverage inside objects; the image
background is genuinely empty. The fill therefore

1. estimates the coverage the full scene would have had with a morphological closing of alpha
   (max-pool then min-pool, radius ``close_radius`` px): holes surrounded by coverage close, the outside of an
   object does not;
2. estimates the colour behind each hole by normalised convolution (push-pull over an image pyramid of the
   premultiplied colour and alpha, coarse to fine);
3. composites ``rgb + (alpha_closed - alpha) * colour``.

:func:`unsharp` then sharpens what is visible (``amount`` times the difference to a Gaussian blur).

Everything is torch (CPU or CUDA), batched: images ``[B,3,H,W]``, alpha ``[B,1,H,W]`` in [0, 1]. The numpy
wrapper :func:`classical_restore` takes ``[H,W,3]`` / ``[H,W]`` arrays.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_CLOSE_RADIUS = 2
DEFAULT_UNSHARP_AMOUNT = 0.2
DEFAULT_UNSHARP_SIGMA = 1.0


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


def push_pull(rgb, alpha, levels: int | None = None, eps: float = 1e-4):
    """Normalised-convolution colour estimate everywhere: returns unpremultiplied colour [B,3,H,W].

    Push: 2x average pooling of (premultiplied colour, alpha). Pull: each level keeps its own colour where its
    alpha is high and takes the coarser estimate where it is low.
    """
    torch, F = _torch()
    h, w = rgb.shape[-2:]
    if levels is None:
        levels = max(1, int(math.ceil(math.log2(max(h, w, 2)))))
    cs, as_ = [rgb], [alpha]
    for _ in range(levels):
        c, a = cs[-1], as_[-1]
        if min(c.shape[-2:]) < 2:
            break
        cs.append(F.avg_pool2d(c, 2, ceil_mode=True))
        as_.append(F.avg_pool2d(a, 2, ceil_mode=True))
    # pull, coarse to fine, in premultiplied form normalised to alpha 1 where anything was seen
    c, a = cs[-1], as_[-1]
    col = c / a.clamp_min(eps)
    col = torch.where(a > eps, col, torch.zeros_like(col))
    for lc, la in zip(reversed(cs[:-1]), reversed(as_[:-1]), strict=False):
        up = F.interpolate(col, size=lc.shape[-2:], mode="bilinear", align_corners=False)
        own = lc / la.clamp_min(eps)
        wgt = la.clamp(0, 1)
        col = wgt * own + (1 - wgt) * up
    return col.clamp(0, 1)


def _max_filter(x, radius: int):
    """Max over a (2r+1)^2 square window with replicate padding, as two 1D passes (a square's max is the max of
    its rows' maxima: bit-exact, O(r) per pixel instead of O(r^2))."""
    _, F = _torch()
    k = 2 * radius + 1
    x = F.max_pool2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), (1, k), stride=1)
    return F.max_pool2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), (k, 1), stride=1)


def close_alpha(alpha, radius: int = DEFAULT_CLOSE_RADIUS):
    """Morphological closing (max-pool then min-pool) of alpha with a (2r+1)^2 square window."""
    torch, F = _torch()
    radius = int(radius)
    if radius <= 0:
        return alpha
    dil = _max_filter(alpha, radius)
    ero = -_max_filter(-dil, radius)
    return torch.maximum(ero, alpha)


def fill(rgb, alpha, close_radius: int = DEFAULT_CLOSE_RADIUS):
    """Coverage-aware hole fill: ``rgb + (closing(alpha) - alpha) * push_pull colour``; [B,3,H,W]."""
    a2 = close_alpha(alpha, close_radius)
    col = push_pull(rgb, alpha)
    return (rgb + (a2 - alpha).clamp_min(0) * col).clamp(0, 1)


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur (reflect padding), [B,C,H,W]."""
    torch, F = _torch()
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad_h, pad_w = min(r, x.shape[-2] - 1), min(r, x.shape[-1] - 1)
    mode = "reflect" if min(pad_h, pad_w) > 0 else "replicate"
    xp = (
        F.pad(x, (r, r, r, r), mode="replicate")
        if mode == "replicate" or pad_h < r or pad_w < r
        else F.pad(x, (r, r, r, r), mode="reflect")
    )
    y = F.conv2d(xp, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def unsharp(img, alpha=None, amount: float = DEFAULT_UNSHARP_AMOUNT, sigma: float = DEFAULT_UNSHARP_SIGMA):
    """Unsharp mask ``img + amount * (img - blur(img))``, weighted by ``alpha`` when given."""
    detail = img - gaussian_blur(img, sigma)
    if alpha is not None:
        detail = detail * alpha
    return (img + amount * detail).clamp(0, 1)


def classical_torch(
    rgb,
    alpha,
    close_radius: int = DEFAULT_CLOSE_RADIUS,
    amount: float = DEFAULT_UNSHARP_AMOUNT,
    sigma: float = DEFAULT_UNSHARP_SIGMA,
):
    """The classical baseline on tensors: fill, then unsharp on the (closed) coverage."""
    filled = fill(rgb, alpha, close_radius)
    return unsharp(filled, close_alpha(alpha, close_radius), amount, sigma)


def classical_restore(
    rgb: np.ndarray,
    alpha: np.ndarray,
    *,
    close_radius: int = DEFAULT_CLOSE_RADIUS,
    amount: float = DEFAULT_UNSHARP_AMOUNT,
    sigma: float = DEFAULT_UNSHARP_SIGMA,
) -> np.ndarray:
    """Classical baseline on numpy arrays: ``rgb`` [H,W,3], ``alpha`` [H,W] in [0,1] -> restored [H,W,3] float32."""
    torch, _ = _torch()
    rgb = np.asarray(rgb, np.float32)
    alpha = np.asarray(alpha, np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or alpha.shape != rgb.shape[:2]:
        raise ValueError(f"expected rgb [H,W,3] and alpha [H,W], got {rgb.shape} and {alpha.shape}")
    with torch.no_grad():
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        a = torch.from_numpy(alpha)[None, None]
        y = classical_torch(x, a, close_radius, amount, sigma)
    return y[0].permute(1, 2, 0).numpy().astype(np.float32)
