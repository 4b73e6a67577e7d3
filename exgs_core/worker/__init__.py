"""A worker process for torch / gsplat / GaussPainter, so Blender (any Python version, no torch) can use them.

``python -m exgs_core.worker`` serves render / restore / compress requests on a pipe (length-prefixed JSON,
frames in shared memory: :mod:`.protocol`, :mod:`.server`); :class:`WorkerClient` starts it on demand and
restarts it after a crash; :class:`LocalBackend` does the same work in-process.
"""

from .client import (
    LocalBackend,
    WorkerClient,
    WorkerCrashed,
    WorkerError,
    WorkerNotFound,
    has_torch_here,
    own_python,
    repo_venv_python,
    resolve_python,
    scene_key,
    stop_all,
)
from .settings import RestoreSettings

__all__ = [
    "RestoreSettings",
    "WorkerClient",
    "LocalBackend",
    "WorkerError",
    "WorkerNotFound",
    "WorkerCrashed",
    "resolve_python",
    "own_python",
    "repo_venv_python",
    "has_torch_here",
    "scene_key",
    "stop_all",
]
