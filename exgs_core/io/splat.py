"""antimatter15 ``.splat``: 32-byte records, no header, no SH beyond DC.

One record per Gaussian, little endian:

======== ========== =====================================================================================
bytes    type       meaning
======== ========== =====================================================================================
0..11    3 x f32    centre x, y, z
12..23   3 x f32    **linear** scales (exp of the 3DGS log-scales)
24..27   4 x u8     R, G, B = (0.5 + SH_C0 * f_dc) * 255; A = sigmoid(opacity) * 255
28..31   4 x u8     rotation w, x, y, z = q / |q| * 128 + 128
======== ========== =====================================================================================

Decoding (this module, as the antimatter15 viewer): ``log_scales = log(scale)``, ``f_dc = (c / 255 - 0.5) /
SH_C0``, ``opacity_logit = logit(a / 255)`` clipped at 1e-6 (:func:`exgs_core.conventions.logit`), ``quat =
(b - 128) / 128`` kept unnormalised. PlayCanvas splat-transform decodes the rotation as ``b / 255 * 2 - 1`` and
normalises; the two agree within one quantisation step (1/128) after normalisation.

Writing (:func:`write_splat`, :func:`encode_splat_bytes`; the contract of :mod:`exgs_core.io.writing`): records in
antimatter15's order (large, opaque Gaussians first; :func:`splat_order`) unless ``sort=False``; bytes are
**rounded** (antimatter15's ``convert.py`` and splat-transform 3.10.2 truncate; rounding halves the error, and
readers cannot tell). Quantisation and error bounds after :func:`read_splat` (in-range input):

=========== ============================ =============================================================
field       stored as                    error bound
=========== ============================ =============================================================
centre      float32                      exact
scale       float32 of exp(log-scale)    a few float32 ulps of the log-scale (relative 1e-6); log-scales
                                         outside [-87, 88] are clamped there (counted as ``log_scales``)
base colour 8 bits of 0.5 + SH_C0 f_dc   1/510 in rgb (0.0070 in f_dc); rgb outside [0, 1] is clamped
                                         (counted as ``sh_dc``)
opacity     8 bits of sigmoid            1/510 in opacity; logits beyond +-13.8 read back as +-13.8
rotation    8 bits of q / abs(q) per     1/256 per component of q / abs(q) as read (unnormalised); a
            component (q * 128 + 128)    component above 127.5/128 (the w = 1 of an identity) is stored as
                                         127/128 (1/128; counted as ``quats``); 0.0055 measured after the
                                         reader's value is normalised
SH rest     not stored                   dropped (a note says so); so are extras and the antialiasing flag
=========== ============================ =============================================================

32 bytes per Gaussian, no header.
"""

from __future__ import annotations

import os

import numpy as np

from ..conventions import SH_C0, logit, sigmoid
from ..errors import FormatError, SceneError
from ..scene import GaussianScene
from .atomic import atomic_write
from .writing import WriteReport, prepare

__all__ = ["read_splat", "write_splat", "encode_splat", "encode_splat_bytes", "SPLAT_DTYPE", "RECORD_BYTES"]

RECORD_BYTES = 32
#: log-scales are clamped to this range on writing, so the linear float32 scale stays a normal positive number
LOG_SCALE_MIN, LOG_SCALE_MAX = -87.0, 88.0

#: One .splat record as a NumPy structured dtype (itemsize 32).
SPLAT_DTYPE = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])
assert SPLAT_DTYPE.itemsize == RECORD_BYTES


