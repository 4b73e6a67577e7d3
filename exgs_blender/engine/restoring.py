"""Restoration for the engine: a frame whose .exgs scene head is the whole restoration is restored here, in numpy
(:func:`restore_frame`); otherwise the backend: one :class:`exgs_core.worker.WorkerClient` (a worker process with
torch + GaussPainter, started on the first restored render, stopped on unregister and at quit, restarted on the
next render after a crash) or an in-process :class:`exgs_core.worker.LocalBackend`, as the preferences say.

No bpy data is touched here (the viewport thread calls :func:`backend` with settings read on the main thread).
"""

from __future__ import annotations

import threading

import numpy as np

CLOSE_RADIUS = 3  # px: the closing of the coverage that the restorer fills
COVERED = 1e-4  # alpha above which a pixel counts as covered (has a depth)

_lock = threading.Lock()
_backend = None
_config = None


def backend(settings):
    """The backend for ``settings`` (:class:`exgs_core.worker.RestoreSettings`, from
    :func:`exgs_blender.preferences.restore_settings`); a changed setting replaces (and stops) the previous one."""
    global _backend, _config
    from exgs_core.worker import LocalBackend, WorkerClient

    key = settings.backend_key
    with _lock:
        if _backend is not None and key == _config:
            return _backend
        old, _backend, _config = _backend, None, None
        if old is not None:
            old.stop()
        if key.mode == "IN_PROCESS":
            _backend = LocalBackend(key.weights, device=key.device)
        else:
            _backend = WorkerClient(key.python, weights=key.weights, device=key.device)
        _config = key
        return _backend


def head_alone(settings, head) -> bool:
    """Frames with scene head ``head`` (a SceneHead or None) are restored by the head alone with ``settings``'
    weights (:func:`exgs_core.painter.restore.head_alone`): numpy in Blender's own process, no worker, no torch."""
    from exgs_core.painter.restore import head_alone as _head_alone

    return _head_alone(head, settings.weights)


def restore_frame(settings, rgb, alpha, depth=None, *, head=None, cancel=None):
    """Restore one frame (rgb [H, W, 3] premultiplied over black, alpha [H, W], depth [H, W] camera z; float32):
    by its scene head alone in this process where that is the whole restoration (:func:`head_alone`; the
    shipped weights for an .exgs with a head), else through :func:`backend` (worker or in-process GaussPainter,
    the head first). float32 [H, W, 3], or None when ``cancel()`` became true."""
    if head_alone(settings, head):
        from exgs_core.painter.restore import restore_with_head

        return restore_with_head(rgb, alpha, depth, head=head)
    return backend(settings).restore(rgb, alpha, depth, cancel=cancel, head=head)


def unavailable_reason(settings, head=None) -> str | None:
    """Why restoration cannot run with ``settings`` (:func:`exgs_blender.preferences.restore_settings`) for frames
    with scene head ``head`` (None: the generic painter), or None when it can: a frame its head alone restores
    (:func:`head_alone`) needs neither the worker nor torch. Cheap (file checks, ``find_spec``, a small JSON
    read): called for every frame."""
    import importlib.util

    if head_alone(settings, head):
        return None
    if settings.mode == "IN_PROCESS":
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("diffusers") is None:
            return (
                "torch and diffusers are not importable in Blender's own Python: choose Run restoration: "
                "Worker process in Preferences > Add-ons > ExGS"
            )
        return None
    from exgs_core.worker import WorkerError, resolve_python

    try:
        resolve_python(settings.python)
    except WorkerError as e:
        return str(e)
    return None


def current():
    return _backend


def frame_head(heads):
    """The scene head to restore a frame with (an :class:`exgs_core.codec.head.SceneHead` for the backends'
    ``restore(..., head=)``; ``render_restore`` takes it from ``scene.meta["exgs_head"]``): ``heads`` holds one
    entry per splat object in the frame, each the ``HEAD`` payload bytes of the .exgs it was imported from or
    None. A head is fitted to one scene's renders alone, so it applies only when exactly one object is in view and
    has one; otherwise None (the generic painter only). A payload that does not parse gives None too."""
    from exgs_core.codec.head import SceneHead, UnknownHeadVersion
    from exgs_core.errors import FormatError

    heads = list(heads)
    if len(heads) != 1 or not heads[0]:
        return None
    try:
        return SceneHead.from_bytes(bytes(heads[0]))
    except (FormatError, UnknownHeadVersion):
        return None


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
            return (
                f"Worker pid {b.pid}: Python {i.get('python_version', '?')}, torch {i.get('torch') or 'missing'}"
                f"{', CUDA' if i.get('cuda') else ''}"
            )
        if b.last_crash:
            return "Worker crashed; it restarts with the next render"
        return "Worker not running (starts with the first restored render)"
    return "Restoration runs inside Blender"


# ------------------------------------------------------------------------------------------------ pixels
def _box_filter(a: np.ndarray, radius: int, fn) -> np.ndarray:
    """Separable (2r+1)x(2r+1) max or min filter (``fn`` = np.maximum / np.minimum) of [H, W] ``a``, edges
    replicated; numpy only."""
    out = a
    for axis in (0, 1):
        p = np.pad(out, [(radius, radius) if i == axis else (0, 0) for i in range(2)], mode="edge")
        n = out.shape[axis]
        acc = np.take(p, np.arange(n), axis=axis)
        for k in range(1, 2 * radius + 1):
            fn(acc, np.take(p, np.arange(k, k + n), axis=axis), out=acc)
        out = acc
    return out


def close_alpha(alpha: np.ndarray, radius: int = CLOSE_RADIUS) -> np.ndarray:
    """float32 [H, W] morphological closing of alpha [H, W] (max then min filter, square window): the coverage
    the restorer fills (the same closing GaussPainter's pre-fill uses)."""
    a = np.asarray(alpha, np.float32)
    if radius <= 0:
        return a
    return np.maximum(_box_filter(_box_filter(a, radius, np.maximum), radius, np.minimum), a)


def fill_depth(
    depth: np.ndarray, alpha: np.ndarray, closed: np.ndarray, radius: int = CLOSE_RADIUS, threshold: float = COVERED
) -> np.ndarray:
    """float32 [H, W] depth (camera z, world units) for a restored frame: the render's own depth where it covers
    (``alpha > threshold``), and on pixels only the closing covers (``closed > threshold``, filled by the
    restorer) the nearest surface among the covered pixels within ``radius`` (min filter); elsewhere unchanged.
    A closed pixel always has a covered pixel within ``radius`` (the closing's dilation put it there), so no
    restored pixel is left at depth 0."""
    depth = np.asarray(depth, np.float32)
    covered = np.asarray(alpha) > threshold
    near = _box_filter(np.where(covered, depth, np.float32(np.inf)), radius, np.minimum)
    fill = (np.asarray(closed) > threshold) & ~covered & np.isfinite(near)
    return np.where(fill, near, depth).astype(np.float32)
