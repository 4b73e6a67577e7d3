"""What this machine allows: numba's parallel kernels from several Python threads, and how much memory a single
allocation may take.

The Blender add-on compresses in a background thread while its render engine renders, so two threads can launch
``parallel=True`` kernels at the same time. That is fine with numba's OpenMP or TBB threading layers, but the
fallback layer, ``workqueue`` (what a pip-installed numba gets where neither OpenMP nor TBB is found, e.g.
macOS without libomp), is not thread-safe: a concurrent launch **terminates the process** (measured: with
``NUMBA_THREADING_LAYER=workqueue``, rendering while a compress runs in a thread kills Python).

:func:`guarded` wraps a parallel kernel so that, under a layer that is not thread-safe, launches from different
threads take turns (one process-wide re-entrant lock); under OpenMP / TBB it adds one flag check per launch.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.RLock()
_SAFE: bool | None = None
THREADSAFE_LAYERS = ("omp", "tbb")


def threadsafe_layer() -> bool:
    """True when numba's threading layer (started here if no parallel kernel has run yet) is OpenMP or TBB;
    False for ``workqueue`` or when it cannot be determined (then launches are serialised, the safe side)."""
    global _SAFE
    if _SAFE is None:
        with _LOCK:
            if _SAFE is None:
                try:
                    import numba

                    try:
                        layer = numba.threading_layer()
                    except ValueError:  # no parallel region has run yet: start the thread pool to find out
                        from numba.np.ufunc.parallel import _launch_threads

                        _launch_threads()
                        layer = numba.threading_layer()
                    _SAFE = layer in THREADSAFE_LAYERS
                except Exception:  # numba missing or its internals moved: serialise
                    _SAFE = False
    return _SAFE


def guarded(kernel):
    """``kernel`` (a numba ``parallel=True`` dispatcher, or its pure-Python fallback) made safe to call from any
    thread. The dispatcher stays reachable as ``.kernel``."""

    def call(*args, **kwargs):
        if _SAFE or (_SAFE is None and threadsafe_layer()):
            return kernel(*args, **kwargs)
        with _LOCK:
            return kernel(*args, **kwargs)

    call.kernel = kernel
    call.__name__ = getattr(kernel, "__name__", "kernel")
    call.__qualname__ = getattr(kernel, "__qualname__", call.__name__)
    call.__doc__ = getattr(kernel, "__doc__", None)
    call.__wrapped__ = kernel
    return call


def memory_limit() -> int:
    """Half the physical memory, or 2^40 if unknown: the ceiling that .exgs decoding and the renderer's tile lists
    accept before they allocate."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)
    except (ValueError, OSError, AttributeError):
        return 1 << 40
