"""CUDA rendering through ``gsplat.rasterization`` (gsplat 1.5.x). torch and gsplat are imported lazily here only.

Install: ``pip install torch gsplat`` (gsplat compiles or loads its CUDA extension on first use).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import BackendUnavailable

PIP_HINT = "pip install torch gsplat  (needs an NVIDIA GPU with CUDA)"


@functools.lru_cache(maxsize=1)
def has_gsplat() -> bool:
    """True when torch and gsplat import, ``torch.cuda.is_available()`` and gsplat's CUDA extension loads; never
    raises. Probed once per process (``has_gsplat.cache_clear()`` probes again).

    gsplat 1.5.x ships its CUDA sources and compiles them on first use (minutes, once per machine; it prints a
    progress line); a machine where that build fails is reported as having no gsplat, so ``backend="auto"`` falls
    back to the CPU path instead of failing at the first render."""
    import importlib.util

    try:
        if importlib.util.find_spec("gsplat") is None:  # cheap: no torch import (1.3 s) on machines without gsplat
            return False
        import torch

        if not torch.cuda.is_available():
            return False
        from gsplat.cuda._backend import _C  # triggers (or loads) the JIT build
    except Exception:
        return False
    return _C is not None


def _require():
    try:
        import torch
        from gsplat import rasterization
    except Exception as e:  # ImportError, or a CUDA extension that fails to load
        raise BackendUnavailable(f"the gsplat backend needs torch and gsplat ({e}); install with: {PIP_HINT}") from None
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"the gsplat backend needs a CUDA GPU; torch sees none ({PIP_HINT})")
    if not has_gsplat():
        raise BackendUnavailable(
            "gsplat's CUDA extension did not build or load (run "
            "`python -c 'from gsplat.cuda._backend import _C'` to see the compiler's error)"
        )
    return torch, rasterization


class GsplatScene:
    """A scene's arrays uploaded to the GPU once, for many renders (``render_many``, scoring, the worker).

    Gaussians with a non-finite value or a zero quaternion are left out (the CPU backend culls them too; gsplat
    itself would let a NaN colour through).

    Attributes:
        n: N, Gaussians in the scene; idx: int64 [M] indices of the M uploaded ones;
        means f32 [M, 3]; quats f32 [M, 4] (w, x, y, z); scales f32 [M, 3] (exp of log-scales);
        opacities f32 [M] (sigmoid of logits); sh f32 [M, K, 3]: torch tensors on ``cuda``.
    """

    def __init__(self, scene):
        torch, _ = _require()
        dev = torch.device("cuda")
        n = scene.n
        keep = np.isfinite(scene.means).all(1) & np.isfinite(scene.quats).all(1)
        keep &= np.isfinite(scene.log_scales).all(1) & np.isfinite(scene.opacity_logits)
        keep &= np.isfinite(scene.sh.reshape(n, -1)).all(1) & ((scene.quats.astype(np.float64) ** 2).sum(1) > 0)
        self.n = n
        self.idx = np.nonzero(keep)[0]

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a[self.idx], dtype=np.float32)).to(dev)

        self.means = t(scene.means)
        self.quats = t(scene.quats)
        self.scales = torch.exp(t(scene.log_scales))
        self.opacities = torch.sigmoid(t(scene.opacity_logits))
        self.sh = t(scene.sh)


def render_gsplat(
    scene,
    camera,
    *,
    background: np.ndarray,
    sh_degree: int,
    rasterize_mode: str,
    return_weights: bool,
    return_counts: bool = False,
    near: float,
    far: float,
    prepared: GsplatScene | None = None,
) -> dict:
    """Render one view with gsplat on the GPU.

    Args:
        scene: :class:`~exgs_core.scene.GaussianScene` of N Gaussians.
        camera: :class:`~exgs_core.camera.Camera`.
        background: float32 [3].
        sh_degree: SH degree to evaluate, 0..scene degree.
        rasterize_mode: ``"classic"`` or ``"antialiased"``.
        return_weights: also return float32 [N] per-Gaussian blend weights, computed as the gradient of the
            summed one-channel render w.r.t. a per-Gaussian colour of 1 (= sum over pixels of alpha * T).
        return_counts: also return int32 [N] counts of the pixels each Gaussian was blended into, from
            ``gsplat.rasterize_to_indices_in_range`` over all batches (same alpha / transmittance rules).
        near, far: camera-z clipping range.
        prepared: ``scene`` already uploaded (:class:`GsplatScene`); None uploads it for this call.

    Returns:
        dict with ``rgb`` f32 [H, W, 3], ``alpha`` f32 [H, W], ``depth`` f32 [H, W], ``weights`` f32 [N] or None,
        ``counts`` i32 [N] or None, ``n_rendered`` int, ``stats`` dict.
    """
    torch, rasterization = _require()
    dev = torch.device("cuda")
    g = prepared if prepared is not None else GsplatScene(scene)
    n, idx = g.n, g.idx
    means, quats, scales, opacities, sh = g.means, g.quats, g.scales, g.opacities, g.sh
    w, h = camera.width, camera.height

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev)

    viewmats = t(camera.world_to_camera)[None]  # [1, 4, 4]
    ks = t(camera.K)[None]  # [1, 3, 3]
    bg = t(np.asarray(background, np.float32).reshape(1, 3))  # [1, 3], composited below
    common = dict(near_plane=float(near), far_plane=float(far), rasterize_mode=rasterize_mode)
    if len(idx) == 0:
        rgb = np.broadcast_to(np.asarray(background, np.float32), (h, w, 3)).copy()
        z = np.zeros((h, w), np.float32)
        return {
            "rgb": rgb,
            "alpha": z,
            "depth": z.copy(),
            "weights": np.zeros(n, np.float32) if return_weights else None,
            "counts": np.zeros(n, np.int32) if return_counts else None,
            "n_rendered": 0,
            "stats": {},
        }
    with torch.no_grad():
        colors, alphas, meta = rasterization(
            means,
            quats,
            scales,
            opacities,
            sh,
            viewmats,
            ks,
            w,
            h,
            sh_degree=int(sh_degree),
            render_mode="RGB+ED",
            **common,
        )  # colors [1, H, W, 4] (premultiplied rgb, expected depth), alphas [1, H, W, 1]
        # the background is composited here, as gsplat would (rgb + (1 - alpha) * bg): gsplat 1.5.3's packed mode
        # (the default) rejects a per-camera background [1, 4] because it takes the image dims from the packed
        # means2d [nnz, 2] (seen on an H200, torch 2.11 + CUDA 13.0)
        rgb = colors[0, ..., :3] + (1 - alphas[0]) * bg[0]
    gids = meta.get("gaussian_ids")
    if gids is not None:
        n_rendered = int(gids.shape[0])
    else:
        n_rendered = int((meta["radii"] > 0).all(-1).sum().item())
    out = {
        "rgb": rgb.float().cpu().numpy(),
        "alpha": alphas[0, ..., 0].float().cpu().numpy(),
        "depth": colors[0, ..., 3].float().cpu().numpy(),
        "weights": None,
        "counts": None,
        "n_rendered": n_rendered,
        "stats": {},
    }
    if return_weights:
        ones = torch.ones((len(idx), 1), dtype=torch.float32, device=dev, requires_grad=True)  # [M, 1]
        img, _, _ = rasterization(means, quats, scales, opacities, ones, viewmats, ks, w, h, sh_degree=None, **common)
        img.sum().backward()  # d(sum_px sum_g alpha T c_g) / d c_g = sum_px alpha T
        wts = np.zeros(n, np.float32)
        wts[idx] = ones.grad[:, 0].float().cpu().numpy()
        out["weights"] = wts
    if return_counts:
        from gsplat import rasterize_to_indices_in_range

        with torch.no_grad():
            _, _, m = rasterization(
                means,
                quats,
                scales,
                opacities,
                sh,
                viewmats,
                ks,
                w,
                h,
                sh_degree=int(sh_degree),
                packed=False,
                **common,
            )  # unpacked: flatten ids index [1 * M], so gaussian id = flatten id % M
            gs_ids, _, _ = rasterize_to_indices_in_range(
                0,
                2**31 - 1,
                torch.ones((1, h, w), dtype=torch.float32, device=dev),
                m["means2d"],
                m["conics"],
                m["opacities"],
                w,
                h,
                m["tile_size"],
                m["isect_offsets"],
                m["flatten_ids"],
            )  # one entry per (Gaussian, pixel) blended, with the in-kernel transmittance stop
            cnt = torch.bincount(gs_ids.long(), minlength=len(idx))
        counts = np.zeros(n, np.int32)
        counts[idx] = cnt.cpu().numpy().astype(np.int32)
        out["counts"] = counts
    return out
