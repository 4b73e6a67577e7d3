"""exgs_core: extreme compression of 3D Gaussian Splatting scenes, and rendering them back.

Pure Python + NumPy (the CPU renderer uses numba); never imports ``bpy``. Heavy optional backends
(torch, gsplat, diffusers) are imported lazily by the functions that need them.

Conventions (quaternion order, axes, colour) are pinned in :mod:`exgs_core.conventions`.
"""

from .camera import Camera
from .errors import BackendUnavailable, CameraError, ExgsError, FormatError, SceneError, UnsupportedFormatError
from .io import detect_format, load, save_ply
from .scene import GaussianScene, SceneReport

__version__ = "0.1.0"


def __getattr__(name):
    # ``exgs_core.render`` is the render subpackage, imported on first use (numba loads with it). The module is
    # callable, so ``exgs_core.render(scene, camera)`` and ``exgs_core.render.render(...)`` both work.
    if name == "render":
        import importlib

        return importlib.import_module(".render", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BackendUnavailable",
    "Camera",
    "CameraError",
    "ExgsError",
    "FormatError",
    "GaussianScene",
    "SceneError",
    "SceneReport",
    "UnsupportedFormatError",
    "detect_format",
    "load",
    "render",
    "save_ply",
    "__version__",
]
