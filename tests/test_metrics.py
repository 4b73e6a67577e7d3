import math

import numpy as np
import pytest

from exgs_core.metrics import lpips_available, psnr, ssim


def test_psnr_known_values(rng):
    a = rng.uniform(0.2, 0.8, size=(32, 40, 3))
    assert psnr(a, a) == math.inf
    b = a + 0.1
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-9)
    mask = np.zeros((32, 40), bool)
    mask[:10] = True
    c = a.copy()
    c[10:] += 0.5
    assert psnr(a, c, mask=mask) == math.inf


def test_ssim_matches_3dgs_style_reference(rng):
    a = rng.uniform(size=(48, 48, 3))
    assert ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1)
    s = ssim(a, noisy)
    assert 0 < s < 0.95
    # an independent implementation of the 11x11, sigma 1.5 Gaussian-window SSIM ("valid" region)
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)

    def filt(x):
        from numpy.lib.stride_tricks import sliding_window_view

        return np.einsum("ijkl,kl->ij", sliding_window_view(x, (11, 11)), w)

    vals = []
    for ch in range(3):
        x, y = a[..., ch], noisy[..., ch]
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        vals.append((((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean())
    assert s == pytest.approx(np.mean(vals), abs=2e-3)


def test_bad_inputs():
    with pytest.raises(ValueError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    assert lpips_available()[0] is False
