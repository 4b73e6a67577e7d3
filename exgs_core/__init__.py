"""exgs_core: extreme compression of 3D Gaussian Splatting scenes, and rendering them back.

Pure Python + NumPy (the CPU renderer uses numba); never imports ``bpy``. Heavy optional backends
(torch, gsplat, diffusers) are imported lazily by the functions that need them.

Conventions (quaternion order, axes, colour) are pinned in :mod:`exgs_core.conventions`.
"""

from ._numba_cache import ensure_numba_cache as _ensure_numba_cache

# before any module with numba kernels (compiled with cache=True) is imported: a read-only install with a read-only
# HOME gets a private numba cache folder instead of "cannot cache function ...: no locator available" (_numba_cache)
_ensure_numba_cache()

from .camera import Camera  # noqa: E402
from .errors import (  # noqa: E402
    BackendUnavailable,
    CameraError,
    ExgsError,
    FormatError,
    LimitError,
    OutputError,
    RenderError,
    SceneError,
    UnsupportedFormatError,
)
from .io import detect_format, load, save_ply  # noqa: E402
from .scene import GaussianScene, SceneReport  # noqa: E402

__version__ = "0.1.0"


#: Submodules reachable as attributes (``ex.views.auto_views(...)``), imported on first use so that
#: ``import exgs_core`` stays light (numba loads with ``render`` and ``compress``, torch only with ``painter``).
LAZY_SUBMODULES = ("render", "views", "compress", "exgs_format", "metrics", "prune", "ugc", "painter", "temporal")


def __getattr__(name):
    # ``exgs_core.render`` is the render subpackage; the module is callable, so ``exgs_core.render(scene, camera)``
    # and ``exgs_core.render.render(...)`` both work.
    if name in LAZY_SUBMODULES:
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendUnavailable",
    "Camera",
    "CameraError",
    "ExgsError",
    "FormatError",
    "GaussianScene",
    "LimitError",
    "OutputError",
    "RenderError",
    "SceneError",
    "SceneReport",
    "UnsupportedFormatError",
    "detect_format",
    "load",
    "render",
    "save_ply",
    "__version__",
]
