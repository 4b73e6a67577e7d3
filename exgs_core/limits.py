"""How much a reader agrees to decode: the limits every compressed-format reader (.exgs, .spz, .sog) checks after
reading a file's header and **before** it allocates anything sized by the Gaussian count N the file declares.

A few kilobytes of zstd, deflate or lossless WebP can declare tens of millions of Gaussians (a zstd RLE block
stores 128 KiB in 4 bytes; a constant WebP of any size takes 34 bytes), and decoding those takes gigabytes and
tens of seconds before anything could notice that the content is junk. Three limits stop that:

1. **At most** :data:`DEFAULT_MAX_GAUSSIANS` **= 50,000,000 Gaussians per file.** Real scenes have up to about
   10-20 M (a 20 M scene with SH degree 3 is ~5 GB as float32 once decoded); 50 M leaves 2.5x headroom while a
   50 M scene (2.8 GB of float32 at SH degree 0, 12.4 GB at degree 3; decoding peaks at 2-3x that) still fits a
   workstation. Change it with the environment
   variable ``EXGS_MAX_GAUSSIANS`` (``"80000000"``, ``"80M"``, ``"8e7"``; ``0`` or ``"none"`` = no limit beyond
   each format's own), the ``max_gaussians=`` argument of :func:`~exgs_core.io.sog.read_sog`,
   :func:`~exgs_core.io.spz.read_spz`, :func:`~exgs_core.exgs_format.read_exgs` / ``decode``, or
   ``with exgs_core.limits.override(max_gaussians=...):`` around any :func:`exgs_core.load`.
2. **At most** :data:`DEFAULT_GAUSSIANS_PER_BYTE` **= 16 Gaussians per byte of the file**, beyond the first
   :data:`ALWAYS_ALLOWED` = 1,048,576 (so the count may be up to ``max(1,048,576, 16 x file bytes)``). Real
   compressed scenes hold 10-30 bytes per Gaussian (measured: .sog 12.7-33, .spz 14.7-24.7, .exgs 10-56,
   compressed PLY 16.3); 1/16 byte (half a bit) per Gaussian is 200x below the densest of them, so only
   decompression bombs and degenerate synthetic scenes (millions of identical Gaussians) reach it. Change it with
   ``EXGS_MAX_GAUSSIANS_PER_BYTE`` (``0`` = off) or ``override(gaussians_per_byte=...)``.
3. **The decode must fit in memory**: the reader's estimate of its peak bytes must not exceed
   :func:`memory_limit` = the smallest of half the physical memory, the address space left under ``RLIMIT_AS``
   (``ulimit -v``) and the memory left under the process's cgroup limit (v2 ``memory.max``, v1
   ``memory.limit_in_bytes``, including the limits of parent cgroups), or ``EXGS_MEMORY_LIMIT`` (bytes, ``"8G"``)
   when set.

Each refusal raises :class:`~exgs_core.errors.LimitError` (a :class:`~exgs_core.errors.FormatError`) naming the
file, the header field that declares the count, the limit and how to change it. Besides these policy limits,
each reader refuses counts that its payload cannot possibly hold (zstd at most 32768:1, deflate about 1032:1, the
range coder at most 512 binary decisions per byte), which no setting lifts.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
import os
import re
from dataclasses import dataclass, replace

from ._machine import ENV_MEMORY_LIMIT  # re-exported: the variable is read by _machine.memory_limit
from .errors import ExgsError, LimitError

__all__ = [
    "DEFAULT_MAX_GAUSSIANS",
    "DEFAULT_GAUSSIANS_PER_BYTE",
    "ALWAYS_ALLOWED",
    "ENV_MAX_GAUSSIANS",
    "ENV_GAUSSIANS_PER_BYTE",
    "ENV_MEMORY_LIMIT",
    "Limits",
    "current",
    "override",
    "check_count",
    "check_argument",
    "memory_limit",
]

DEFAULT_MAX_GAUSSIANS = 50_000_000
DEFAULT_GAUSSIANS_PER_BYTE = 16
ALWAYS_ALLOWED = 1 << 20

ENV_MAX_GAUSSIANS = "EXGS_MAX_GAUSSIANS"
ENV_GAUSSIANS_PER_BYTE = "EXGS_MAX_GAUSSIANS_PER_BYTE"

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


@dataclass(frozen=True)
class Limits:
    """The limits in force (see the module docstring). ``None`` means "no limit" for the first two;
    ``memory=None`` means "ask :func:`memory_limit` when checking"."""

    max_gaussians: int | None = DEFAULT_MAX_GAUSSIANS
    gaussians_per_byte: float | None = DEFAULT_GAUSSIANS_PER_BYTE
    memory: int | None = None

    def allowed(self, file_bytes: int) -> int | None:
        """The largest count a file of ``file_bytes`` bytes may declare (None: no limit)."""
        caps = []
        if self.max_gaussians is not None:
            caps.append(self.max_gaussians)
        if self.gaussians_per_byte is not None:
            caps.append(max(ALWAYS_ALLOWED, int(self.gaussians_per_byte * max(file_bytes, 0))))
        return min(caps) if caps else None


def _parse(name: str, text: str, units: dict, *, allow_float: bool = False):
    """A count from an environment variable: None for 0 / none / off; K, M, G, T suffixes (powers of 1000)."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    if t in ("", "0", "none", "off", "unlimited", "inf"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?)", t)
    if not m or m.group(2) not in units:
        raise ExgsError(
            f"environment variable {name}={text!r} is not a number (examples: 50000000, 50M, 5e7; 0 or none = no limit)"
        )
    v = float(m.group(1)) * units[m.group(2)]
    if not math.isfinite(v) or v <= 0:
        return None
    return v if allow_float else int(v)


