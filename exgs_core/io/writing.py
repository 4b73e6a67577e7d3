"""What every writer shares: the scene check before writing, range clamping that is counted, and the report.

Every ``write_<format>(scene, path, ...)`` in :mod:`exgs_core.io` follows the same contract:

1. :func:`prepare` refuses a scene with NaN/Inf values or zero-norm rotations (a :class:`SceneError` with the
   counts per field and the output path), or, with ``sanitize=True``, writes the sanitised scene and lists what
   changed in the report (:meth:`GaussianScene.sanitize`: such Gaussians dropped, zero rotations -> identity).
2. Values outside what the format can hold are clamped with :meth:`WriteReport.clamp`, which counts them per
   field; nothing is silently wrapped.
3. Bytes are deterministic for the same scene and options, and reach ``path`` through
   :func:`exgs_core.io.atomic.atomic_write` (temp file + rename): a failed write leaves no half-written file.
4. The writer returns a :class:`WriteReport`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import SceneError
from ..scene import GaussianScene


@dataclass
class WriteReport:
    """What a writer did.

    Attributes:
        format: the written format's name (``"spz"``, ``"sog"``, ``"compressed_ply"``, ``"splat"``, ``"glb"``,
            ``"ply"``, ``"exgs"``).
        path: the output file.
        bytes: its size in bytes.
        gaussians: Gaussians written.
        clamped: field name -> number of values clamped into the format's range (only non-zero counts).
        notes: sentences about what changed (sanitising, SH degree cut, axes converted, ...).
    """

    format: str
    path: str | None = None
    bytes: int = 0
    gaussians: int = 0
    clamped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def clamp(self, name: str, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """``values`` clipped to [lo, hi]; the number of entries outside (NaN counts as outside) is added to
        ``clamped[name]``. Returns a new array of the same shape and dtype."""
        v = np.asarray(values)
        with np.errstate(invalid="ignore"):
            outside = int(np.count_nonzero(~((v >= lo) & (v <= hi))))
        if outside:
            self.clamped[name] = self.clamped.get(name, 0) + outside
        return np.clip(np.nan_to_num(v, nan=lo), lo, hi).astype(v.dtype, copy=False)

    def __str__(self) -> str:
        lines = [f"wrote {self.gaussians:,} Gaussians as {self.format} ({self.bytes:,} bytes) to {self.path}"]
        lines += [f"clamped {n:,} value(s) of {k} into the format's range" for k, n in self.clamped.items()]
        lines += self.notes
        return "\n".join(lines)


def prepare(scene: GaussianScene, path: str | os.PathLike | None, fmt: str, *, sanitize: bool = False):
    """The scene to write and a fresh :class:`WriteReport` for format ``fmt``.

    Raises:
        SceneError: when the scene holds NaN/Inf values or zero-norm rotations and ``sanitize`` is False (the
            message gives the counts per field and names ``path``).
    """
    rep = scene.validate()
    report = WriteReport(format=fmt, path=None if path is None else os.fspath(path))
    if rep.ok:
        return scene, report
    if not sanitize:
        raise SceneError(
            "refusing to write a scene with " + "; ".join(rep.problems()) + " (sanitize=True / --sanitize writes the "
            "scene with those Gaussians dropped and zero rotations set to identity)",
            path,
        )
    clean, srep = scene.sanitize()
    report.notes += [f"sanitised: {a}" for a in srep.actions]
    return clean, report
