"""Frame-to-frame consistency of restored renders (numpy only: runs inside Blender without torch).

A one-step restorer sees each frame alone, so what it invents in holes (and its sharpening) can change from
frame to frame even when the camera barely moves: flicker. The paper does nothing about it. We stabilise the
**restoration residual** ``r_t = restored_t - raw_t`` rather than the colour: the raw render is already
consistent (it is a 3D scene), only what the restorer added can flicker.

:class:`TemporalStabilizer` keeps the previous frame's (blended) residual, its hole-filled depth and its camera.
For a new frame it back-projects every pixel with the current depth (holes get a push-pull filled depth),
projects it into the previous camera, samples the previous residual bilinearly, and blends::

    r = (1 - b) * r_t + b * warp(r_prev),    b = strength * valid * exp(-(|r_t - warp(r_prev)| / sigma)^2)

``valid`` rejects pixels that fall outside the previous frame or whose depth disagrees with the previous depth
by more than ``depth_tol`` (disocclusions); the exponential term drops history where the new residual is very
different (new content), so nothing ghosts. The result is a recursive (exponential) average of the residual
along the motion, which is temporal smoothing *in scene space*. Output = ``clip(raw_t + r, 0, 1)``.

:func:`flicker` and :func:`excess_flicker` are the measurements used by ``scripts/bench_worker.py``.
"""

from __future__ import annotations

import numpy as np


# ------------------------------------------------------------------------------------------------- helpers
def _pool2(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[:2]
    if h % 2:
        x = np.concatenate([x, x[-1:]], 0)
    if w % 2:
        x = np.concatenate([x, x[:, -1:]], 1)
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def push_pull(values: np.ndarray, weight: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Normalised-convolution fill: ``values`` [H, W] or [H, W, C] known where ``weight`` [H, W] > 0 (weights in
    [0, 1]); returns the same shape with every pixel estimated from its nearest known surroundings."""
    v = values.astype(np.float32)
    squeeze = v.ndim == 2
    if squeeze:
        v = v[..., None]
    w = np.clip(weight.astype(np.float32), 0, 1)[..., None]
    vs, ws = [v * w], [w]
    while min(vs[-1].shape[:2]) > 1:
        vs.append(_pool2(vs[-1]))
        ws.append(_pool2(ws[-1]))
    col = np.where(ws[-1] > eps, vs[-1] / np.maximum(ws[-1], eps), 0.0)
    for lv, lw in zip(reversed(vs[:-1]), reversed(ws[:-1]), strict=False):
        h, wd = lv.shape[:2]
        up = np.repeat(np.repeat(col, 2, 0), 2, 1)[:h, :wd]
        own = np.where(lw > eps, lv / np.maximum(lw, eps), 0.0)
        a = np.clip(lw, 0, 1)
        col = a * own + (1 - a) * up
    out = col.astype(np.float32)
    return out[..., 0] if squeeze else out


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``img`` [H, W, C] at float pixel indices (x, y) (clamped to the border)."""
    h, w = img.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int32), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int32), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    a = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    b = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (a * (1 - fy) + b * fy).astype(np.float32)


