"""Image metrics as the 3DGS papers report them: PSNR and SSIM (11x11 Gaussian window, sigma 1.5).

SSIM comes from scikit-image (``skimage.metrics.structural_similarity`` with ``gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1``: an 11x11 window, as 3DGS's ``ssim``). scikit-image
averages over the image without the 5-pixel border the window cannot cover, where 3DGS zero-pads; the
difference is small and the same for every method we compare.

LPIPS is not computed: it needs pretrained VGG/AlexNet weights, which are not present on our machines, and
exgs never downloads anything. :func:`lpips_available` says so.
"""

from __future__ import annotations

import math

import numpy as np


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected two float images [H, W, 3] of the same shape, got {a.shape} and {b.shape}")
    return np.clip(a, 0.0, 1.0), np.clip(b, 0.0, 1.0)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of two RGB images [H, W, 3] in [0, 1] (clipped to [0, 1] first, as saved 8-bit renders are).

    ``mask`` (bool [H, W]) restricts the mean squared error to those pixels. Identical images give ``inf``.
    """
    a, b = _check_pair(a, b)
    d = (a - b) ** 2
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != a.shape[:2]:
            raise ValueError(f"mask must be [H, W] = {a.shape[:2]}, got {mask.shape}")
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two RGB images [H, W, 3] in [0, 1]: 11x11 Gaussian window, sigma 1.5, per channel, mean."""
    from skimage.metrics import structural_similarity

    a, b = _check_pair(a, b)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {a.shape[1]}x{a.shape[0]}")
    return float(
        structural_similarity(
            a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def lpips_available() -> tuple[bool, str]:
    """(False, reason): LPIPS needs pretrained backbone weights that are not shipped and are never downloaded."""
    return False, "LPIPS not computed: its pretrained VGG/AlexNet weights are not available offline"


def to_uint8(img: np.ndarray) -> np.ndarray:
    """float image [H, W, C] -> uint8, clipped to [0, 1] and rounded (how renders are saved as PNG)."""
    return (np.clip(np.asarray(img, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