def read_splat(path: str | os.PathLike) -> GaussianScene:
    """Read an antimatter15 ``.splat`` file into a :class:`GaussianScene` (SH degree 0), in file order.

    Returns:
        ``means`` float32 [N, 3]; ``log_scales`` float32 [N, 3] = log of the stored linear scales (a scale of 0
        gives -inf, a negative one NaN: kept, with a note, for :meth:`GaussianScene.validate` to report, never
        repaired); ``sh`` float32 [N, 1, 3] = (c / 255 - 0.5) / SH_C0; ``opacity_logits`` float32 [N] =
        logit(a / 255) clipped to [1e-6, 1 - 1e-6] (about +-13.8); ``quats`` float32 [N, 4] w, x, y, z =
        (b - 128) / 128, unnormalised. ``meta["format"] = "splat"``.

    Raises:
        FormatError: the file is empty, its size is not a multiple of 32 bytes, or it is not a regular file.
    """
    from . import check_input_path

    path = os.fspath(path)
    check_input_path(path)  # a named pipe or a device has no size to check
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise FormatError(f"cannot read: {e.strerror or e}", path) from None
    if size == 0:
        raise FormatError("the .splat file is empty", path)
    if size % RECORD_BYTES:
        raise FormatError(
            f"size {size} B is not a multiple of the {RECORD_BYTES}-byte .splat record "
            f"({size % RECORD_BYTES} trailing bytes): truncated or not a .splat file",
            path,
            offset=size - size % RECORD_BYTES,
        )
    n = size // RECORD_BYTES
    try:
        rec = np.fromfile(path, dtype=SPLAT_DTYPE, count=n)
    except (OSError, ValueError, MemoryError) as e:
        raise FormatError(f"cannot read: {e}", path) from None
    if rec.shape[0] != n:
        raise FormatError(f"short read: expected {n} records, got {rec.shape[0]}", path)

    notes = []
    scale = rec["scale"].astype(np.float64)
    bad = ~(scale > 0)
    if bad.any():
        notes.append(
            f"{int(bad.any(axis=1).sum())} record(s) with a scale <= 0 or NaN: log gives -inf/NaN, kept "
            f"as is (see scene.validate())"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_scales = np.log(scale).astype(np.float32)
    rgba = rec["rgba"].astype(np.float64)
    dc = ((rgba[:, :3] / 255.0 - 0.5) / SH_C0).astype(np.float32)
    opacity = logit(rgba[:, 3] / 255.0)
    quats = ((rec["rot"].astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    meta = {"format": "splat", "path": path, "notes": notes}
    return GaussianScene(rec["pos"].astype(np.float32), quats, log_scales, opacity, dc[:, None, :], {}, meta)


def splat_order(scene: GaussianScene) -> np.ndarray:
    """int64 [N] record order antimatter15 uses: descending exp(sum of log-scales) * sigmoid(opacity) (large and
    opaque first); stable, so ties keep scene order."""
    key = np.exp(scene.log_scales.astype(np.float64).sum(axis=1)) * sigmoid(scene.opacity_logits)
    return np.argsort(-key, kind="stable")


def _encode_records(s: GaussianScene, report: WriteReport) -> np.ndarray:
    """SPLAT_DTYPE [N] records of ``s`` in its order; values that need clipping are counted in ``report``."""
    rec = np.zeros(s.n, SPLAT_DTYPE)
    rec["pos"] = s.means
    ls = s.log_scales.astype(np.float64)
    ls = np.where(np.isnan(ls), ls, report.clamp("log_scales", ls, LOG_SCALE_MIN, LOG_SCALE_MAX))  # NaN stays NaN
    rec["scale"] = np.exp(ls).astype(np.float32)
    rgb = np.rint((0.5 + SH_C0 * s.sh[:, 0, :].astype(np.float64)) * 255.0)
    a = np.rint(sigmoid(s.opacity_logits).astype(np.float64) * 255.0)
    rec["rgba"][:, :3] = report.clamp("sh_dc", rgb, 0, 255).astype(np.uint8)
    rec["rgba"][:, 3] = report.clamp("opacity_logits", a, 0, 255).astype(np.uint8)
    q = s.quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    qn = np.divide(q, norm, out=np.zeros_like(q), where=norm > 0)
    rec["rot"] = report.clamp("quats", np.rint(qn * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return rec


def encode_splat(scene: GaussianScene, *, sort: bool = True) -> np.ndarray:
    """Encode ``scene`` as .splat records (SPLAT_DTYPE [N]); SH beyond DC and extras are dropped.

    The low-level record encoder (no report; :func:`encode_splat_bytes` is the writers' contract). Colour, alpha
    and rotation are **rounded** to the nearest byte (antimatter15's ``convert.py`` truncates; rounding halves the
    worst-case error and readers cannot tell the difference) and clipped to 0..255. A zero rotation is written as
    (128, 128, 128, 128), which decodes back to zero.

    Raises:
        SceneError: NaN/Inf in the colour, opacity or rotation (they have no byte encoding; see
            :meth:`GaussianScene.sanitize`).
    """
    for name, a in (("sh (DC)", scene.sh[:, 0]), ("opacity_logits", scene.opacity_logits), ("quats", scene.quats)):
        nbad = int((~np.isfinite(a.reshape(a.shape[0], -1))).any(axis=1).sum())
        if nbad:
            raise SceneError(f"cannot encode as .splat: {nbad} Gaussian(s) with NaN/Inf in {name}; sanitize first")
    s = scene.subset(splat_order(scene)) if sort else scene
    return _encode_records(s, WriteReport("splat"))


def encode_splat_bytes(scene: GaussianScene, *, sort: bool = True) -> tuple[bytes, WriteReport]:
    """Encode ``scene`` as the bytes of a .splat file, under the writers' contract (:mod:`exgs_core.io.writing`).

    Args:
        scene: the Gaussians, in 3DGS PLY axes (a scene in SPZ's stored axes is converted, with a note).
        sort: order the records as antimatter15 does (:func:`splat_order`); False keeps the scene's order.

    Returns:
        (32 N bytes, :class:`WriteReport` whose ``clamped`` counts the bytes clipped into 0..255 per field
        (``sh_dc``: colour outside [0, 1]; ``quats``: a unit-quaternion component above 127.5/128, e.g. the w = 1
        of an identity rotation, stored as 127/128), and the log-scales clamped into [-87, 88] (linear scales
        outside float32's normal range); notes say what the format cannot hold (SH beyond DC, extras, the
        antialiasing flag).

    Raises:
        SceneError: NaN/Inf values or zero-norm rotations (:func:`exgs_core.io.writing.prepare`; sanitize first).
    """
    from .spz import to_ply_axes

    clean, report = prepare(scene, None, "splat")
    s = to_ply_axes(clean)
    if s is not clean:
        report.notes.append("converted from SPZ's right-up-back axes to 3DGS PLY's right-down-forward axes")
    if s.sh_degree > 0:
        report.notes.append(f"dropped SH degrees 1..{s.sh_degree}: .splat holds only the base (DC) colour")
    if s.extras:
        report.notes.append(f"dropped per-Gaussian extras {sorted(s.extras)} (.splat has no room for them)")
    if s.antialiased:
        report.notes.append(".splat cannot record that the scene is antialiased (mip-splatting); the flag is lost")
    if sort:
        s = s.subset(splat_order(s))
    data = _encode_records(s, report).tobytes()
    report.bytes, report.gaussians = len(data), s.n
    return data, report


def write_splat(
    scene: GaussianScene, path: str | os.PathLike, *, sort: bool = True, sanitize: bool = False
) -> WriteReport:
    """Write ``scene`` as an antimatter15 ``.splat`` file, atomically (temp file, then rename).

    Records are sorted as antimatter15 does (see :func:`splat_order`) unless ``sort=False``. Lossy: SH beyond DC
    and extras are dropped, colour/alpha/rotation are quantised to 8 bits (see :func:`encode_splat_bytes` for
    what is clamped and counted).

    Args:
        sanitize: write the scene with NaN/Inf Gaussians dropped and zero rotations set to identity (listed in
            the report's notes) instead of refusing it.

    Returns:
        :class:`WriteReport` (format ``"splat"``).

    Raises:
        SceneError: NaN/Inf values or zero-norm rotations and not ``sanitize``. OutputError: ``path`` cannot be
            written.
    """
    clean, report = prepare(scene, path, "splat", sanitize=sanitize)
    data, enc = encode_splat_bytes(clean, sort=sort)
    with atomic_write(path) as f:
        f.write(data)
    enc.path = os.fspath(path)
    enc.notes = report.notes + enc.notes
    return enc
