"""The restoration backend the engine uses: one :class:`exgs_core.worker.WorkerClient` (a worker process with
torch + GaussPainter, started on the first restored render, stopped on unregister and at quit, restarted on the
next render after a crash) or an in-process :class:`exgs_core.worker.LocalBackend`, as the preferences say.

No bpy data is touched here (the viewport thread calls :func:`backend` with settings read on the main thread).
"""

from __future__ import annotations

import threading

import numpy as np

_lock = threading.Lock()
_backend = None
_config = None


def backend(settings: dict):
    """The backend for ``settings`` (:func:`exgs_blender.preferences.restore_settings`); a changed setting
    replaces (and stops) the previous one."""
    global _backend, _config
    from exgs_core.worker import LocalBackend, WorkerClient

    cfg = (settings["mode"], settings.get("python") or "", settings.get("weights") or "", settings.get("device"))
    with _lock:
        if _backend is not None and cfg == _config:
            return _backend
        old, _backend, _config = _backend, None, None
        if old is not None:
            old.stop()
        weights = cfg[2] or None
        if cfg[0] == "IN_PROCESS":
            _backend = LocalBackend(weights, device=cfg[3])
        else:
            _backend = WorkerClient(cfg[1] or None, weights=weights, device=cfg[3])
        _config = cfg
        return _backend


def current():
    return _backend


def shutdown() -> None:
    """Stop the worker (unregister, quit)."""
    global _backend, _config
    with _lock:
        old, _backend, _config = _backend, None, None
    if old is not None:
        old.stop()


def status_line() -> str:
    b = _backend
    if b is None:
        return ""
    if getattr(b, "kind", "") == "worker":
        if b.alive:
            i = b.info or {}
            return (f"Worker pid {b.pid}: Python {i.get('python_version', '?')}, torch {i.get('torch') or 'missing'}"
                    f"{', CUDA' if i.get('cuda') else ''}")
        if b.last_crash:
            return "Worker crashed; it restarts with the next render"
        return "Worker not running (starts with the first restored render)"
    return "Restoration runs inside Blender"


# ------------------------------------------------------------------------------------------------ pixels
def close_alpha(alpha: np.ndarray, radius: int = 3) -> np.ndarray:
    """Morphological closing of alpha (max then min filter, square window), numpy only: the coverage the
    restorer fills (the same closing GaussPainter's pre-fill uses)."""
    def _filt(a, fn):
        out = a
        for axis in (0, 1):
            p = np.pad(out, [(radius, radius) if i == axis else (0, 0) for i in range(2)], mode="edge")
            n = out.shape[axis]
            sl = (lambda k: p[k:k + n]) if axis == 0 else (lambda k: p[:, k:k + n])
            acc = sl(0).copy()
            for k in range(1, 2 * radius + 1):
                fn(acc, sl(k), out=acc)
            out = acc
        return out

    a = np.asarray(alpha, np.float32)
    if radius <= 0:
        return a
    return np.maximum(_filt(_filt(a, np.maximum), np.minimum), a)
