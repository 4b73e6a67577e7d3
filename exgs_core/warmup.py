"""Compile exgs_core's numba kernels ahead of their first real use, and tell whether that is still needed.

Every CPU render, compression, .exgs encode and decode runs numba kernels (``@njit(cache=True)`` in
:mod:`.render.cpu`, :mod:`.codec.rangecoder`, :mod:`.codec.palette`, :mod:`.ugc`, :mod:`.knn`). numba compiles a
kernel the first time it is called with a given type signature and stores the machine code in its on-disk cache;
later processes only load it. In a fresh install that first compilation takes seconds (measured on 2 cores: ~7.5 s
before the first CPU render, ~17-23 s before a first compress), which the user would otherwise see as a hang.

* :func:`warm_up` runs each path the add-on uses on a tiny synthetic scene (a few hundred Gaussians, 32 x 32
  views), so every kernel is compiled (or loaded from the cache) with exactly the signatures the real paths use
  (it calls the real public functions; nothing is faked), then writes a stamp. A render or compression that
  follows compiles nothing. The add-on runs it in a background thread when it is enabled and :func:`is_warm` is
  False.
* :func:`is_warm`: True when the kernels of this install are compiled and cached (the stamp is there and matches
  this install), or once :func:`warm_up` has finished in this process. When False, the next render / compress
  compiles: that is the moment to tell the user why it is slow.

What is covered (the add-on's paths): the CPU render (F12 and the viewport: ``render``, ``prepare`` +
``render``, with and without per-Gaussian weights / counts, classic and antialiased), compression with the
default options (score, pairwise merges with the k-d tree, SH cut, codec ladder with decoding), the .exgs export
of a full-SH scene (flat k-means palette), the two-level palette k-means of large scenes, and decoding. The
format readers (.ply, .splat, .spz, .sog, compressed .ply) use no numba, so loading compiles nothing; the gsplat
(CUDA) backend and the restoration worker are not numba either.

Where the stamp lives
    Next to numba's cache of exgs_core: the directory numba picked for the kernels of the ``exgs_core`` package
    itself (``exgs_core/__pycache__`` when writable; with ``NUMBA_CACHE_DIR`` set, ``$NUMBA_CACHE_DIR/
    exgs_core_<hash of the package path>``; numba's user-wide cache directory otherwise), as
    ``exgs-warmup.<python tag>.json``, so deleting the cache deletes the stamp and another ``NUMBA_CACHE_DIR`` has
    none. If that directory cannot be written, the stamp goes to the user cache directory (``~/.cache/exgs`` on
    Linux), named after the cache path. The stamp holds a key: exgs version, numba version, Python version,
    numba's code-generation target (CPU name and features: code cached on another CPU is not used) and a hash of
    the contents of every ``exgs_core`` source file, so an upgrade, a reinstall with other sources, another numba
    or another machine invalidates it; it also lists the kernels, and :func:`is_warm` checks that their cache
    index files still exist.

Thread safety: :func:`warm_up` may run in a background thread while other threads render or compress. numba
compiles under its global compiler lock (a kernel that both threads need is compiled once; the other thread waits
for it), parallel kernels go through :func:`exgs_core._machine.guarded` as in every other path, and nothing here
changes a global setting, a module constant or a random state, so results do not depend on whether or when the
warm-up ran. Two :func:`warm_up` calls in one process run one after the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["STEPS", "is_warm", "kernels", "stamp_path", "warm_up"]

#: The warm-up's steps in order, with their share of the progress bar (about their share of a cold compile).
STEPS = (("render", 0.40), ("compress", 0.40), ("export", 0.08), ("palette", 0.10), ("decode", 0.02))

#: Modules holding numba kernels (imported by :func:`kernels`).
KERNEL_MODULES = (
    "exgs_core.render.cpu",
    "exgs_core.render.sh",
    "exgs_core.codec.rangecoder",
    "exgs_core.codec.palette",
    "exgs_core.knn",
    "exgs_core.prune.merge",
    "exgs_core.prune.refit",
    "exgs_core.msssim",
)

_STAMP_VERSION = 1
_LOCK = threading.Lock()  # one warm-up at a time in this process
_WARM = False  # a warm_up() finished in this process
_SOURCE_HASH: tuple | None = None  # (file stats, digest) of the last source hash


# ------------------------------------------------------------------------------------------------ kernels


def kernels() -> dict:
    """``"module.function"`` -> numba dispatcher of every exgs_core kernel (unwrapping
    :func:`~exgs_core._machine.guarded`). Imports the kernel modules (and numba) the first time."""
    import importlib

    from numba.core.dispatcher import Dispatcher

    out = {}
    for name in KERNEL_MODULES:
        mod = importlib.import_module(name)
        for value in list(vars(mod).values()):
            d = value if isinstance(value, Dispatcher) else getattr(value, "kernel", None)
            if isinstance(d, Dispatcher) and d.py_func.__module__ == name:
                out[f"{name}.{d.py_func.__qualname__}"] = d
    return out


def _jit_disabled() -> bool:
    from numba.core import config

    return bool(getattr(config, "DISABLE_JIT", False))


def _counts(ks: dict) -> tuple[int, int]:
    """(signatures loaded from the cache, signatures compiled) so far in this process, over ``ks``."""
    hits = misses = 0
    for d in ks.values():
        st = d.stats
        hits += sum(st.cache_hits.values())
        misses += sum(st.cache_misses.values())
    return hits, misses


# ------------------------------------------------------------------------------------------------ stamp


def _sources_digest() -> str:
    """sha256 over the relative path and contents of every .py file of the exgs_core package (re-read only when
    a file's size or mtime changed since the last call)."""
    global _SOURCE_HASH
    root = os.path.dirname(os.path.abspath(__file__))
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for f in sorted(filenames):
            if f.endswith(".py"):
                p = os.path.join(dirpath, f)
                st = os.stat(p)
                files.append((os.path.relpath(p, root).replace(os.sep, "/"), st.st_size, st.st_mtime_ns))
    key = tuple(files)
    cached = _SOURCE_HASH
    if cached is not None and cached[0] == key:
        return cached[1]
    h = hashlib.sha256()
    for rel, _, _ in key:
        with open(os.path.join(root, rel), "rb") as fh:
            data = fh.read()
        h.update(rel.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    digest = h.hexdigest()
    _SOURCE_HASH = (files, digest)
    return digest


def _key() -> dict:
    """What the cached machine code depends on: a stamp with another key is stale."""
    import numba
    from numba.core.registry import cpu_target

    from . import __version__

    try:
        target = repr(cpu_target.target_context.codegen().magic_tuple())
    except Exception:  # noqa: BLE001 - numba internals moved: fall back to the CPU name
        import platform

        target = platform.machine() + " " + platform.processor()
    return {
        "stamp": _STAMP_VERSION,
        "exgs": __version__,
        "numba": numba.__version__,
        "python": f"{sys.implementation.name} {sys.version.split()[0]}",
        "target": hashlib.sha256(target.encode()).hexdigest()[:16],
        "sources": _sources_digest(),
    }


def _python_tag() -> str:
    return f"{sys.implementation.cache_tag or 'py'}"


def _cache_dir() -> str | None:
    """The directory numba caches the kernels of the ``exgs_core`` package in (see the module docstring)."""
    from . import knn

    try:
        return knn._build.kernel.stats.cache_path
    except Exception:  # noqa: BLE001 - numba missing (pure-Python fallback) or no cache: nothing to stamp
        return None


def _stamp_candidates() -> list[str]:
    """Where the stamp may be: next to numba's cache, then the user cache directory."""
    cache = _cache_dir()
    if cache is None:
        return []
    name = f"exgs-warmup.{_python_tag()}.json"
    out = [os.path.join(cache, name)]
    try:
        from numba.misc.appdirs import AppDirs

        user = AppDirs("exgs", appauthor=False).user_cache_dir
        tag = hashlib.sha1(os.path.abspath(cache).encode()).hexdigest()[:16]
        out.append(os.path.join(user, "warmup", f"{tag}.{name}"))
    except Exception:  # noqa: BLE001 - no user cache directory: the in-cache stamp only
        pass
    return out


def stamp_path() -> str | None:
    """The stamp file that :func:`is_warm` found valid, else the path :func:`warm_up` would write first; None
    when numba caches nothing for exgs_core."""
    cands = _stamp_candidates()
    for p in cands:
        if _valid(p):
            return p
    return cands[0] if cands else None


def _index_files_present(names) -> bool:
    """True when every listed kernel's cache index file exists (a deleted or partly deleted cache is cold)."""
    ks = kernels()
    for name in names:
        d = ks.get(name)
        if d is None:  # a kernel that no longer exists: the source digest changed too; nothing to check
            continue
        try:
            index = d._cache._cache_file._index_path
        except AttributeError:  # numba internals moved: rely on the key alone
            return True
        if not os.path.exists(index):
            return False
    return True


def _valid(path: str, key: dict | None = None) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            stamp = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or stamp.get("key") != (key or _key()):
        return False
    return _index_files_present(stamp.get("kernels") or [])


def _write_stamp(stamp: dict) -> str | None:
    """Write the stamp (atomically) to the first writable candidate; its path, or None."""
    data = json.dumps(stamp, indent=1, sort_keys=True).encode()
    for path in _stamp_candidates():
        tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
            return path
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return None


def is_warm() -> bool:
    """True when the next render / compress in a new process of this install will not compile numba kernels:
    a valid stamp from :func:`warm_up` is next to numba's cache (same exgs, numba, Python, CPU target and
    exgs_core sources; the kernels' cache index files present), or a :func:`warm_up` finished in this process.
    Also True when numba's JIT is disabled (``NUMBA_DISABLE_JIT``: nothing compiles).

    Costs ~0.3 s the first time in a process (it imports numba and the kernel modules), a few milliseconds after
    that. Never raises: any failure reads as False. Note that True does not mean this process has the kernels in
    memory: the first use still loads them from the cache (tenths of a second; :func:`warm_up` in this process
    does that too)."""
    if _WARM:
        return True
    try:
        if _jit_disabled():
            return True
        key = _key()
        return any(_valid(p, key) for p in _stamp_candidates())
    except Exception:  # noqa: BLE001 - a broken install reads as cold; warm_up will report the error
        return False


# ------------------------------------------------------------------------------------------------ the steps


def _scene(n: int = 384, degree: int = 3, seed: int = 0):
    """A small blob of Gaussians with full SH, seen from outside (float32, like every loaded scene)."""
    import numpy as np

    from .scene import GaussianScene

    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    means = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.6, 1.0, (n, 1))
    quats = rng.normal(size=(n, 4))
    log_scales = np.log(rng.uniform(0.03, 0.12, (n, 3)))
    logits = rng.normal(1.0, 1.5, n)
    sh = rng.normal(0.0, 0.15, (n, (degree + 1) ** 2, 3))
    sh[:, 0] = rng.normal(0.0, 0.8, (n, 3))
    return GaussianScene(means, quats, log_scales, logits, sh, meta={"format": "warmup"})


def _camera(size: int = 32):
    from .camera import Camera

    return Camera.look_at([0.3, -3.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0], 50.0, size, size)


def _step_render(state: dict, cancel) -> None:
    """F12 and the viewport: the CPU renderer, plain and with per-Gaussian weights and counts (scoring)."""
    from .render import prepare, render

    scene, cam = state["scene"], _camera()
    render(scene, cam, backend="cpu")
    prep = prepare(scene, "cpu")  # the viewport's path: prepared once, rendered per frame
    render(
        scene,
        cam.resized(24, 16),
        backend="cpu",
        prepared=prep,
        rasterize_mode="antialiased",
        background=(0.2, 0.2, 0.2),
    )
    render(scene, cam, backend="cpu", return_weights=True, return_counts=True)  # both reductions (f32, i32)


def _step_compress(state: dict, cancel) -> None:
    """compress() with the add-on's default options (auto merge rule: k-d tree, KL and Ward costs; codec
    ladder with decoding), on tiny views, and the scene head's MS-SSIM."""
    from .compress import CompressOptions, compress

    state["compressed"], _ = compress(state["scene"], CompressOptions(ratio=0.25, views=2, view_size=32), cancel=cancel)
    # the scene head's structure guard (MS-SSIM), which a compress this small may not reach
    import numpy as np

    from .msssim import ms_ssim

    img = np.random.default_rng(0).random((24, 24, 3), dtype=np.float32)
    ms_ssim(img, img)


def _step_export(state: dict, cancel) -> None:
    """The .exgs export of a full-SH scene: quantisation, flat k-means palette (M > 256), range coder."""
    from .exgs_format import encode

    state["exported"] = encode(state["scene"])


def _step_palette(state: dict, cancel) -> None:
    """The two-level k-means that palettes of large scenes use (P > 256 and M x P > 2^26: the smallest such
    problem, 8193 rows of 3 floats)."""
    import numpy as np

    from .codec.palette import FLAT_MAX_SIZE, FLAT_MAX_WORK, kmeans_palette

    p = max(FLAT_MAX_SIZE + 1, int(FLAT_MAX_WORK**0.5))
    m = max(p + 1, FLAT_MAX_WORK // p + 1)
    x = np.random.default_rng(1).normal(size=(m, 3)).astype(np.float32)
    kmeans_palette(x, p, iterations=1)


def _step_decode(state: dict, cancel) -> None:
    """Opening .exgs files (and the compressor's own check decodes): the range decoder."""
    from .compress import decompress

    for k in ("compressed", "exported"):
        if state.get(k) is not None:
            decompress(state[k])


_STEP_FUNCS = {
    "render": _step_render,
    "compress": _step_compress,
    "export": _step_export,
    "palette": _step_palette,
    "decode": _step_decode,
}


def _check(cancel) -> None:
    if cancel is not None and (cancel.is_set() if hasattr(cancel, "is_set") else cancel()):
        from .prune import Cancelled

        raise Cancelled("warm-up cancelled")


def warm_up(progress: Callable[[float, str], None] | None = None, cancel=None) -> dict:
    """Compile (or load from numba's cache) every numba kernel the add-on's paths use, then write the stamp that
    :func:`is_warm` reads. Takes ~25 s on 2 cores with a cold cache, ~0.5 s when everything is cached (then it
    only loads the kernels, which also spares this process's first render and compress that load).

    Args:
        progress: ``progress(fraction in [0, 1], stage)``, called before each step (stage
            ``"compiling <step> kernels"``) and at the end (``1.0, "done"``); an exception it raises aborts the
            warm-up and propagates.
        cancel: a ``threading.Event`` (or anything with ``is_set()``, or a callable returning True), checked
            between steps and inside the compress step; when set, :class:`exgs_core.prune.Cancelled` is raised
            (kernels compiled so far stay cached; no stamp is written).

    Returns:
        dict: seconds per step (the keys of :data:`STEPS`), ``"total"`` seconds, and ``"compiled"`` /
        ``"loaded"``: how many kernel signatures this call compiled / loaded from the cache (counted over the
        whole process, so a render in another thread at the same time adds to them). ``"stamp"``: the path
        written, or None if no stamp could be written (then only this process counts as warm).

    Raises:
        Cancelled: ``cancel`` was set. Anything a step raises (a broken install) propagates.
    """
    global _WARM
    with _LOCK:
        t0 = time.perf_counter()
        out: dict = {}
        if _jit_disabled():  # pure Python everywhere: nothing to compile
            _WARM = True
            out.update({name: 0.0 for name, _ in STEPS}, total=0.0, compiled=0, loaded=0, stamp=None)
            return out
        ks = kernels()
        hits0, misses0 = _counts(ks)
        state = {"scene": _scene()}
        done = 0.0
        for name, share in STEPS:
            _check(cancel)
            if progress is not None:
                progress(done, f"compiling {name} kernels")
            t = time.perf_counter()
            _STEP_FUNCS[name](state, cancel)
            out[name] = round(time.perf_counter() - t, 3)
            done += share
        hits1, misses1 = _counts(ks)
        out["compiled"] = misses1 - misses0
        out["loaded"] = hits1 - hits0
        used = sorted(n for n, d in ks.items() if d.signatures)
        stamp = {
            "key": _key(),
            "kernels": used,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.perf_counter() - t0, 3),
            "compiled": out["compiled"],
        }
        out["stamp"] = _write_stamp(stamp)
        _WARM = True
        out["total"] = round(time.perf_counter() - t0, 3)
        if progress is not None:
            progress(1.0, "done")
        return out
