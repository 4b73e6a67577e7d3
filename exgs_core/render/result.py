"""The one result type every render backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RenderResult:
    """One rendered view.

    Attributes:
        rgb: float32 [H, W, 3], >= 0 (colours are clamped at 0 only, as gsplat does; clip to [0, 1] for display),
            background composited as ``rgb + T_final * background``.
        alpha: float32 [H, W] in [0, 1], ``1 - T_final`` (accumulated opacity).
        depth: float32 [H, W], expected camera-z depth in world units, ``sum(w * z) / max(alpha, 1e-10)`` with
            ``w = alpha_i * T_i`` (gsplat's "ED" mode); 0 where nothing was drawn.
        weights: float32 [N] or None, each Gaussian's blend weight summed over the image,
            ``sum_pixels alpha_i * T_i`` (None unless ``return_weights=True``). ``weights.sum() == alpha.sum()``
            up to float rounding.
        counts: int32 [N] or None, the number of pixels each Gaussian was blended into (alpha >= 1/255 and the
            pixel not yet saturated), None unless ``return_counts=True`` (LightGaussian's hit count).
        backend: ``"cpu"`` or ``"gsplat"``.
        n_rendered: number of Gaussians that survived culling (depth range, radius, off-screen, opacity < 1/255,
            non-finite values).
        stats: extra numbers a backend reports (e.g. ``n_intersections``, per-stage seconds); informational only.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    weights: np.ndarray | None
    backend: str
    n_rendered: int
    counts: np.ndarray | None = None
    stats: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        """H, image rows."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """W, image columns."""
        return int(self.rgb.shape[1])

    def to_uint8(self) -> np.ndarray:
        """uint8 [H, W, 3]: ``rgb`` clipped to [0, 1], times 255, rounded (what a PNG writer stores)."""
        return (np.clip(self.rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
