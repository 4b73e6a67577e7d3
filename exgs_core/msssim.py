"""Multi-scale SSIM (Wang, Simoncelli and Bovik 2003) in numba: the encoder's structure measure for the scene head
(:func:`exgs_core.prune.head.encoder_head`) and the benchmarks' check against piq.

The measure is piq's ``multi_scale_ssim`` with its defaults: an 11-tap Gaussian window (sigma 1.5) at valid
positions only, C1 = 0.01^2, C2 = 0.03^2 (data range 1), 2 x 2 average pooling between scales, the five scale
weights of :data:`MS_SSIM_WEIGHTS`, contrast-structure terms clamped at 0, the mean over channels. Images are
float32 [H, W, 3] (or [H, W]) in [0, 1], any colour space as long as both images share it.

One kernel per scale (:func:`_scale_sums`) blurs the candidate's x, x^2 and x y row by row and pools the SSIM terms
as it goes, so no [H, W, 9] temporaries are made; the reference side (its pooled images, blurred means and blurred
squares) is computed once in :class:`MsSsimTarget` when several candidates are compared with one image. About
8 ms per 512 x 512 RGB comparison on 2 cores (the numpy version with shifted multiply-adds took 80 ms). Without
numba the same bodies run as Python (slow, identical results).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MS_SSIM_WEIGHTS", "MsSsimTarget", "ms_ssim"]

#: MS-SSIM's scale weights (Wang, Simoncelli and Bovik 2003; piq's and pytorch-msssim's defaults).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: Taps of the Gaussian window (sigma 1.5), and the SSIM constants for data range 1.
WINDOW = 11
C1, C2 = 0.01**2, 0.03**2

_G = np.exp(-0.5 * (np.arange(WINDOW) - WINDOW // 2) ** 2 / 1.5**2)
_G = (_G / _G.sum()).astype(np.float32)

try:
    from numba import njit as _njit
    from numba import prange as _prange
except ImportError:  # pragma: no cover
    _njit = None  # type: ignore[assignment]
    _prange = range  # type: ignore[misc]


def _compiled(fn):
    if _njit is None:  # pragma: no cover
        return fn
    from ._machine import guarded

    return guarded(_njit(cache=True, nogil=True, parallel=True)(fn))


def _hpass_py(row, g, m, dst):  # pragma: no cover - compiled by numba
    """The window along a row: ``dst[k] = sum_i g[i] row[k + i m]`` for a row of pixels with ``m`` values each
    (float32, taps summed in order), the horizontal pass of :func:`_blur` and :func:`_scale_sums`."""
    for k in range(dst.shape[0]):
        dst[k] = g[0] * row[k]
    for i in range(1, g.shape[0]):
        gi = g[i]
        off = i * m
        for k in range(dst.shape[0]):
            dst[k] += gi * row[k + off]


def _blur_py(v, g):  # pragma: no cover - compiled by numba
    """float32 [H, W, M] -> [H-10, W-10, M]: the window's weighted means at valid positions (rows, then columns;
    taps summed in order, in float32). Each row is one contiguous run of W x M values, so both passes are
    multiply-adds over runs the compiler vectorises."""
    hh, ww, m = v.shape
    n = g.shape[0]
    h, w = hh - n + 1, ww - n + 1
    flat = v.reshape(hh, ww * m)
    out = np.empty((h, w * m), np.float32)
    for y in _prange(h):
        row = np.zeros(ww * m, np.float32)
        for i in range(n):
            gi = g[i]
            src = flat[y + i]
            for k in range(ww * m):
                row[k] += gi * src[k]
        _hpass(row, g, m, out[y])
    return out.reshape(h, w, m)


def _scale_sums_py(x, y, my, eyy, g, c1, c2):  # pragma: no cover - compiled by numba
    """Per output row, per channel: (sum of the contrast-structure term cs, sum of luminance x cs), float64
    [h, C, 2], for candidate x and reference y (float32 [H, W, C]) whose reference-side blurs ``my`` (mean) and
    ``eyy`` (mean of squares), [h, w, C], are given. The blurs are :func:`_blur`'s, term for term."""
    hh, ww, nc = x.shape
    n = g.shape[0]
    h, w = hh - n + 1, ww - n + 1
    xf, yf = x.reshape(hh, ww * nc), y.reshape(hh, ww * nc)
    myf, eyyf = my.reshape(h, w * nc), eyy.reshape(h, w * nc)
    out = np.zeros((h, nc, 2))
    two = np.float32(2.0)
    for yy in _prange(h):
        r1 = np.zeros(ww * nc, np.float32)  # vertical blurs of x, x^2, x y
        r2 = np.zeros(ww * nc, np.float32)
        r3 = np.zeros(ww * nc, np.float32)
        for i in range(n):
            gi = g[i]
            xs, ys = xf[yy + i], yf[yy + i]
            for k in range(ww * nc):
                a = xs[k]
                r1[k] += gi * a
                r2[k] += gi * (a * a)
                r3[k] += gi * (a * ys[k])
        mx = np.empty(w * nc, np.float32)
        exx = np.empty(w * nc, np.float32)
        exy = np.empty(w * nc, np.float32)
        _hpass(r1, g, nc, mx)
        _hpass(r2, g, nc, exx)
        _hpass(r3, g, nc, exy)
        for k in range(w * nc):
            m2 = myf[yy, k]
            sxx = exx[k] - mx[k] * mx[k]
            syy = eyyf[yy, k] - m2 * m2
            sxy = exy[k] - mx[k] * m2
            cs = (two * sxy + c2) / (sxx + syy + c2)
            lum = (two * mx[k] * m2 + c1) / (mx[k] * mx[k] + m2 * m2 + c1)
            c = k % nc
            out[yy, c, 0] += cs
            out[yy, c, 1] += lum * cs
    return out


