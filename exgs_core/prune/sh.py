"""The SH cut: the best-ranked share of the survivors keeps every SH band, the rest become DC-only."""

from __future__ import annotations

import numpy as np

from ..conventions import SH_C0
from ..scene import GaussianScene
from .sample import top_k


def split_sh(
    scene: GaussianScene, score: np.ndarray, sh_keep: float, *, fold_dirs: np.ndarray | None = None
) -> tuple[GaussianScene, np.ndarray]:
    """Mark the top ``sh_keep`` fraction (by ``score``) as full-SH and make the rest DC-only.

    Args:
        scene: M Gaussians.
        score: float [M] ranking (higher keeps its SH first).
        sh_keep: fraction in [0, 1] that keeps full SH.
        fold_dirs: float [D, 3] camera centres of the scoring views, or None. When given, each DC-only
            Gaussian's DC absorbs its removed bands' colour seen from these centres (in the direction from each
            camera centre to that Gaussian), averaged over the D cameras.

    Returns:
        (scene with zeroed higher SH where cut, ``sh_full`` bool [M]).
    """
    n, k = scene.n, scene.sh.shape[1]
    if k == 1:
        return scene, np.zeros(n, bool)
    if not 0 <= sh_keep <= 1:
        raise ValueError(f"sh_keep must be in [0, 1], got {sh_keep}")
    full = top_k(score, sh_keep) if sh_keep < 1 else np.ones(n, bool)
    out = scene.copy()
    cut = ~full
    if fold_dirs is not None and cut.any():
        from ..render.sh import sh_to_color

        idx = np.flatnonzero(cut)
        rest = out.sh[idx].copy()
        rest[:, 0] = 0.0
        acc = np.zeros((len(idx), 3), np.float64)
        for cam_pos in fold_dirs:  # camera centres [D, 3]
            d = out.means[idx].astype(np.float64) - cam_pos
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
            acc += sh_to_color(rest, d.astype(np.float32), offset=False)
        out.sh[idx, 0] += (acc / len(fold_dirs) / SH_C0).astype(np.float32)
    out.sh[cut, 1:] = 0.0
    return out, full
