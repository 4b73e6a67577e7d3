"""Training losses for GaussPainter; none needs downloaded weights.

Charbonnier, 3-scale MS-SSIM (own implementation), gradient L1, FFT-amplitude L1, and a perceptual/Gram term
from a fixed random-weight CNN (seeded; "generic perceptual loss", Liu et al. 2021), rebuilt identically from
its seed so no weights need shipping.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def charbonnier(x, y, eps: float = 1e-3, weight=None):
    d = torch.sqrt((x - y) ** 2 + eps * eps)
    if weight is not None:
        return (d * weight).sum() / (weight.sum() * x.shape[1] / weight.shape[1]).clamp_min(1)
    return d.mean()


def _gauss_window(size: int = 11, sigma: float = 1.5, device=None, dtype=None):
    t = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_parts(x, y, win):
    c = x.shape[1]
    k = win.numel()
    wx = win.view(1, 1, 1, k).repeat(c, 1, 1, 1)
    wy = win.view(1, 1, k, 1).repeat(c, 1, 1, 1)

    def blur(z):
        return F.conv2d(F.conv2d(z, wx, groups=c), wy, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).mean((1, 2, 3)), cs.mean((1, 2, 3))


def ms_ssim(x, y, scales: int = 3):
    """MS-SSIM with the standard weights renormalised to ``scales`` levels; x, y in [0, 1], [B,3,H,W]."""
    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:scales], device=x.device, dtype=x.dtype)
    weights = weights / weights.sum()
    win = _gauss_window(11, 1.5, x.device, x.dtype)
    vals = []
    for s in range(scales):
        ssim, cs = _ssim_parts(x, y, win)
        vals.append((ssim if s == scales - 1 else cs).clamp_min(1e-6))
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    v = torch.stack(vals, 1)  # [B, S]
    return torch.prod(v**weights, 1).mean()


def gradient_l1(x, y):
    def dx(z):
        return z[..., :, 1:] - z[..., :, :-1]

    def dy(z):
        return z[..., 1:, :] - z[..., :-1, :]

    return (dx(x) - dx(y)).abs().mean() + (dy(x) - dy(y)).abs().mean()


def fft_l1(x, y):
    fx = torch.fft.rfft2(x, norm="ortho")
    fy = torch.fft.rfft2(y, norm="ortho")
    return (fx.abs() - fy.abs()).abs().mean()


class RandomFeatures(torch.nn.Module):
    """A fixed random-weight CNN (seeded, frozen) for a perceptual + Gram loss without pretrained weights."""

    def __init__(self, seed: int = 1234):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        chans = [(3, 16, 1), (16, 32, 2), (32, 64, 2)]
        self.convs = torch.nn.ModuleList()
        for cin, cout, stride in chans:
            conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (cin * 9)))
                assert conv.bias is not None
                conv.bias.zero_()
            self.convs.append(conv)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        feats = []
        h = x * 2 - 1
        for conv in self.convs:
            h = F.relu(conv(h))
            feats.append(h)
        return feats


def perceptual(net: RandomFeatures, x, y, gram_weight: float = 0.5):
    loss = 0.0
    for fx, fy in zip(net(x), net(y), strict=False):
        loss = loss + (fx - fy).abs().mean()
        if gram_weight:
            b, c, h, w = fx.shape
            gx = fx.flatten(2) @ fx.flatten(2).transpose(1, 2) / (h * w)
            gy = fy.flatten(2) @ fy.flatten(2).transpose(1, 2) / (h * w)
            loss = loss + gram_weight * (gx - gy).abs().mean()
    return loss