def _pool2_py(x):  # pragma: no cover - compiled by numba
    """float32 [H, W, C] -> [H//2, W//2, C]: 2 x 2 means (an odd last row / column is dropped), summed in numpy's
    order for ``reshape(..).mean(axis=(1, 3))``."""
    h, w, nc = x.shape[0] // 2, x.shape[1] // 2, x.shape[2]
    out = np.empty((h, w, nc), np.float32)
    q = np.float32(4.0)
    for yy in _prange(h):
        for xx in range(w):
            for c in range(nc):
                s = x[2 * yy, 2 * xx, c] + x[2 * yy, 2 * xx + 1, c]
                s = s + x[2 * yy + 1, 2 * xx, c]
                out[yy, xx, c] = (s + x[2 * yy + 1, 2 * xx + 1, c]) / q
    return out


_hpass = _hpass_py if _njit is None else _njit(cache=True, nogil=True)(_hpass_py)
_blur = _compiled(_blur_py)
_scale_sums = _compiled(_scale_sums_py)
_pool2 = _compiled(_pool2_py)


class MsSsimTarget:
    """The reference side of :func:`ms_ssim`, computed once for an image that several candidates are compared with:
    per scale the pooled image and its blurred mean and blurred square. ``image``: [H, W, 3] (or [H, W]) in [0, 1]
    (clipped to it)."""

    def __init__(self, image: np.ndarray):
        y = np.ascontiguousarray(np.clip(np.asarray(image, np.float32), 0.0, 1.0))
        y = y[..., None] if y.ndim == 2 else y
        self.shape = y.shape
        self.levels = 0
        while self.levels < len(MS_SSIM_WEIGHTS) and min(y.shape[:2]) >> self.levels >= WINDOW:
            self.levels += 1
        self.scales: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (y_s, blur(y_s), blur(y_s^2))
        self.image = y
        for s in range(self.levels):
            self.scales.append((y, _blur(y, _G), _blur(y * y, _G)))
            if s < self.levels - 1:
                y = _pool2(y)


def ms_ssim(a: np.ndarray, b: np.ndarray | MsSsimTarget) -> float:
    """Multi-scale SSIM of two images [H, W, 3] (or [H, W]) in [0, 1] (``a`` is clipped to [0, 1]), as the module
    docstring defines it: the first weights, renormalised, on images too small for five scales (a scale needs 11
    pixels on its shorter side), 1 - MSE on images smaller than the window. ``b`` may be a :class:`MsSsimTarget` of
    the reference (the same value, less work per comparison). Matches piq's ``multi_scale_ssim`` to about 1e-5."""
    ref = b if isinstance(b, MsSsimTarget) else MsSsimTarget(b)
    x = np.ascontiguousarray(np.clip(np.asarray(a, np.float32), 0.0, 1.0))
    x = x[..., None] if x.ndim == 2 else x
    if x.shape != ref.shape:
        raise ValueError(f"ms_ssim: images of shapes {x.shape} and {ref.shape}")
    if ref.levels == 0:
        return float(1.0 - ((x.astype(np.float64) - ref.image) ** 2).mean())
    wts = np.asarray(MS_SSIM_WEIGHTS[: ref.levels]) / sum(MS_SSIM_WEIGHTS[: ref.levels])
    out = np.ones(x.shape[2])
    for s, (y, my, eyy) in enumerate(ref.scales):
        sums = _scale_sums(x, y, my, eyy, _G, np.float32(C1), np.float32(C2)).sum(axis=0) / (my.shape[0] * my.shape[1])
        term = sums[:, 1] if s == ref.levels - 1 else sums[:, 0]  # luminance only at the coarsest scale
        out *= np.maximum(term, 0.0) ** wts[s]
        if s < ref.levels - 1:
            x = _pool2(x)
    return float(out.mean())