def reproject(depth: np.ndarray, camera, prev_camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every pixel of ``camera`` with camera-z ``depth`` [H, W]: its float pixel position (x, y) in
    ``prev_camera`` (indices, pixel centres at integers) and its camera-z there."""
    h, w = depth.shape
    u = np.arange(w, dtype=np.float64) + 0.5
    v = np.arange(h, dtype=np.float64) + 0.5
    d = depth.astype(np.float64)
    xc = (u[None, :] - camera.cx) / camera.fx * d
    yc = (v[:, None] - camera.cy) / camera.fy * d
    c2w = np.linalg.inv(camera.world_to_camera)
    m = prev_camera.world_to_camera @ c2w  # current camera -> previous camera
    xp = m[0, 0] * xc + m[0, 1] * yc + m[0, 2] * d + m[0, 3]
    yp = m[1, 0] * xc + m[1, 1] * yc + m[1, 2] * d + m[1, 3]
    zp = m[2, 0] * xc + m[2, 1] * yc + m[2, 2] * d + m[2, 3]
    zs = np.where(zp > 1e-6, zp, 1e-6)
    px = prev_camera.fx * xp / zs + prev_camera.cx - 0.5
    py = prev_camera.fy * yp / zs + prev_camera.cy - 0.5
    return px.astype(np.float32), py.astype(np.float32), zp.astype(np.float32)


# ---------------------------------------------------------------------------------------------- stabiliser
class TemporalStabilizer:
    """Blend each restored frame's residual with the previous one reprojected (see the module docstring).

    Call :meth:`reset` on a cut (non-consecutive frame, other camera, other scene); one instance per sequence.
    """

    def __init__(self, strength: float = 0.7, sigma: float = 0.15, depth_tol: float = 0.05, min_alpha: float = 0.05):
        self.strength, self.sigma, self.depth_tol, self.min_alpha = strength, sigma, depth_tol, min_alpha
        self.reset()

    def reset(self) -> None:
        self._prev: tuple | None = None  # (residual [H,W,3], filled depth [H,W], camera)
        self.last_valid_fraction = 0.0

    def __call__(
        self, raw_rgb: np.ndarray, alpha: np.ndarray, depth: np.ndarray, restored: np.ndarray, camera
    ) -> np.ndarray:
        raw = np.asarray(raw_rgb, np.float32)
        res = np.asarray(restored, np.float32) - raw
        a = np.asarray(alpha, np.float32)
        known = (a > self.min_alpha) & np.isfinite(depth) & (depth > 0)
        if not known.any():  # nothing rendered: no geometry to reproject with
            self._prev = None
            return np.clip(raw + res, 0, 1)
        dfill = push_pull(np.where(known, depth, 0).astype(np.float32), known * a)
        dfill = np.where(dfill > 0, dfill, float(np.median(depth[known])))
        if self._prev is not None and self._prev[0].shape == res.shape and self.strength > 0:
            pres, pdepth, pcam = self._prev
            px, py, pz = reproject(dfill, camera, pcam)
            h, w = dfill.shape
            inside = (px >= -0.5) & (px <= w - 0.5) & (py >= -0.5) & (py <= h - 0.5) & (pz > 0)
            both = _bilinear(np.concatenate([pres, pdepth[..., None]], -1), px, py)
            warped, wdepth = both[..., :3], both[..., 3]
            valid = inside & (np.abs(wdepth - pz) <= self.depth_tol * np.maximum(pz, 1e-6))
            diff = np.abs(res - warped).mean(-1)
            b = self.strength * valid * np.exp(-((diff / self.sigma) ** 2))
            res = (1 - b[..., None]) * res + b[..., None] * warped
            self.last_valid_fraction = float(valid.mean())
        self._prev = (res.astype(np.float32), dfill.astype(np.float32), camera)
        return np.clip(raw + res, 0, 1).astype(np.float32)


# -------------------------------------------------------------------------------------------- measurement
def _mean(d: np.ndarray, masks, i: int) -> float:
    if masks is None:
        return float(d.mean())
    m = np.asarray(masks[i], bool) | np.asarray(masks[i - 1], bool)
    return float(d[m].mean()) if m.any() else 0.0


def flicker(frames, masks=None) -> float:
    """Mean absolute frame-to-frame difference (0..1 units) over a sequence of [H, W, C] frames; with ``masks``
    ([H, W] bool per frame) only over pixels inside the mask of either frame of a pair."""
    f = [np.asarray(x, np.float32) for x in frames]
    return float(np.mean([_mean(np.abs(f[i] - f[i - 1]), masks, i) for i in range(1, len(f))]))


def excess_flicker(frames, reference, masks=None) -> float:
    """Mean |(x_t - x_{t-1}) - (ref_t - ref_{t-1})|: the frame-to-frame change that the true change (the
    reference renders of the uncompressed scene) does not explain. 0 for a perfectly stable result."""
    f = [np.asarray(x, np.float32) for x in frames]
    g = [np.asarray(x, np.float32) for x in reference]
    return float(np.mean([_mean(np.abs((f[i] - f[i - 1]) - (g[i] - g[i - 1])), masks, i) for i in range(1, len(f))]))
