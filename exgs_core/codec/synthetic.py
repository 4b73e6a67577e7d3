"""A deterministic synthetic scene for tests, golden files and benchmarks of the .exgs codec.

>>> s = synthetic_scene(100, sh_degree=1)
>>> s.n, s.sh_degree
(100, 1)
"""

from __future__ import annotations

import numpy as np

from ..conventions import sh_coeff_count
from ..scene import GaussianScene

__all__ = ["synthetic_scene"]


def synthetic_scene(n: int, sh_degree: int = 3, seed: int = 0) -> GaussianScene:
    """A deterministic scene of ``n`` Gaussians that looks like a capture to the codec: centres on a few noisy
    surfaces (spheres and a ground plane) plus 2 % floaters, log-scales ~ N(-4.5, 0.8), random rotations,
    bimodal opacities, colours and higher SH that vary smoothly in space plus noise."""
    rng = np.random.default_rng(seed)
    k = sh_coeff_count(sh_degree)
    parts = rng.integers(0, 4, n)
    means = np.empty((n, 3), np.float64)
    u = rng.normal(size=(n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    centres = np.array([[0, 0, 0], [2.5, 0.5, 0], [-2, 0.8, 1], [0, 0, 0]], np.float64)
    radii = np.array([1.0, 0.6, 0.8, 0.0])
    sphere = parts < 3
    means[sphere] = centres[parts[sphere]] + u[sphere] * radii[parts[sphere], None]
    plane = ~sphere
    means[plane] = np.stack(
        [rng.uniform(-6, 6, plane.sum()), np.full(plane.sum(), 1.2), rng.uniform(-6, 6, plane.sum())], axis=1
    )
    means += rng.normal(scale=0.01, size=(n, 3))
    floaters = rng.random(n) < 0.02
    means[floaters] = rng.uniform(-15, 15, (int(floaters.sum()), 3))
    quats = rng.normal(size=(n, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    log_scales = rng.normal(-4.5, 0.8, (n, 3))
    logits = np.where(rng.random(n) < 0.6, rng.normal(3, 1.5, n), rng.normal(-2, 1.5, n))
    sh = np.zeros((n, k, 3), np.float64)
    f = np.stack([np.sin(means[:, 0] * 1.3), np.cos(means[:, 1] * 2.1), np.sin(means[:, 2] * 0.7)], axis=1)
    sh[:, 0, :] = f * 1.2 + rng.normal(scale=0.3, size=(n, 3))
    if k > 1:
        basis = rng.normal(size=(3, (k - 1) * 3)) * 0.15
        sh[:, 1:, :] = ((f @ basis) + rng.normal(scale=0.05, size=(n, (k - 1) * 3))).reshape(n, k - 1, 3)
    return GaussianScene(means, quats, log_scales, logits, sh, meta={"format": "synthetic"})
