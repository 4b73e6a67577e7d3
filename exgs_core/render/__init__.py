"""Render a :class:`~exgs_core.scene.GaussianScene` from a :class:`~exgs_core.camera.Camera`.

>>> from exgs_core.render import render                      # doctest: +SKIP
>>> res = render(scene, camera)                               # doctest: +SKIP
>>> res.rgb.shape, res.alpha.shape, res.backend               # doctest: +SKIP
((H, W, 3), (H, W), 'cpu')

Backends:

* ``"gsplat"``: CUDA through ``gsplat.rasterization`` (torch + gsplat imported lazily; :func:`has_gsplat` probes).
* ``"cpu"``: our numba tile rasterizer (:mod:`.cpu`), which follows gsplat 1.5.3's conventions so the two agree
  within 1/255 per pixel.
* ``"auto"``: gsplat when available, else cpu.

The first CPU render in a fresh environment compiles the kernels (seconds); compiled code is cached on disk
(numba ``cache=True``) so later processes only load it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from ..errors import BackendUnavailable
from .cpu import (
    ALPHA_MAX,
    ALPHA_THRESHOLD,
    EPS2D,
    EXTEND_MAX,
    FAR_PLANE,
    NEAR_PLANE,
    T_STOP,
    TILE_SIZE,
    PreparedScene,
    render_cpu,
)
from .gsplat_backend import GsplatScene, has_gsplat, render_gsplat
from .result import RenderResult
from .sh import sh_to_color

BACKENDS = ("auto", "cpu", "gsplat")
RASTERIZE_MODES = ("auto", "classic", "antialiased")


def _background(background) -> np.ndarray:
    if background is None:
        return np.zeros(3, np.float32)
    bg = np.asarray(background, dtype=np.float32)
    if bg.ndim == 0:
        bg = np.full(3, float(bg), np.float32)
    if bg.shape != (3,) or not np.isfinite(bg).all():
        raise ValueError(f"background: expected a finite float or float [3], got {np.asarray(background)!r}")
    return bg


def _options(scene, camera, backend, background, sh_degree, rasterize_mode, near, far):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if rasterize_mode not in RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode must be one of {RASTERIZE_MODES}, got {rasterize_mode!r}")
    if rasterize_mode == "auto":
        rasterize_mode = "antialiased" if scene.antialiased else "classic"
    if sh_degree is None:
        sh_degree = scene.sh_degree
    sh_degree = int(sh_degree)
    if not 0 <= sh_degree <= scene.sh_degree:
        raise ValueError(
            f"sh_degree must be 0..{scene.sh_degree} for this scene (K={scene.sh.shape[1]}), got {sh_degree}"
        )
    near = camera.near if near is None else float(near)
    far = camera.far if far is None else float(far)
    if not (0 < near < far):
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    if backend == "auto":
        backend = "gsplat" if has_gsplat() else "cpu"
    elif backend == "gsplat" and not has_gsplat():
        from .gsplat_backend import _require

        _require()  # raises BackendUnavailable naming what is missing
        raise BackendUnavailable("the gsplat backend is unavailable (torch.cuda.is_available() is False)")
    return backend, _background(background), sh_degree, rasterize_mode, near, far


def render(
    scene,
    camera,
    *,
    backend: str = "auto",
    background=None,
    sh_degree: int | None = None,
    rasterize_mode: str = "auto",
    return_weights: bool = False,
    return_counts: bool = False,
    near: float | None = None,
    far: float | None = None,
    prepared=None,
) -> RenderResult:
    """Render ``scene`` as seen from ``camera``.

    Args:
        scene: :class:`~exgs_core.scene.GaussianScene` of N Gaussians (quaternions need not be normalised).
        camera: :class:`~exgs_core.camera.Camera`, OpenCV axes; the image is ``camera.height x camera.width``.
        backend: ``"auto"`` (gsplat if :func:`has_gsplat`, else cpu), ``"cpu"`` or ``"gsplat"``
            (raises :class:`~exgs_core.errors.BackendUnavailable` with the pip command when missing).
        background: float or float [3] colour behind the splats, composited as ``rgb + T * background``;
            None = black.
        sh_degree: SH degree to evaluate, 0..``scene.sh_degree`` (default: the scene's).
        rasterize_mode: ``"classic"``, ``"antialiased"`` (gsplat's opacity compensation
            ``sqrt(det(Sigma) / det(Sigma + 0.3 I))``) or ``"auto"`` = antialiased when
            ``scene.antialiased``.
        return_weights: also return ``weights`` float32 [N]: each Gaussian's ``sum_pixels alpha * T``.
        return_counts: also return ``counts`` int32 [N]: the number of pixels each Gaussian was blended into.
        near, far: camera-z clipping range in world units (default: ``camera.near`` / ``camera.far``, which
            default to gsplat's 0.01 / 1e10).
        prepared: ``prepare(scene, backend)``'s result, to skip converting (CPU) or uploading (gsplat) the scene's
            arrays on every call; it must come from this ``scene``, unchanged since. Ignored when it was made for
            the other backend.

    Returns:
        :class:`RenderResult` (``rgb`` f32 [H, W, 3], ``alpha`` f32 [H, W], ``depth`` f32 [H, W], ``weights``,
        ``counts``, ``backend``, ``n_rendered``).

    Raises:
        ValueError: a bad option; BackendUnavailable: ``backend="gsplat"`` without torch/gsplat/CUDA.

    Non-finite values never crash: a Gaussian with NaN/Inf in any field it uses, or a zero quaternion, is culled.
    """
    return _render(
        scene,
        camera,
        prepared,
        backend=backend,
        background=background,
        sh_degree=sh_degree,
        rasterize_mode=rasterize_mode,
        return_weights=return_weights,
        return_counts=return_counts,
        near=near,
        far=far,
    )


def _render(
    scene,
    camera,
    prepared,
    *,
    backend="auto",
    background=None,
    sh_degree=None,
    rasterize_mode="auto",
    return_weights=False,
    return_counts=False,
    near=None,
    far=None,
) -> RenderResult:
    """:func:`render` with an optional :func:`prepare` result reused across cameras."""
    backend, bg, sh_degree, mode, near, far = _options(
        scene, camera, backend, background, sh_degree, rasterize_mode, near, far
    )
    if backend == "gsplat":
        out = render_gsplat(
            scene,
            camera,
            background=bg,
            sh_degree=sh_degree,
            rasterize_mode=mode,
            return_weights=return_weights,
            return_counts=return_counts,
            near=near,
            far=far,
            prepared=prepared if isinstance(prepared, GsplatScene) else None,
        )
    else:
        prep = prepared if isinstance(prepared, PreparedScene) else PreparedScene(scene)
        out = render_cpu(
            prep,
            camera,
            background=bg,
            sh_degree=sh_degree,
            antialiased=(mode == "antialiased"),
            return_weights=return_weights,
            return_counts=return_counts,
            near=near,
            far=far,
        )
    out["stats"]["rasterize_mode"] = mode
    return RenderResult(backend=backend, **out)


def prepare(scene, backend: str = "auto"):
    """The scene's arrays ready for many :func:`render` calls with ``backend`` (``"auto"`` resolves as in
    :func:`render`): a :class:`~.cpu.PreparedScene` (float32, activated, contiguous) for the CPU or a
    :class:`~.gsplat_backend.GsplatScene` (uploaded to the GPU once) for gsplat. Pass it as ``prepared=``; it
    is a snapshot, so prepare again after changing the scene."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "gsplat" or (backend == "auto" and has_gsplat()):
        return GsplatScene(scene)
    return PreparedScene(scene)


def render_many(
    scene,
    cameras: Sequence | Iterable,
    *,
    progress: Callable[[int, int], None] | None = None,
    **kwargs,
) -> list[RenderResult]:
    """Render ``scene`` from each camera in turn; see :func:`render` for ``kwargs``.

    The scene is prepared once for all cameras (:func:`prepare`: converted for the CPU, uploaded for gsplat).
    ``progress(i, n)`` is called after each view (i = 1..n).

    Returns:
        list of :class:`RenderResult`, one per camera, in order.
    """
    cams = list(cameras)
    prep = prepare(scene, kwargs.get("backend", "auto"))
    out = []
    for i, cam in enumerate(cams):
        out.append(_render(scene, cam, prep, **kwargs))
        if progress is not None:
            progress(i + 1, len(cams))
    return out


__all__ = [
    "ALPHA_MAX",
    "ALPHA_THRESHOLD",
    "BACKENDS",
    "EPS2D",
    "EXTEND_MAX",
    "FAR_PLANE",
    "NEAR_PLANE",
    "RenderResult",
    "T_STOP",
    "TILE_SIZE",
    "has_gsplat",
    "prepare",
    "render",
    "render_many",
    "sh_to_color",
]


class _CallableModule(types.ModuleType):
    """Lets ``exgs_core.render(scene, camera, ...)`` call :func:`render` although ``exgs_core.render`` is this
    package (a package attribute would be shadowed by the subpackage as soon as it is imported)."""

    def __call__(self, scene, camera, **kwargs) -> RenderResult:
        return render(scene, camera, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
