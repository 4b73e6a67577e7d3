"""Closed-form colour refit of the survivors after pruning: the SH coefficients that make the pruned scene's
renders closest to the original's, by linear least squares (no gradient re-training).

Why
    After moment-matched merging a survivor's colour is the mass-weighted mean of its group, not the colour that
    makes the render closest to the original: measured at retention 0.1, covered pixels carry a colour bias of
    0.7-3.1/255 (issue #16). With the geometry fixed, a render is linear in the colours, so the best colours are a
    linear least-squares problem.

The problem
    For scoring view v, pixel p and channel c the render is ``R_v(p) = sum_g w_gv(p) col_gvc + T_v(p) bg_c`` with
    the blend weights ``w = alpha * T`` (fixed by the geometry) and ``col_gvc = max(B_gv . x_gc + 0.5, 0)``: the
    SH basis ``B_gv`` [K] in the direction from the camera to Gaussian g (:func:`sh_basis`, gsplat's basis, as the
    renderer evaluates it) dotted with the coefficients ``x_gc`` [K]. We solve for a change ``d`` of the
    coefficients that minimises

        ``sum_v |Y_v - R_v(x0) - A_v d|^2 + d^T P d``

    where ``Y_v`` is the original scene's render, ``x0`` the merged coefficients, ``A_v`` the linearisation at
    ``x0`` and ``P`` a diagonal pull toward the merged colours (below). Colours the clamp at 0 holds at ``x0``
    (channel c of Gaussian g in view v) are an active constraint: that (g, v, c) contributes nothing to ``A_v`` (its
    derivative is 0), so a Gaussian whose channel is clamped in every view keeps its coefficient. The background term does not depend on
    the colours and cancels in the residual.

Which coefficients
    The DC of every survivor; the higher bands (up to ``degree``) of the survivors that keep their SH
    (``sh_full``: by default those with any non-zero higher coefficient). Coefficients no scoring view sees
    (zero weight) keep their value.

How
    Conjugate gradients on the normal equations ``(A^T A + P) d = A^T e0`` (``e0 = Y - R(x0)``), preconditioned
    by ``D + P``. ``D`` is a diagonal majorant of ``A^T A``: per coefficient ``sum_v act B_gv[k]^2 S_gv`` with
    ``S_gv = sum_p w_gv(p) alpha_v(p)`` (the row sum of the blend-weight Gram matrix, >= its diagonal); unseen
    coefficients (``D = 0``) are fixed. The pull ``P`` is ``pull * D`` on the DC, so it is relative to how much of
    the image the Gaussian covers, and :data:`REST_PULL` times the DC's on every higher band (:func:`_system`). Each CG
    iteration is one pass over the scoring views that renders ``A_v p`` and accumulates ``A_v^T`` of it per
    Gaussian (:func:`exgs_core.render.cpu.normal_rows`: blend weight x image, summed per Gaussian in the forward
    pass's tile and depth order; serial reductions, so the result is deterministic), or gsplat's forward and
    autograd on CUDA. On the CPU the first pass stores every blend weight of each view (5 bytes each; the biker
    at 0.1: 0.5 M per 256 px view) while they fit in :data:`CACHE_BYTES`, which makes the CG passes sparse
    products, no exp and no sorting; views beyond it are projected and rasterised again on every pass.

    The result is checked on the true (clamped) render of the scoring views: if the refit made the error worse
    there (the clamp can), the step is halved, and after :data:`BACKTRACKS` halvings the merged colours are kept.
    DC coefficients stay within the original's range widened by its width on each side (:func:`_dc_range`), so a
    few poorly seen Gaussians cannot stretch the range the codec quantises DC colours over.

Cost
    Memory: the unknowns (float64, 3 per Gaussian plus 3 (Kf - 1) per SH-keeping one) times five CG vectors, the
    scoring renders, and the stored weights (bounded by :data:`CACHE_BYTES`). Time: measured on the biker at 0.1
    (15,275 survivors, 24 views of 256 px, 8 iterations): 1.9 s with 16 numba threads and 0.56 s on gsplat on an
    H200 (same result to 0.001 dB).

The scoring views only: the held-out evaluation views (:mod:`exgs_core.views` ``split="eval"``) and the check views
compression judges its choices on are never fitted on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from numba import njit

from ..camera import Camera
from ..errors import SceneError
from ..render.sh import (
    _C0,
    _C1,
    _C2_A,
    _C2_B,
    _C2_C,
    _C2_D,
    _C3_A,
    _C3_B,
    _C3_C,
    _C3_D,
    _C3_E,
    _C3_F,
)
from ..scene import GaussianScene
from .cancel import check_cancel

#: CG iterations :func:`refit_colours` runs by default (each is one render + adjoint pass over the scoring views).
DEFAULT_ITERATIONS = 8
#: Default Tikhonov pull toward the merged colours, relative to each coefficient's share of the images (``D``).
DEFAULT_PULL = 0.05
#: The pull on the higher SH bands, as a multiple of the DC's (see :func:`_system`). Measured at retention 0.1 (held-out
#: PSNR before coding, 6 eval views at 384 px; x1 / x10 / x100 / DC only): pdal 31.37 / 31.29 / 31.13 / 31.07,
#: flowers 23.59 / 23.55 / 23.38 / 23.32, supersplat crop 40.44 / 40.33 / 39.90 / 39.76, kacytran 33.03 / 34.23 / -
#: / 35.33 (unrefitted 35.34; two of its six views see a few Gaussians from directions no scoring view covers and lose
#: 9-14 dB with refitted bands, while 24 eval views at 256 px gain 3.5 dB). x10 keeps most of the bands' gain and
#: halves that worst case.
REST_PULL = 10.0
#: Bytes of per-view data kept between CG passes (tile lists, stored blend weights, per-Gaussian colours before the
#: clamp); views beyond it are projected and rasterised again on every pass.
CACHE_BYTES = 1 << 30
#: Step halvings tried when the refit makes the true (clamped) error on the scoring views worse.
BACKTRACKS = 2
BACKENDS = ("auto", "cpu", "gsplat")


@dataclass(frozen=True)
class RefitReport:
    """What :func:`refit_colours` did and measured (all errors on the scoring views it fitted).

    Attributes:
        backend: ``"cpu"`` or ``"gsplat"`` (``"none"`` when nothing was fitted).
        views: scoring views fitted on.
        iterations: CG iterations run (fewer than asked when it converged).
        coefficients: free scalar unknowns (coefficient x channel) seen by the views.
        gaussians: Gaussians with at least one free coefficient.
        clamped: (Gaussian, view, channel) triples held at the colour clamp (inactive).
        mse_before, mse_after: mean squared error per pixel and channel against the original's renders, before and
            after (true, clamped renders).
        psnr_before, psnr_after: the same as PSNR (dB, peak 1, unclipped).
        objective: the linearised objective (data + pull) after 0, 1, ... CG iterations, as a fraction of its value
            at 0 (non-increasing: CG minimises it over growing subspaces).
        step: fraction of the CG solution kept (1.0; 0.5 or 0.25 after backtracking; 0.0: merged colours kept).
        seconds: wall time.
    """

    backend: str = "none"
    views: int = 0
    iterations: int = 0
    coefficients: int = 0
    gaussians: int = 0
    clamped: int = 0
    mse_before: float = 0.0
    mse_after: float = 0.0
    psnr_before: float = 0.0
    psnr_after: float = 0.0
    objective: tuple = field(default_factory=tuple)
    step: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["objective"] = [round(float(v), 6) for v in self.objective]
        return d


# ----------------------------------------------------------------------------------------------- SH basis
def sh_basis(dirs, degree: int):
    """The real SH basis gsplat evaluates colour with, per direction: ``colour = basis . coefficients + 0.5``.

    Args:
        dirs: float [N, 3] **unit** view directions (Gaussian centre minus camera centre, normalised), a NumPy
            array or a torch tensor (the result is the same kind).
        degree: 0..3.

    Returns:
        float [N, K] with K = (degree + 1)^2, in the arithmetic of :func:`exgs_core.render.sh.eval_sh_channel`
        (Sloan's form; at a zero direction the z^2 terms keep their constants, as the renderer's do).
    """
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    cols = [x * 0 + _C0]
    if degree >= 1:
        cols += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        z2 = z * z
        c1 = x * x - y * y
        s1 = 2.0 * x * y
        cols += [_C2_D * s1, -_C2_A * z * y, _C2_B * z2 - _C2_C, -_C2_A * z * x, _C2_D * c1]
    if degree >= 3:
        t0 = -_C3_C * z2 + _C3_D
        t1 = _C3_B * z
        c2 = x * c1 - y * s1
        s2 = x * s1 + y * c1
        cols += [-_C3_A * s2, t1 * s1, t0 * y, z * (_C3_E * z2 - _C3_F), t0 * x, t1 * c1, -_C3_A * c2]
    if isinstance(dirs, np.ndarray):
        return np.stack(cols, axis=1)
    import torch

    return torch.stack(cols, dim=1)


@njit(cache=True, inline="always")
def _basis_into(means, g, campos, degree, b):
    """Fill ``b`` [>= K] with the SH basis of Gaussian ``g`` seen from ``campos`` (float64), as ``_project``
    computes the direction (float64, normalised; zero when the camera sits on the centre; unused at degree 0)."""
    b[0] = _C0
    if degree == 0:
        return
    x = np.float64(means[g, 0]) - campos[0]
    y = np.float64(means[g, 1]) - campos[1]
    z = np.float64(means[g, 2]) - campos[2]
    dl = x * x + y * y + z * z
    if dl > 0.0:
        dl = 1.0 / math.sqrt(dl)
        x *= dl
        y *= dl
        z *= dl
    b[1] = -_C1 * y
    b[2] = _C1 * z
    b[3] = -_C1 * x
    if degree >= 2:
        z2 = z * z
        c1 = x * x - y * y
        s1 = 2.0 * x * y
        b[4] = _C2_D * s1
        b[5] = -_C2_A * z * y
        b[6] = _C2_B * z2 - _C2_C
        b[7] = -_C2_A * z * x
        b[8] = _C2_D * c1
        if degree >= 3:
            t0 = -_C3_C * z2 + _C3_D
            t1 = _C3_B * z
            c2 = x * c1 - y * s1
            s2 = x * s1 + y * c1
            b[9] = -_C3_A * s2
            b[10] = t1 * s1
            b[11] = t0 * y
            b[12] = z * (_C3_E * z2 - _C3_F)
            b[13] = t0 * x
            b[14] = t1 * c1
            b[15] = -_C3_A * c2


# ----------------------------------------------------------------------------------------------- CPU kernels
@njit(cache=True, nogil=True)
def _view_setup(order, means, campos, sh0, degree, frow, v0, fb):
    """Per visible Gaussian of one view (row j, Gaussian ``order[j]``): ``v0[j, c] = B . sh0[g, :, c] + 0.5``, the
    colour before the clamp, and for the rows with ``frow[j] >= 0`` the first ``fb.shape[1]`` basis values into
    ``fb[frow[j]]``.

    Args:
        order: int32 [M]; means: float32 [N, 3]; campos: float64 [3]; sh0: float32 [N, K, 3]; degree: the
            render's SH degree; frow: int64 [M]; v0: float32 [M, 3] out; fb: float32 [F_v, Kf] out.
    """
    m = order.shape[0]
    kk = (degree + 1) * (degree + 1)
    kf = fb.shape[1]
    b = np.empty(16, np.float64)
    for j in range(m):
        g = order[j]
        _basis_into(means, g, campos, degree, b)
        for c in range(3):
            v = 0.5
            for k in range(kk):
                v += b[k] * sh0[g, k, c]
            v0[j, c] = v
        f = frow[j]
        if f >= 0:
            for k in range(kf):
                fb[f, k] = b[k]


@njit(cache=True, nogil=True)
def _coef_to_rows(order, v0, frow, fb, rest_slot, dc, rest, true_colour, out):
    """Colours per visible Gaussian for a coefficient change (``dc`` float64 [N, 3], ``rest`` float64
    [F, Kf - 1, 3], ``rest_slot`` int64 [N]): ``true_colour`` False gives the linearised change
    ``act * (B . d)`` (``act`` = 0 where the clamp holds the channel at ``v0``), True the colour the renderer would
    blend, ``max(v0 + B . d, 0)``. ``out`` float32 [M, 3]."""
    m = order.shape[0]
    kf = fb.shape[1]
    for j in range(m):
        g = order[j]
        f = frow[j]
        slot = rest_slot[g]
        for c in range(3):
            s = _C0 * dc[g, c]
            if f >= 0:
                for k in range(1, kf):
                    s += fb[f, k] * rest[slot, k - 1, c]
            if true_colour:
                out[j, c] = max(v0[j, c] + s, 0.0)
            elif v0[j, c] > 0.0:
                out[j, c] = s
            else:
                out[j, c] = 0.0


@njit(cache=True, nogil=True)
def _rows_to_coef(order, v0, frow, fb, rest_slot, rows, with_scale, dc, rest, dc_scale, rest_scale):
    """The transpose of :func:`_coef_to_rows` (linearised), accumulated: ``dc[g, c] += act * B[0] * rows[j, c]``
    and the higher bands likewise; with ``with_scale`` also ``*_scale += act * B[k]^2 * rows[j, 3]``. Race-free in
    any order (a Gaussian is at most one row of a view); serial, as the per-row work is small. Returns the number of (row, channel) pairs clamped."""
    m = order.shape[0]
    kf = fb.shape[1]
    clamped = 0
    for j in range(m):
        g = order[j]
        f = frow[j]
        slot = rest_slot[g]
        for c in range(3):
            if not v0[j, c] > 0.0:
                clamped += 1
                continue
            r = rows[j, c]
            dc[g, c] += _C0 * r
            if with_scale:
                dc_scale[g, c] += _C0 * _C0 * rows[j, 3]
            if f >= 0:
                for k in range(1, kf):
                    rest[slot, k - 1, c] += fb[f, k] * r
                    if with_scale:
                        rest_scale[slot, k - 1, c] += fb[f, k] * fb[f, k] * rows[j, 3]
    return clamped


# ----------------------------------------------------------------------------------------------- layout
class _Layout:
    """The unknowns as one float64 vector: DC changes [N, 3], then the higher-band changes [F, Kf - 1, 3] of the F
    Gaussians that keep SH (``rest_slot[g]`` is g's row, -1 for DC-only)."""

    def __init__(self, n: int, kf: int, full: np.ndarray):
        self.n, self.kf = n, kf
        idx = np.flatnonzero(full) if kf > 1 else np.zeros(0, np.int64)
        self.full_idx = idx
        self.rest_slot = np.full(n, -1, np.int64)
        self.rest_slot[idx] = np.arange(len(idx))
        self.size = 3 * n + 3 * len(idx) * (kf - 1)

    def split(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Views (dc float64 [N, 3], rest float64 [F, Kf - 1, 3]) into ``v``."""
        return v[: 3 * self.n].reshape(self.n, 3), v[3 * self.n :].reshape(len(self.full_idx), self.kf - 1, 3)

    def clip_dc(self, sh: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """A copy of the change ``v`` whose DC part keeps ``sh[:, 0] + dc`` within [lo, hi] per channel (or where
        ``sh`` already was, if outside)."""
        out = v.copy()
        dc, _ = self.split(out)
        base = sh[:, 0].astype(np.float64)
        dc[:] = np.clip(base + dc, np.minimum(lo, base), np.maximum(hi, base)) - base
        return out

    def apply(self, sh: np.ndarray, v: np.ndarray) -> np.ndarray:
        """float32 [N, K, 3]: ``sh`` plus the change ``v``."""
        dc, rest = self.split(v)
        out = sh.astype(np.float64)
        out[:, 0] += dc
        if len(self.full_idx):
            out[self.full_idx, 1 : self.kf] += rest
        return out.astype(np.float32)


# ----------------------------------------------------------------------------------------------- public API
def refit_colours(
    pruned: GaussianScene,
    original: GaussianScene,
    cameras: Sequence[Camera],
    *,
    iterations: int = DEFAULT_ITERATIONS,
    pull: float = DEFAULT_PULL,
    degree: int | None = None,
    sh_full: np.ndarray | None = None,
    targets: Sequence[np.ndarray] | None = None,
    background=None,
    backend: str = "auto",
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
) -> tuple[GaussianScene, RefitReport]:
    """Refit the SH coefficients of ``pruned`` so its renders of ``cameras`` come closest to ``original``'s
    (least squares, closed form; see the module docstring). Geometry and opacity are left alone.

    Args:
        pruned: M Gaussians (the survivors after merging and the SH cut).
        original: the N-Gaussian scene they approximate (only rendered when ``targets`` is None).
        cameras: the scoring views to fit on (never the held-out evaluation views).
        iterations: CG iterations (0 = return a copy unchanged).
        pull: Tikhonov weight toward the merged colours, relative to each coefficient's share of the images.
        degree: highest SH band to refit, 0..``pruned.sh_degree`` (None: all the scene has).
        sh_full: bool [M], the Gaussians whose higher bands are refitted (None: those with any non-zero higher
            coefficient; the others stay DC-only).
        targets: float32 [H, W, 3] per camera: ``original`` rendered from it with ``background`` (compression
            already has them); None renders them.
        background: float or float [3], the colour behind the splats in the targets (None: black).
        backend: ``"auto"`` (gsplat when :func:`exgs_core.render.has_gsplat`, else cpu), ``"cpu"`` or ``"gsplat"``.
        progress: ``progress(fraction, stage)``.
        cancel: callable returning True, or an object with ``is_set()``; checked between views.

    Returns:
        (a new scene, ``pruned`` with refitted ``sh``; :class:`RefitReport`).

    Raises:
        ValueError: a bad option or ``targets`` / ``sh_full`` of the wrong shape;
        :class:`~exgs_core.errors.SceneError`: ``pruned`` and ``original`` disagree on the rendering mode;
        :class:`~exgs_core.prune.Cancelled`.
    """
    from ..render import _background, has_gsplat

    t0 = time.perf_counter()
    cams = list(cameras)
    if not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    if not (isinstance(pull, (int, float, np.floating)) and math.isfinite(pull) and pull >= 0):
        raise ValueError(f"pull must be a finite number >= 0, got {pull!r}")
    if degree is None:
        degree = pruned.sh_degree
    if not 0 <= int(degree) <= pruned.sh_degree:
        raise ValueError(f"degree must be 0..{pruned.sh_degree} for this scene (K={pruned.sh.shape[1]}), got {degree}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if pruned.antialiased != original.antialiased:
        raise SceneError(
            f"the pruned scene renders {'antialiased' if pruned.antialiased else 'classic'} but the original "
            f"{'antialiased' if original.antialiased else 'classic'}: refit against the scene it was pruned from"
        )
    if sh_full is None:
        full = (pruned.sh[:, 1:] != 0).any(axis=(1, 2)) if pruned.sh.shape[1] > 1 else np.zeros(pruned.n, bool)
    else:
        full = np.asarray(sh_full, bool)
        if full.shape != (pruned.n,):
            raise ValueError(f"sh_full: expected bool [M={pruned.n}], got shape {full.shape}")
    if targets is not None:
        targets = list(targets)
        if len(targets) != len(cams):
            raise ValueError(f"targets: expected one image per camera ({len(cams)}), got {len(targets)}")
        for i, (t, c) in enumerate(zip(targets, cams, strict=True)):
            if np.shape(t) != (c.height, c.width, 3):
                raise ValueError(f"targets[{i}]: expected float [H={c.height}, W={c.width}, 3], got {np.shape(t)}")
            if not np.isfinite(t).all():
                raise ValueError(f"targets[{i}]: has NaN or Inf pixels")
    bg = _background(background)
    if iterations == 0 or pruned.n == 0 or not cams:
        return pruned.copy(), RefitReport(views=len(cams), seconds=time.perf_counter() - t0)
    use_gpu = backend == "gsplat" or (backend == "auto" and has_gsplat())
    layout = _Layout(pruned.n, (int(degree) + 1) ** 2, full)
    solve = _solve_gsplat if use_gpu else _solve_cpu
    sh_new, rep = solve(pruned, original, cams, targets, bg, layout, int(iterations), float(pull), progress, cancel)
    out = pruned.copy()
    out.sh = sh_new
    return out, RefitReport(**{**rep, "views": len(cams), "seconds": time.perf_counter() - t0})


# ----------------------------------------------------------------------------------------------- the solver
def _psnr(mse: float) -> float:
    return float("inf") if mse <= 0 else 10.0 * math.log10(1.0 / mse)


def _pcg(matvec, b: np.ndarray, precond: np.ndarray, iterations: int, cancel) -> tuple[np.ndarray, list, int]:
    """Preconditioned CG on ``H d = b`` (H symmetric positive semi-definite, ``matvec(p) = H p``) from d = 0.
    Returns (d, the objective ``-2 b.d + d.H d`` after each iteration (0 first), iterations run)."""
    d = np.zeros_like(b)
    r = b.copy()
    z = r * precond
    p = z.copy()
    rz = float(r @ z)
    hist = [0.0]
    done = 0
    for _ in range(iterations):
        if rz <= 0.0:
            break
        check_cancel(cancel)
        hp = matvec(p)
        php = float(p @ hp)
        if not php > 0.0:
            break
        a = rz / php
        d += a * p
        r -= a * hp
        done += 1
        hist.append(-float(b @ d) - float(d @ r))  # -2 b.d + d.H d, with H d = b - r
        z = r * precond
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return d, hist, done


def _finish(layout, sh0, dc_range, d, hist, sse0, npx, evaluate, done, clamped, coeffs, gaussians, backend):
    """Check the step on the true renders (halving it while it makes them worse) and assemble the report fields.
    The DC coefficients are kept within ``dc_range`` ((lo, hi) float [3] each, :func:`_dc_range`)."""
    step, sh_new, sse = 1.0, sh0, sse0
    for _ in range(BACKTRACKS + 1):
        cand = layout.clip_dc(sh0, step * d, *dc_range)
        s = evaluate(cand)
        if s <= sse0:
            sh_new, sse = layout.apply(sh0, cand), s
            break
        step *= 0.5
    else:
        step = 0.0
    base = sse0 if sse0 > 0 else 1.0
    return sh_new, {
        "backend": backend,
        "iterations": done,
        "coefficients": coeffs,
        "gaussians": gaussians,
        "clamped": int(clamped),
        "mse_before": sse0 / npx,
        "mse_after": sse / npx,
        "psnr_before": _psnr(sse0 / npx),
        "psnr_after": _psnr(sse / npx),
        "objective": tuple(1.0 + h / base for h in hist),
        "step": step,
    }


def _dc_range(scene: GaussianScene) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) float64 [3]: per channel, the range of the finite DC coefficients of ``scene`` widened by its own
    width on both sides (unbounded when there are none). Refitted colours may leave the original's range (a
    translucent survivor brightens with a colour above 1: measured on the biker at 0.1, clipping to the range
    itself cost 0.2 dB after coding), but not by more, so that a few poorly seen Gaussians cannot stretch the
    range the codec quantises DC over."""
    dc = scene.sh[:, 0].astype(np.float64)
    dc = dc[np.isfinite(dc).all(axis=1)]
    if not len(dc):
        return np.full(3, -np.inf), np.full(3, np.inf)
    lo, hi = dc.min(axis=0), dc.max(axis=0)
    return lo - (hi - lo), hi + (hi - lo)


def _system(layout: _Layout, scale: np.ndarray, pull: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(free bool, pull weights float64, Jacobi preconditioner float64), each like ``scale`` (the diagonal majorant
    ``D`` of ``A^T A``, a flat layout vector).

    The pull on every SH band of a Gaussian is :data:`REST_PULL` times the DC's, ``pull * D_dc``: with the
    orthonormal basis, ``sum_k d_k^2`` is the colour change averaged over all directions, so this pulls the colour
    toward the merged one in every direction, not just in those the scoring views see, and the bands more, as their
    change extrapolates to directions no scoring view covers. (A pull of ``pull * D_k`` per band, relative to what
    the views see of band k, let Gaussians seen from a narrow cone take higher-band coefficients up to 15.9, against
    0.15 before the refit, on kacytran_try_iter7000_sh3 at retention 0.1.)"""
    free = scale > 0
    reg = pull * scale
    r_dc, r_rest = layout.split(reg)
    s_dc, _ = layout.split(scale)
    if len(layout.full_idx):
        r_rest[:] = REST_PULL * pull * s_dc[layout.full_idx][:, None, :]
    precond = np.zeros_like(scale)
    precond[free] = 1.0 / (scale[free] + reg[free])
    return free, reg, precond


def _ticker(progress, n_views: int, n_passes: int):
    """``tick(views done, pass, stage)``: reports ``progress`` (never backwards: the check pass may run again)."""
    last = [0.0]

    def tick(done_views: int, pass_no: int, stage: str) -> None:
        if progress:
            last[0] = max(last[0], min(1.0, (pass_no + done_views / n_views) / n_passes))
            progress(last[0], stage)

    return tick


def _free_counts(layout, scale: np.ndarray) -> tuple[int, int]:
    free = scale > 0
    dc, rest = layout.split(free)
    per_g = dc.any(axis=1)
    if len(layout.full_idx):
        per_g[layout.full_idx] |= rest.any(axis=(1, 2))
    return int(free.sum()), int(per_g.sum())


class _CpuView:
    """One scoring view on the CPU: its :class:`~exgs_core.render.cpu.ViewGeometry` and, per visible Gaussian,
    the colour before the clamp at the merged coefficients (``v0`` float32 [M, 3]) and the fitted basis values of
    the rows that keep SH (``fb`` float32 [F_v, Kf], row ``frow[j]``, -1 for DC-only rows)."""

    def __init__(self, geom, campos: np.ndarray, prep, sh0: np.ndarray, degree: int, layout: _Layout):
        self.geom = geom
        order = geom.order
        full = layout.rest_slot[order] >= 0
        self.frow = np.where(full, np.cumsum(full) - 1, -1).astype(np.int64)
        self.v0 = np.empty((order.shape[0], 3), np.float32)
        self.fb = np.empty((int(full.sum()), layout.kf), np.float32)
        _view_setup(order, prep.means, campos, sh0, degree, self.frow, self.v0, self.fb)

    @property
    def nbytes(self) -> int:
        return self.geom.nbytes + self.frow.nbytes + self.v0.nbytes + self.fb.nbytes

    def colours(self, layout: _Layout, v: np.ndarray, true_colour: bool) -> np.ndarray:
        dc, rest = layout.split(v)
        out = np.empty((self.geom.order.shape[0], 3), np.float32)
        _coef_to_rows(self.geom.order, self.v0, self.frow, self.fb, layout.rest_slot, dc, rest, true_colour, out)
        return out

    def transpose(self, layout: _Layout, rows: np.ndarray, out: np.ndarray, scale: np.ndarray | None = None) -> int:
        dc, rest = layout.split(out)
        s_dc, s_rest = layout.split(out if scale is None else scale)
        return int(
            _rows_to_coef(
                self.geom.order,
                self.v0,
                self.frow,
                self.fb,
                layout.rest_slot,
                np.ascontiguousarray(rows),
                scale is not None,
                dc,
                rest,
                s_dc,
                s_rest,
            )
        )


def _solve_cpu(pruned, original, cams, targets, bg, layout, iterations, pull, progress, cancel):
    from .. import _machine
    from ..render import prepare, render
    from ..render.cpu import PreparedScene, adjoint_rows, normal_rows, render_rows, view_geometry

    prep = PreparedScene(pruned)
    sh0 = prep.sh
    deg = pruned.sh_degree
    budget = min(CACHE_BYTES, _machine.memory_limit() // 4)
    n_passes = iterations + 2
    campos = [np.ascontiguousarray(c.position, np.float64) for c in cams]
    cache: list = [None] * len(cams)
    tgts: list = []
    used = 0

    def view(i) -> _CpuView:
        if cache[i] is not None:
            return cache[i]
        c = cams[i]
        g = view_geometry(prep, c, background=bg, sh_degree=deg, antialiased=pruned.antialiased, near=c.near, far=c.far)
        return _CpuView(g, campos[i], prep, sh0, deg, layout)

    tick = _ticker(progress, len(cams), n_passes)

    b = np.zeros(layout.size)
    scale = np.zeros(layout.size)
    sse0, npx, clamped = 0.0, 0, 0
    prep_orig = None
    for i, c in enumerate(cams):
        check_cancel(cancel)
        v = view(i)
        if targets is None:
            if prep_orig is None:
                prep_orig = prepare(original, "cpu")
            tgt = render(original, c, backend="cpu", background=bg, prepared=prep_orig).rgb
        else:
            tgt = np.asarray(targets[i], np.float32)
        tgts.append(tgt)
        e = tgt - v.geom.rgb
        sse0 += float(np.square(e, dtype=np.float64).sum())
        npx += e.size
        keep = used + v.nbytes - v.geom.gd.nbytes + v.geom.weights_nbytes() <= budget
        rows = adjoint_rows(v.geom, np.concatenate([e, v.geom.alpha[..., None]], axis=2), keep_weights=keep)
        clamped += v.transpose(layout, rows, b, scale)
        if used + v.nbytes <= budget:
            cache[i] = v
            used += v.nbytes
        tick(i + 1, 0, f"refit: residuals {i + 1}/{len(cams)}")
    free, reg, precond = _system(layout, scale, pull)
    b[~free] = 0.0
    it = [0]

    def matvec(p):
        out = reg * p
        for i in range(len(cams)):
            check_cancel(cancel)
            v = view(i)
            _, rows = normal_rows(v.geom, v.colours(layout, p, False))
            v.transpose(layout, rows, out)
            tick(i + 1, 1 + it[0], f"refit: iteration {it[0] + 1}/{iterations}")
        it[0] += 1
        out[~free] = 0.0
        return out

    d, hist, done = _pcg(matvec, b, precond, iterations, cancel)

    def evaluate(step_d):
        sse = 0.0
        for i in range(len(cams)):
            check_cancel(cancel)
            v = view(i)
            img = render_rows(v.geom, v.colours(layout, step_d, True)) + (1.0 - v.geom.alpha)[..., None] * bg
            sse += float(np.square(tgts[i] - img, dtype=np.float64).sum())
            tick(i + 1, n_passes - 1, "refit: check")
        return sse

    coeffs, gaussians = _free_counts(layout, scale)
    return _finish(
        layout, sh0, _dc_range(original), d, hist, sse0, npx, evaluate, done, clamped, coeffs, gaussians, "cpu"
    )


def _solve_gsplat(pruned, original, cams, targets, bg, layout, iterations, pull, progress, cancel):
    """:func:`_solve_cpu` on CUDA: ``A_v c`` is gsplat's render of per-Gaussian colours ``c`` (``sh_degree=None``,
    no background) and ``A_v^T y`` the gradient of ``<A_v c, y>`` with respect to ``c`` (the render is linear in
    the colours, so autograd gives the adjoint exactly). Same unknowns, pull, preconditioner and CG as the CPU; the
    gradients are summed with atomics, so results are reproducible to float rounding, not bit for bit."""
    from ..render import prepare, render
    from ..render.gsplat_backend import GsplatScene, _require

    torch, rasterization = _require()
    dev = torch.device("cuda")
    g = GsplatScene(pruned)
    idx = torch.from_numpy(g.idx.astype(np.int64)).to(dev)  # [U] uploaded Gaussians (finite ones)
    deg = pruned.sh_degree
    kf = layout.kf
    mode = "antialiased" if pruned.antialiased else "classic"
    slot = torch.from_numpy(layout.rest_slot).to(dev)[idx]  # [U], -1 for DC-only
    has_rest = slot >= 0
    bg_t = torch.from_numpy(np.asarray(bg, np.float32)).to(dev)
    n_passes = iterations + 2

    tick = _ticker(progress, len(cams), n_passes)

    class View:
        def __init__(self, c):
            self.viewmat = torch.from_numpy(np.asarray(c.world_to_camera, np.float32)).to(dev)[None]
            self.K = torch.from_numpy(np.asarray(c.K, np.float32)).to(dev)[None]
            self.w, self.h, self.near, self.far = c.width, c.height, float(c.near), float(c.far)
            pos = torch.from_numpy(np.asarray(c.position, np.float64)).to(dev)
            d = g.means.double() - pos
            nrm = d.norm(dim=1, keepdim=True)
            d = torch.where(nrm > 0, d / nrm.clamp_min(1e-300), torch.zeros_like(d))
            self.basis = sh_basis(d, deg).float()  # [U, K]
            self.v0 = torch.einsum("uk,ukc->uc", self.basis, g.sh) + 0.5  # [U, 3] colour before the clamp
            self.act = (self.v0 > 0).float()

        def rast(self, colours):
            img, alpha, _ = rasterization(
                g.means,
                g.quats,
                g.scales,
                g.opacities,
                colours,
                self.viewmat,
                self.K,
                self.w,
                self.h,
                near_plane=self.near,
                far_plane=self.far,
                sh_degree=None,
                rasterize_mode=mode,
            )
            return img[0], alpha[0, ..., 0]

        def colours(self, p_full):  # p_full [U, Kf, 3]
            return torch.einsum("uk,ukc->uc", self.basis[:, :kf], p_full)

    def to_gpu(v):  # flat float64 layout vector -> [U, Kf, 3] float32
        dc, rest = layout.split(v)
        out = torch.zeros((len(g.idx), kf, 3), dtype=torch.float32, device=dev)
        out[:, 0] = torch.from_numpy(dc).to(dev)[idx].float()
        if kf > 1 and len(layout.full_idx):
            r = torch.from_numpy(rest).to(dev).float()
            out[has_rest, 1:] = r[slot[has_rest]]
        return out

    def to_host(grad, out):  # [U, Kf, 3] -> add into a flat layout vector
        dc, rest = layout.split(out)
        gh = grad.double().cpu().numpy()
        ui = g.idx
        dc[ui] += gh[:, 0]
        if kf > 1 and len(layout.full_idx):
            hr = has_rest.cpu().numpy()
            rest[slot.cpu().numpy()[hr]] += gh[hr, 1:]

    def back(view, gc):  # colour-space gradient [U, 3] -> coefficient space [U, Kf, 3]
        return view.basis[:, :kf, None] * (view.act * gc)[:, None, :]

    views = [View(c) for c in cams]
    b = np.zeros(layout.size)
    scale = np.zeros(layout.size)
    sse0, npx, clamped = 0.0, 0, 0
    tgts = []
    prep_orig = None
    b_acc = torch.zeros((len(g.idx), kf, 3), dtype=torch.float64, device=dev)
    s_acc = torch.zeros_like(b_acc)
    for i, (c, v) in enumerate(zip(cams, views, strict=True)):
        check_cancel(cancel)
        if targets is None:
            if prep_orig is None:
                prep_orig = prepare(original, "gsplat")
            tgt_np = render(original, c, backend="gsplat", background=bg, prepared=prep_orig).rgb
        else:
            tgt_np = np.asarray(targets[i], np.float32)
        tgt = torch.from_numpy(np.ascontiguousarray(tgt_np)).to(dev)
        with torch.no_grad():
            img, alpha = v.rast(v.v0.clamp_min(0.0))
            rgb = img + (1.0 - alpha)[..., None] * bg_t
            e = tgt - rgb
        tgts.append(tgt)
        sse0 += float((e.double() ** 2).sum())
        npx += e.numel()
        c4 = torch.zeros((len(g.idx), 4), dtype=torch.float32, device=dev, requires_grad=True)
        img4, _ = v.rast(c4)
        (img4 * torch.cat([e, alpha[..., None]], dim=-1)).sum().backward()
        gr = c4.grad
        b_acc += back(v, gr[:, :3]).double()
        s_acc += (v.basis[:, :kf, None] ** 2 * (v.act * gr[:, 3:4])[:, None, :]).double()
        clamped += int(((v.act == 0) & (gr[:, 3:4] > 0)).sum())  # channels held by the clamp where seen
        tick(i + 1, 0, f"refit: residuals {i + 1}/{len(cams)}")
    to_host(b_acc, b)
    to_host(s_acc, scale)
    free, reg, precond = _system(layout, scale, pull)
    b[~free] = 0.0
    it = [0]

    def matvec(p):
        pg = to_gpu(p)
        acc = torch.zeros((len(g.idx), kf, 3), dtype=torch.float64, device=dev)
        for i, v in enumerate(views):
            check_cancel(cancel)
            col = (v.act * v.colours(pg)).detach().requires_grad_(True)
            img, _ = v.rast(col)
            (0.5 * (img * img).sum()).backward()
            acc += back(v, col.grad).double()
            tick(i + 1, 1 + it[0], f"refit: iteration {it[0] + 1}/{iterations}")
        it[0] += 1
        out = reg * p
        to_host(acc, out)
        out[~free] = 0.0
        return out

    d, hist, done = _pcg(matvec, b, precond, iterations, cancel)

    def evaluate(step_d):
        pg = to_gpu(step_d)
        sse = 0.0
        with torch.no_grad():
            for i, v in enumerate(views):
                check_cancel(cancel)
                img, alpha = v.rast((v.v0 + v.colours(pg)).clamp_min(0.0))
                rgb = img + (1.0 - alpha)[..., None] * bg_t
                sse += float(((tgts[i] - rgb).double() ** 2).sum())
                tick(i + 1, n_passes - 1, "refit: check")
        return sse

    coeffs, gaussians = _free_counts(layout, scale)
    return _finish(
        layout, pruned.sh, _dc_range(original), d, hist, sse0, npx, evaluate, done, clamped, coeffs, gaussians, "gsplat"
    )