def _from_env() -> Limits:
    env = os.environ
    kw = {}
    if ENV_MAX_GAUSSIANS in env:
        kw["max_gaussians"] = _parse(ENV_MAX_GAUSSIANS, env[ENV_MAX_GAUSSIANS], _UNITS)
    if ENV_GAUSSIANS_PER_BYTE in env:
        kw["gaussians_per_byte"] = _parse(
            ENV_GAUSSIANS_PER_BYTE, env[ENV_GAUSSIANS_PER_BYTE], {"": 1}, allow_float=True
        )
    return Limits(**kw)


_OVERRIDE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("exgs_limits_override", default=None)
_UNSET = object()


def current(max_gaussians=_UNSET) -> Limits:
    """The limits in force here: defaults, then the environment, then :func:`override`, then an explicit
    ``max_gaussians`` argument of a reader (``None`` there means "not given")."""
    lim = _from_env()
    ov = _OVERRIDE.get()
    if ov:
        lim = replace(lim, **ov)
    if max_gaussians is not _UNSET and max_gaussians is not None:
        lim = replace(lim, max_gaussians=_count_arg(max_gaussians))
    return lim


def _count_arg(v) -> int | None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
        raise ValueError(f"max_gaussians must be a non-negative count (0 = no limit), got {v!r}")
    return int(float(v)) or None


def check_argument(max_gaussians) -> None:
    """Raise ``ValueError`` unless a reader's ``max_gaussians=`` argument is None or a count >= 0 (readers call
    this first, so that a bad argument is not reported as a bad file)."""
    if max_gaussians is not None:
        _count_arg(max_gaussians)


