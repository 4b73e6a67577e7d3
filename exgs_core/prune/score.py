"""Every Gaussian's significance: transmittance-weighted contribution summed over M views (the paper's GS_j).

``"exgs"``: ``sum over the pixels of all views of alpha_j(p) * T_j(p)``, divided by ``M * H * W``; the blend weight
alpha * T is what the rasteriser accumulates (on CUDA it is the gradient of the summed render with respect to a
per-Gaussian scalar colour). ``"lightgaussian"`` (for comparison): LightGaussian's
``count_j * sigma_j * (V_j / V_ref) ** 0.1`` with V the ellipsoid volume and V_ref the 90 % largest volume.
``"opacity"``: plain sigmoid opacity (a baseline without views).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..camera import Camera
from ..scene import GaussianScene
from .cancel import Progress, check_cancel

SCORES = ("exgs", "lightgaussian", "opacity")


@dataclass(frozen=True)
class Accumulation:
    """What the scoring pass gathers over M views of H x W pixels.

    Attributes:
        weight: float64 [N], sum of alpha * T over every pixel of every view.
        count: float64 [N], number of pixels where the Gaussian contributed (alpha >= 1/255, pixel not terminated).
        pixels: M * H * W.
        views: M.
        images: with ``colours=True``: the M renders, float32 [H, W, 3] each over black (full SH); else None.
    """

    weight: np.ndarray
    count: np.ndarray
    pixels: int
    views: int
    images: list | None = None


def accumulate(
    scene: GaussianScene,
    cameras: Sequence[Camera],
    *,
    backend: str = "auto",
    counts: bool = False,
    colours: bool = False,
    progress: Progress | None = None,
    cancel=None,
) -> Accumulation:
    """Render ``scene`` from every camera with per-Gaussian accumulation and sum the results
    (``counts`` also gathers hit counts, which the LightGaussian score needs). The weights and counts do not depend
    on colour, so the views are rendered at SH degree 0 (no view-dependent colour to evaluate), unless ``colours``
    asks for the renders too (``images``: at the scene's full SH, as the colour refit's targets)."""
    from ..render import prepare, render

    prep = prepare(scene, backend)  # converted / uploaded once for all views
    w = np.zeros(scene.n, np.float64)
    c = np.zeros(scene.n, np.float64)
    pixels = 0
    images: list | None = [] if colours else None
    for i, cam in enumerate(cameras):
        check_cancel(cancel)
        r = render(
            scene,
            cam,
            backend=backend,
            return_weights=True,
            sh_degree=None if colours else 0,
            prepared=prep,
            return_counts=bool(counts),
        )
        assert r.weights is not None
        w += r.weights
        if counts:
            assert r.counts is not None
            c += r.counts
        pixels += cam.width * cam.height
        if images is not None:
            images.append(r.rgb)
        if progress:
            progress((i + 1) / len(cameras), f"scoring view {i + 1}/{len(cameras)}")
    return Accumulation(w, c, pixels, len(cameras), images)


def significance(scene: GaussianScene, acc: Accumulation | None, method: str = "exgs") -> np.ndarray:
    """float64 [N] significance score (higher = more important) by ``method`` (see the module docstring)."""
    if method not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {method!r}")
    if method == "opacity":
        return scene.opacities.astype(np.float64)
    if acc is None:
        raise ValueError(f"score {method!r} needs the views' accumulation")
    if method == "exgs":
        return acc.weight / max(acc.pixels, 1)
    # LightGaussian: imp_j = sum over hit pixels of sigma_j, times (V_j / V_ref) ** 0.1
    vol = np.exp(scene.log_scales.astype(np.float64).sum(axis=1))
    v_ref = np.sort(vol)[::-1][int(math.floor(0.9 * (len(vol) - 1)))] if len(vol) else 1.0
    return acc.count * scene.opacities.astype(np.float64) * np.power(vol / max(v_ref, 1e-30), 0.1)
