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


#: Environment variable that replaces the automatic ceiling of :func:`memory_limit` (bytes; "8G", "512M").
ENV_MEMORY_LIMIT = "EXGS_MEMORY_LIMIT"
_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as 2^63 - page size


def memory_limit() -> int:
    """Bytes a single allocation plan (an .exgs / .spz / .sog decode, the renderer's tile lists) may take: the
    smallest of

    - half the physical memory (the machine is shared with the rest of the desktop);
    - the address space left under ``RLIMIT_AS`` (``ulimit -v``): the limit minus this process's ``VmSize``;
    - the memory left under the cgroup's limit (containers, systemd slices): v2 ``memory.max - memory.current``,
      v1 ``memory.limit_in_bytes - memory.usage_in_bytes`` (the smallest over the cgroup and its parents), plus
      the reclaimable page cache (``inactive_file``) in either.

    ``EXGS_MEMORY_LIMIT`` (bytes, or with a K/M/G/T suffix), when set, replaces all of these. 2^40 when nothing
    can be determined."""
    env = os.environ.get(ENV_MEMORY_LIMIT)
    if env is not None and env.strip():
        return _parse_bytes(env)
    return min(v for v, _ in _limits())


def memory_limit_source() -> str:
    """Words for what sets :func:`memory_limit` now (for error messages)."""
    env = os.environ.get(ENV_MEMORY_LIMIT)
    if env is not None and env.strip():
        return f"{ENV_MEMORY_LIMIT}={env.strip()}"
    v, why = min(_limits(), key=lambda t: t[0])
    return why + f"; set {ENV_MEMORY_LIMIT} to change it"


def _parse_bytes(text: str) -> int:
    """Bytes from ``EXGS_MEMORY_LIMIT``: a number with an optional K, M, G or T suffix (powers of 1024)."""
    import re

    t = text.strip().lower().replace("_", "")
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?)i?b?", t)
    if not m:
        from .errors import ExgsError

        raise ExgsError(
            f"environment variable {ENV_MEMORY_LIMIT}={text!r} is not a byte count (examples: 8000000000, 8G, 512M)"
        )
    return int(float(m.group(1)) * (1 << (10 * " kmgt".index(m.group(2) or " "))))


def _limits() -> list[tuple[int, str]]:
    out = []
    try:
        out.append((int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2), "half the physical memory"))
    except (ValueError, OSError, AttributeError):
        out.append((1 << 40, "no memory size known"))
    rl = _rlimit_headroom()
    if rl is not None:
        out.append((rl, "the address space left under RLIMIT_AS (ulimit -v)"))
    cg = _cgroup_headroom()
    if cg is not None:
        out.append((cg, "the memory left under the cgroup limit"))
    return out


def _rlimit_headroom() -> int | None:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError, AttributeError):
        return None
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = _vm_size()
    return max(0, soft - used)


def _vm_size() -> int:
    """Address space this process maps now (``VmSize``), 0 when unknown."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


#: Root of the cgroup file system (a parameter for tests).
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            t = f.read(64).strip()
    except OSError:
        return None
    if t == b"max":
        return None
    try:
        v = int(t)
    except ValueError:
        return None
    return None if v >= _UNLIMITED else v


def _stat_value(path: str, keys: tuple[bytes, ...]) -> int:
    try:
        with open(path, "rb") as f:
            for line in f:
                k, _, v = line.partition(b" ")
                if k in keys:
                    return int(v)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_dirs() -> tuple[list[str], list[str]]:
    """(v2 directories, v1 memory-controller directories) of this process's cgroup and its parents, deepest first;
    the mount root comes last (inside a container the paths in /proc/self/cgroup are often not visible)."""
    v2: list[str] = []
    v1: list[str] = []
    try:
        with open(PROC_CGROUP, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, rel = parts
        rel = rel.strip("/")
        if hid == "0" and ctrls == "":
            base, out = (
                CGROUP_ROOT
                if os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
                else os.path.join(CGROUP_ROOT, "unified"),
                v2,
            )
        elif "memory" in ctrls.split(","):
            base, out = os.path.join(CGROUP_ROOT, "memory"), v1
        else:
            continue
        segs = [s for s in rel.split("/") if s and s != ".."]
        for k in range(len(segs), -1, -1):
            d = os.path.join(base, *segs[:k])
            if d not in out:
                out.append(d)
    return v2, v1


def _cgroup_headroom() -> int | None:
    """Bytes left under the tightest cgroup memory limit that applies to this process, None when none does."""
    best = None
    try:
        v2, v1 = _cgroup_dirs()
    except Exception:  # never let an odd /proc or /sys break a decode
        return None
    for d in v2:
        lim = _read_int(os.path.join(d, "memory.max"))
        if lim is None:
            continue
        cur = _read_int(os.path.join(d, "memory.current")) or 0
        free = lim - cur + _stat_value(os.path.join(d, "memory.stat"), (b"inactive_file",))
        best = free if best is None else min(best, free)
    for d in v1:
        lim = _read_int(os.path.join(d, "memory.limit_in_bytes"))
        hier = _stat_value(os.path.join(d, "memory.stat"), (b"hierarchical_memory_limit",))
        if hier and hier < _UNLIMITED:
            lim = hier if lim is None else min(lim, hier)
        if lim is None:
            continue
        cur = _read_int(os.path.join(d, "memory.usage_in_bytes")) or 0
        free = lim - cur + _stat_value(os.path.join(d, "memory.stat"), (b"total_inactive_file", b"inactive_file"))
        best = free if best is None else min(best, free)
    return None if best is None else max(0, best)
