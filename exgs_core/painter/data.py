"""Training pairs for GaussPainter: the cache written by ``scripts/make_painter_data.py`` and a seeded sampler.

Each ``train_*.npz`` / ``val_*.npz`` holds full-scene renders (targets) and renders of UGC-pruned versions of
the same scene at several retention ratios and SH cuts (inputs with alpha), all on a black background.

:class:`PairSampler` draws batches deterministically from ``(seed, step)`` alone, so a resumed run sees exactly
the batches it would have seen: random scene / ratio / view, a crop centred on covered pixels most of the time,
optional 2x area downscale (other render resolutions), flips, 90-degree rotations and an exposure gain applied
to input and target alike.
"""

from __future__ import annotations

import glob
import os

import numpy as np


def list_cache(folder: str, split: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(folder, f"{split}_*.npz")))
    return files


class SceneCache:
    """One scene's arrays (uint8 kept in memory)."""

    def __init__(self, path: str):
        with np.load(path) as d:
            self.name = os.path.basename(path)[:-4]
            self.target = d["target"]  # [V,H,W,3] u8
            self.target_alpha = d["target_alpha"]  # [V,H,W] u8
            self.inputs = d["inputs"]  # [R,V,H,W,3] u8
            self.alpha = d["alpha"]  # [R,V,H,W] u8
            self.ratios = d["ratios"].astype(float)
        # candidate crop centres: covered pixels of each view (subsampled)
        self._cov = [np.argwhere(a[::4, ::4] > 64) * 4 for a in self.target_alpha]

    @property
    def n_views(self) -> int:
        return self.target.shape[0]

    def frame(self, r: int, v: int):
        """(input rgb, alpha, target) float32 [H,W,3], [H,W], [H,W,3] in [0,1]."""
        return (
            self.inputs[r, v].astype(np.float32) / 255,
            self.alpha[r, v].astype(np.float32) / 255,
            self.target[v].astype(np.float32) / 255,
        )


class PairSampler:
    def __init__(
        self,
        scenes: list[SceneCache],
        crop: int = 128,
        seed: int = 0,
        p_covered: float = 0.9,
        p_down: float = 0.25,
        exposure: tuple[float, float] = (0.75, 1.3),
    ):
        self.scenes = scenes
        self.crop = crop
        self.seed = seed
        self.p_covered = p_covered
        self.p_down = p_down
        self.exposure = exposure

    def _one(self, rng: np.random.Generator):
        sc = self.scenes[rng.integers(len(self.scenes))]
        r = int(rng.integers(sc.inputs.shape[0]))
        v = int(rng.integers(sc.n_views))
        H, W = sc.target.shape[1:3]
        down = rng.random() < self.p_down
        size = self.crop * (2 if down else 1)
        cov = sc._cov[v]
        if len(cov) and rng.random() < self.p_covered:
            cy, cx = cov[rng.integers(len(cov))]
            cy += int(rng.integers(4))
            cx += int(rng.integers(4))
        else:
            cy, cx = int(rng.integers(H)), int(rng.integers(W))
        y0 = int(np.clip(cy - size // 2, 0, H - size))
        x0 = int(np.clip(cx - size // 2, 0, W - size))
        sl = (slice(y0, y0 + size), slice(x0, x0 + size))
        x = sc.inputs[r, v][sl].astype(np.float32) / 255
        a = sc.alpha[r, v][sl].astype(np.float32)[..., None] / 255
        t = sc.target[v][sl].astype(np.float32) / 255
        stack = np.concatenate([x, a, t], -1)  # [s,s,7]
        if down:
            stack = stack.reshape(self.crop, 2, self.crop, 2, 7).mean((1, 3))
        if rng.random() < 0.5:
            stack = stack[:, ::-1]
        if rng.random() < 0.3:
            stack = stack[::-1]
        stack = np.rot90(stack, int(rng.integers(4)) if rng.random() < 0.3 else 0)
        g = float(np.exp(rng.uniform(np.log(self.exposure[0]), np.log(self.exposure[1]))))
        stack = np.ascontiguousarray(stack)
        stack[..., :3] = np.clip(stack[..., :3] * g, 0, 1)
        stack[..., 4:] = np.clip(stack[..., 4:] * g, 0, 1)
        return stack

    def batch(self, step: int, batch_size: int):
        """(rgb [B,3,c,c], alpha [B,1,c,c], target [B,3,c,c]) float32 numpy arrays for ``step``."""
        rng = np.random.default_rng([self.seed, step])
        b = np.stack([self._one(rng) for _ in range(batch_size)]).transpose(0, 3, 1, 2)
        return b[:, :3], b[:, 3:4], b[:, 4:]