@contextlib.contextmanager
def override(*, max_gaussians=_UNSET, gaussians_per_byte=_UNSET, memory=_UNSET):
    """Change limits for the code inside the ``with`` block (this thread / async context only)::

        with exgs_core.limits.override(max_gaussians=100_000_000):
            scene = exgs_core.load("huge.spz")

    ``0`` or ``None`` lifts a limit (``memory=None`` goes back to :func:`memory_limit`)."""
    ov = dict(_OVERRIDE.get() or {})
    if max_gaussians is not _UNSET:
        ov["max_gaussians"] = None if max_gaussians is None else _count_arg(max_gaussians)
    if gaussians_per_byte is not _UNSET:
        if gaussians_per_byte is not None and (isinstance(gaussians_per_byte, bool) or gaussians_per_byte < 0):
            raise ValueError(f"gaussians_per_byte must be >= 0 (0 = no limit), got {gaussians_per_byte!r}")
        ov["gaussians_per_byte"] = gaussians_per_byte or None
    if memory is not _UNSET:
        if memory is not None and (isinstance(memory, bool) or memory < 0):
            raise ValueError(f"memory must be a byte count >= 0, got {memory!r}")
        ov["memory"] = int(memory) if memory else None
    token = _OVERRIDE.set(ov)
    try:
        yield current()
    finally:
        _OVERRIDE.reset(token)


def memory_limit() -> int:
    """Bytes one decode may plan to allocate (:func:`exgs_core._machine.memory_limit`)."""
    from ._machine import memory_limit as ml

    return ml()


def _gb(b: float) -> str:
    return f"{b / 1e9:.1f} GB" if b >= 1e8 else f"{b / 1e6:.1f} MB"


def check_count(
    n: int,
    *,
    file_bytes: int,
    need_bytes: int | None = None,
    path=None,
    field: str | None = None,
    offset: int | None = None,
    what: str = "Gaussians",
    max_gaussians=None,
    limits: Limits | None = None,
) -> None:
    """Refuse a declared count ``n`` before anything of that size is allocated.

    Args:
        n: the count the file declares.
        file_bytes: the size of the file (or of the payload holding the Gaussians).
        need_bytes: the reader's estimate of the peak memory of decoding ``n`` (None: skip the memory check).
        path, field, offset: for the error (the header field declaring ``n``).
        max_gaussians: a reader's ``max_gaussians=`` argument (None: not given).
        limits: the limits to apply (default: :func:`current`).

    Raises:
        LimitError: ``n`` above ``max_gaussians``, above ``max(ALWAYS_ALLOWED, gaussians_per_byte x file_bytes)``,
            or ``need_bytes`` above the memory limit.
    """
    lim = limits or current(max_gaussians)
    if lim.max_gaussians is not None and n > lim.max_gaussians:
        raise LimitError(
            f"declares {n:,} {what}, more than the limit of {lim.max_gaussians:,} (set {ENV_MAX_GAUSSIANS} or pass "
            f"max_gaussians= to read a larger file)",
            path,
            field=field,
            offset=offset,
            limit="max_gaussians",
            value=n,
            allowed=lim.max_gaussians,
        )
    if lim.gaussians_per_byte is not None:
        cap = max(ALWAYS_ALLOWED, int(lim.gaussians_per_byte * max(file_bytes, 0)))
        if n > cap:
            raise LimitError(
                f"declares {n:,} {what} in {file_bytes:,} bytes ({n / max(file_bytes, 1):,.0f} per byte): more than "
                f"max({ALWAYS_ALLOWED:,}, {lim.gaussians_per_byte:g} per byte) = {cap:,}. Real files hold 10 bytes or "
                f"more per Gaussian, so this is a decompression bomb or a degenerate scene (set "
                f"{ENV_GAUSSIANS_PER_BYTE}=0 to read it anyway)",
                path,
                field=field,
                offset=offset,
                limit="gaussians_per_byte",
                value=n,
                allowed=cap,
            )
    if need_bytes is not None:
        mem = lim.memory if lim.memory is not None else memory_limit()
        if need_bytes > mem:
            raise LimitError(
                f"decoding {n:,} {what} needs about {_gb(need_bytes)}, more than the {_gb(mem)} this process may use "
                f"({_machine_limit_source() if lim.memory is None else 'exgs_core.limits.override(memory=...)'})",
                path,
                field=field,
                offset=offset,
                limit="memory",
                value=need_bytes,
                allowed=mem,
            )


def _machine_limit_source() -> str:
    from ._machine import memory_limit_source

    return memory_limit_source()
